"""A webhook receiver for ``benchmarks/topics.py``: a small HTTP/1.1 server on loopback
that answers 200 to every POST and counts the events it got (a JSON array counts its
items). ``GET /count`` answers the count. Prints ``ready <port>`` once listening.

Usage: python -m benchmarks.topics_receiver
"""

from __future__ import annotations

import asyncio
import json

count = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if method == "POST":
                parsed = json.loads(body) if body else None
                count += len(parsed) if isinstance(parsed, list) else 1
                answer = b""
            elif path == "/count":
                answer = str(count).encode()
            else:
                answer = b""
            allowed = b"WebHook-Allowed-Origin: *\r\n" if method == "OPTIONS" else b""
            writer.write(
                b"HTTP/1.1 200 OK\r\n"
                + allowed
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
