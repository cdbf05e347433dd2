"""The threads that run synchronous activities.

``loop.run_in_executor`` hands each call through a ``concurrent.futures.Future`` (a lock,
a condition variable and a callback chain) and then wraps it in an asyncio future; for
activities that take microseconds, that hand-off cost more than the call. Here a call is
one queue put, and its outcome one ``call_soon_threadsafe`` onto the loop's own future.
Threads start on demand, up to ``size``, and stay until :meth:`ActivityThreads.shutdown`.
As with an executor, cancelling the awaiting task does not stop a call already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ActivityThreads"]

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


class ActivityThreads:
    """Up to ``size`` threads running calls for an event loop (see the module docstring)."""

    def __init__(self, size: int, name: str) -> None:
        self._size = max(1, size)
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on one of the threads; its outcome is the returned future's."""
        if self._closed:
            raise RuntimeError(f"{self._name} threads are shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1  # taken by this job (the count may dip below 0 briefly)
        self._jobs.put((fn, loop, future))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, loop, future = job
            try:
                value, error = fn(), None
            except BaseException as exc:
                value, error = None, exc
            # A loop closed meanwhile (RuntimeError) has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, value, error)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let the threads end once the calls queued before this return."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
