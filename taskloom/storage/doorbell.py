"""Doorbells: wake-ups between processes that share one SQLite file.

SQLite has no notifications, so a process that commits work rings the others: every
process waiting on a hub binds a Unix datagram socket in the folder ``<database>-wake``
beside the database file, named ``<hub key>.<pid>.<random>``; a commit sends one byte to
each socket of the same hub there except the committer's own (its own process is woken
by :mod:`taskloom.storage.local_bus`). Nothing polls: an idle process sleeps in the
event loop's ``epoll`` until a datagram arrives.

- **Coalesced.** Rings within one event-loop iteration go out once, after it, so a
  worker committing many batches costs one datagram per peer per iteration, not per
  transaction; a receiver reads every pending datagram before it wakes its listeners.
  A datagram's bytes are the kinds of wake-up (letters of :mod:`taskloom.storage.base`),
  so a waiting client is not woken for an activity nor a worker for a queue message.
- **Self-healing.** A socket left by a process that was killed refuses the datagram; the
  ringer removes the file. A receiver whose queue is full already has a wake pending, so
  that send is simply dropped.
- **Cheap discovery.** The list of peers is re-read only when the folder changed (its
  modification time), so a ring is a ``stat`` plus one ``sendto`` per peer.
- **Long paths.** Socket addresses are limited to about 100 bytes; on Linux the folder is
  reached through ``/proc/self/fd/N`` of an open descriptor, so the database may live at
  any depth. Where Unix sockets are missing (Windows), doorbells are off and the
  worker's fallback poll carries cross-process work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable

from taskloom.storage.base import merge_kinds

log = logging.getLogger("taskloom.storage.doorbell")

#: Whether this platform has Unix datagram sockets.
SUPPORTED = hasattr(socket, "AF_UNIX")
_LINUX = sys.platform.startswith("linux")
_MAX_PATH = 100


def folder_for(database: str) -> str:
    """The folder of doorbell sockets of ``database`` (a file path)."""
    return os.path.realpath(database) + "-wake"


def hub_key(hub: str) -> str:
    """The socket-name prefix of one hub: hashed, as hub names may hold any character."""
    return hashlib.sha256(hub.encode()).hexdigest()[:12]


class Doorbell:
    """One process's doorbell for one (database file, hub): rings peers, listens for rings.

    All methods run on the event loop that :meth:`listen` or :meth:`ring` was first
    called on (the store's loop).
    """

    def __init__(self, database: str, hub: str) -> None:
        self.folder = folder_for(database)
        self._prefix = hub_key(hub) + "."
        self._own = f"{self._prefix}{os.getpid()}."
        self._dir_fd: int | None = None
        self._sender: socket.socket | None = None
        self._receiver: socket.socket | None = None
        self._receiver_name: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = ""
        self._peers: list[str] = []
        self._seen_mtime = -1
        self._scanned_at = 0.0
        self._on_ring: Callable[[str], None] | None = None
        #: Datagrams sent and received (tests and diagnostics).
        self.sent = 0
        self.received = 0

    # -- addresses ------------------------------------------------------------------

    def _prepare(self) -> bool:
        if self._sender is not None:
            return True
        try:
            os.makedirs(self.folder, exist_ok=True)
            if _LINUX:
                self._dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
        except OSError as exc:
            log.warning(
                "doorbells off for %s (%s); other processes see work at their poll",
                self.folder,
                exc,
            )
            return False
        self._sender = sender
        return True

    def _address(self, name: str) -> str:
        if self._dir_fd is not None:
            return f"/proc/self/fd/{self._dir_fd}/{name}"
        return os.path.join(self.folder, name)

    # -- listening ------------------------------------------------------------------

    def listen(self, on_ring: Callable[[str], None]) -> bool:
        """Bind this process's socket and call ``on_ring`` on the running loop whenever
        another process rings, with the kinds of wake-up it rang for (letters, see
        :mod:`taskloom.storage.base`). Returns False where doorbells cannot work."""
        if self._receiver is not None:
            self._on_ring = on_ring
            return True
        if not SUPPORTED or not self._prepare():
            return False
        name = f"{self._own}{secrets.token_hex(4)}"
        address = self._address(name)
        if self._dir_fd is None and len(address) > _MAX_PATH:
            log.warning(
                "doorbell path %s is too long; other processes see work at their poll", address
            )
            return False
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.bind(address)
            receiver.setblocking(False)
            loop = asyncio.get_running_loop()
            loop.add_reader(receiver.fileno(), self._readable)
        except (OSError, RuntimeError) as exc:
            receiver.close()
            log.warning(
                "cannot bind doorbell %s (%s); other processes see work at their poll", address, exc
            )
            return False
        self._loop = loop
        self._receiver, self._receiver_name, self._on_ring = receiver, name, on_ring
        return True

    def _readable(self) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        kinds: set[str] = set()
        while True:
            try:
                kinds.update(receiver.recv(64).decode("ascii", "replace"))
            except OSError:  # drained (BlockingIOError) or gone
                break
            self.received += 1
        if self._on_ring is not None and kinds:
            self._on_ring("".join(sorted(kinds)))

    # -- ringing --------------------------------------------------------------------

    def ring(self, kinds: str) -> None:
        """Wake every other process listening on this hub, once per loop iteration, for
        the union of the ``kinds`` rung during it."""
        if not SUPPORTED:
            return
        first = not self._pending
        self._pending = merge_kinds(self._pending, kinds)
        if not first:
            return
        try:
            loop = self._loop or asyncio.get_running_loop()
        except RuntimeError:
            self._send_all()
            return
        loop.call_soon(self._send_all)

    def _send_all(self) -> None:
        payload, self._pending = self._pending.encode("ascii"), ""
        if not payload or not self._prepare():
            return
        sender = self._sender
        assert sender is not None
        for name in self._current_peers():
            try:
                sender.sendto(payload, self._address(name))
                self.sent += 1
            except (BlockingIOError, InterruptedError):
                pass  # its queue is full: a wake is pending there already
            except ConnectionRefusedError:
                self._remove_stale(name)
            except FileNotFoundError:
                self._seen_mtime = -1
            except OSError as exc:
                log.debug("doorbell %s not rung: %s", name, exc)

    def _current_peers(self) -> list[str]:
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
            return []
        now = time.time()
        # Folder times are coarse (a kernel tick): a scan made just after a change may
        # miss a second change within the same tick, so it is repeated until it is not.
        uncertain = self._scanned_at - mtime / 1e9 < 0.1
        if mtime != self._seen_mtime or (uncertain and now - self._scanned_at > 0.02):
            try:
                names = os.listdir(self.folder)
            except OSError:
                return []
            own, prefix = self._own, self._prefix
            self._peers = [n for n in names if n.startswith(prefix) and not n.startswith(own)]
            self._seen_mtime, self._scanned_at = mtime, now
        return self._peers

    def _remove_stale(self, name: str) -> None:
        # Refused: nobody reads that socket any more (its process died without cleaning up).
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.folder, name))
        self._seen_mtime = -1

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(receiver.fileno())
            receiver.close()
            if self._receiver_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.folder, self._receiver_name))
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._dir_fd)
            self._dir_fd = None
        self._on_ring = None
        self._loop = None
