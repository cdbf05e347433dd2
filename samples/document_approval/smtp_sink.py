"""A tiny SMTP server that keeps every mail it receives, for trying the sample by hand
(``python samples/document_approval/smtp_sink.py`` prints each mail) and for its tests.

It speaks just enough SMTP for :mod:`smtplib` (HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP,
QUIT), without authentication or TLS: it is a local sink, never a relay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage


@dataclass(frozen=True)
class Mail:
    """One delivered message: the envelope and the parsed message."""

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The plain-text body (decoded)."""
        body = self.message.get_body(("plain",))
        return "" if body is None else str(body.get_content())


class SmtpSink:
    """An SMTP server on a loopback port, run on its own thread: ``with SmtpSink() as s``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, on_mail: Callable[[Mail], None] | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.mails: list[Mail] = []
        self._on_mail = on_mail
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def wait_for(
        self, predicate: Callable[[Mail], bool], count: int = 1, timeout: float = 10
    ) -> list[Mail]:
        """The mails matching ``predicate`` once there are ``count`` of them; TimeoutError
        if that takes longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in self.mails if predicate(m)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    subjects = [m.subject for m in self.mails]
                    raise TimeoutError(
                        f"{len(found)} of {count} mails within {timeout} s; got {subjects}"
                    )
                self._changed.wait(left)

    def _deliver(self, sender: str, recipients: list[str], data: bytes) -> None:
        # Lines travel as CRLF; parsed with LF they read like any local text.
        message = email.message_from_bytes(
            data.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)
        mail = Mail(sender, tuple(recipients), message)
        with self._changed:
            self.mails.append(mail)
            self._changed.notify_all()
        if self._on_mail is not None:
            self._on_mail(mail)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(text: str) -> None:
            writer.write(f"{text}\r\n".encode())

        reply("220 taskloom smtp sink")
        sender, recipients = "", list[str]()
        try:
            while line := await reader.readline():
                command = line.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = command.partition(" ")
                verb = verb.upper()
                if verb in ("HELO", "EHLO"):
                    reply("250 sink")
                elif verb == "MAIL":
                    sender, recipients = _address(arg), []
                    reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(_address(arg))
                    reply("250 OK")
                elif verb == "DATA":
                    reply("354 end with <CRLF>.<CRLF>")
                    await writer.drain()
                    self._deliver(sender, recipients, await _read_data(reader))
                    reply("250 OK")
                elif verb in ("RSET", "NOOP"):
                    if verb == "RSET":
                        sender, recipients = "", []
                    reply("250 OK")
                elif verb == "QUIT":
                    reply("221 bye")
                    break
                else:
                    reply("502 not implemented")
                await writer.drain()
        finally:
            writer.close()


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines: list[bytes] = []
    while (line := await reader.readline()) not in (b".\r\n", b".\n", b""):
        lines.append(line[1:] if line.startswith(b".") else line)  # undo dot-stuffing
    return b"".join(lines)


def _address(arg: str) -> str:
    # "FROM:<a@b>" or "TO:<a@b> SIZE=..." -> "a@b"
    value = arg.partition(":")[2].strip()
    return value.split(">", 1)[0].lstrip("<")


def main() -> None:
    parser = argparse.ArgumentParser(description="Print every mail sent to this SMTP port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    args = parser.parse_args()

    def show(mail: Mail) -> None:
        print(f"--- from {mail.sender} to {', '.join(mail.recipients)}: {mail.subject}")
        print(mail.text, flush=True)

    with SmtpSink(args.host, args.port, on_mail=show) as sink:
        print(f"SMTP sink on {sink.host}:{sink.port}; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
