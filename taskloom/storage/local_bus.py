"""Wake-ups between store objects of one process that share a database and hub.

A worker started with ``app.run`` and a client on another thread each hold their own
store object; without this, the worker would only see the client's writes at its next
poll. Each open store subscribes with its event loop; a write on one store wakes the
others on their own loops. Other processes are rung by doorbells
(:mod:`taskloom.storage.doorbell`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

_lock = threading.Lock()
Callback = Callable[[str], None]
_subscribers: dict[tuple[str, str], list[tuple[asyncio.AbstractEventLoop, Callback]]] = {}


def subscribe(key: tuple[str, str], callback: Callback) -> None:
    """Call ``callback(kinds)`` on the current event loop whenever ``publish(key)`` runs."""
    loop = asyncio.get_running_loop()
    with _lock:
        _subscribers.setdefault(key, []).append((loop, callback))


def unsubscribe(key: tuple[str, str], callback: Callback) -> None:
    with _lock:
        entries = [e for e in _subscribers.get(key, []) if e[1] != callback]
        if entries:
            _subscribers[key] = entries
        else:
            _subscribers.pop(key, None)


def publish(key: tuple[str, str], source: Callback, kinds: str) -> None:
    """Wake every subscriber of ``key`` except ``source`` (which notified itself)."""
    with _lock:
        entries = list(_subscribers.get(key, ()))
    for loop, callback in entries:
        if callback == source or loop.is_closed():
            continue
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(callback, kinds)
