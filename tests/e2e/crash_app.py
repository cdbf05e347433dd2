"""The app the crash, multi-process and CLI end-to-end tests run in real worker processes,
and the helpers those tests share.

Run it with ``taskloom serve tests/e2e/crash_app.py:app``. Environment:

- ``TASKLOOM_TEST_HUB``: the App's name, i.e. the task hub (default ``crashapp``); tests set a
  fresh one per test so PostgreSQL runs do not see each other's instances.
- ``TASKLOOM_TEST_LOG``: a file every activity execution appends a line to (opened with
  ``O_APPEND``, one ``write`` per line): ``instance_id task_id attempt pid phase name``,
  tab-separated, with ``phase`` ``start`` (before the work) or ``end`` (after it).
- ``TASKLOOM_TEST_SLEEP``: seconds each activity sleeps (default 0.03), so a kill lands mid-run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import taskloom as tl

app = tl.App(os.environ.get("TASKLOOM_TEST_HUB", "crashapp"))

SLEEP = float(os.environ.get("TASKLOOM_TEST_SLEEP", "0.03"))


def _record(phase: str) -> None:
    path = os.environ.get("TASKLOOM_TEST_LOG")
    if not path:
        return
    info = tl.activity_info()
    fields = (info.instance_id, info.task_id, info.attempt, os.getpid(), phase, info.name)
    line = "\t".join(map(str, fields)) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _work(seconds: float = SLEEP) -> None:
    _record("start")
    time.sleep(seconds)
    _record("end")


@app.activity
def inc(x: int) -> int:
    _work()
    return x + 1


@app.activity
def double(x: int) -> int:
    _work()
    return x * 2


@app.activity
def square(x: int) -> int:
    _work()
    return x * x


@app.activity
def slow(x: Any) -> Any:
    """One second of work: long enough to send SIGTERM while it runs."""
    _work(1.0)
    return x


@app.orchestrator
def chain(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(inc, x)
    b = yield ctx.call_activity(double, a)
    return (yield ctx.call_activity(inc, b))


@app.orchestrator
def chain2(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(inc, x)
    return (yield ctx.call_activity(double, a))


@app.orchestrator
def fanout(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    results = yield ctx.task_all([ctx.call_activity(square, x + i) for i in range(5)])
    return sum(results)


@app.orchestrator
def timer(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(inc, x)
    yield ctx.create_timer(timedelta(seconds=0.2))
    return (yield ctx.call_activity(double, a))


@app.orchestrator
def slow_one(ctx: tl.OrchestrationContext, x: Any):  # type: ignore[no-untyped-def]
    return (yield ctx.call_activity(slow, x))


@app.orchestrator
def waiter(ctx: tl.OrchestrationContext):  # type: ignore[no-untyped-def]
    data = yield ctx.wait_for_external_event("Go")
    return {"got": data}


# -- helpers for the tests ---------------------------------------------------------------

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APP_SPEC = f"{HERE / 'crash_app.py'}:app"

EXPECTED: dict[str, Callable[[int], int]] = {
    "chain": lambda x: (x + 1) * 2 + 1,
    "chain2": lambda x: (x + 1) * 2,
    "fanout": lambda x: sum((x + i) ** 2 for i in range(5)),
    "timer": lambda x: (x + 1) * 2,
}
ACTIVITIES = {"chain": 3, "chain2": 2, "fanout": 5, "timer": 2}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; ``AssertionError`` at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


@dataclass(frozen=True)
class Execution:
    instance_id: str
    task_id: int
    attempt: int
    pid: int
    phase: str
    name: str


def read_log(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        iid, task, attempt, pid, phase, name = line.split("\t")
        out.append(Execution(iid, int(task), int(attempt), int(pid), phase, name))
    return out


def starts(path: Path) -> list[Execution]:
    return [e for e in read_log(path) if e.phase == "start"]


@dataclass
class Workers:
    """Spawns ``taskloom serve`` processes for one test and kills what is left at the end."""

    store_url: str
    hub: str
    log: Path
    tmp: Path
    sleep: float = 0.03
    extra: tuple[str, ...] = ()
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TASKLOOM_TEST_HUB=self.hub,
            TASKLOOM_TEST_LOG=str(self.log),
            TASKLOOM_TEST_SLEEP=str(self.sleep),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, "-m", "taskloom", "serve", APP_SPEC, "--store", self.store_url]
        cmd += ["--no-http", "--lease-for", "2", "--poll-interval", "0.1", *self.extra, *args]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(), cwd=ROOT)
        out.close()
        self.procs.append(proc)
        return proc

    def wait_running(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` of the spawned workers logged that their worker started."""

        def running() -> bool:
            text = self.output()
            for proc in self.procs:
                assert proc.poll() is None, f"a worker exited early:\n{text}"
            return text.count("started for hub") >= count

        wait_until(running, timeout, f"{count} workers to start")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def output(self) -> str:
        parts = []
        for i, _ in enumerate(self.procs):
            path = self.tmp / f"worker-{i}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- worker {i} ---\n{text[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def check_history(events: Iterable[Any]) -> dict[str, int]:
    """Assert a finished instance's history is consistent; return counts of event kinds.

    Every TaskScheduled has exactly one TaskCompleted (no result applied twice, none lost),
    every TimerCreated one TimerFired, and there is exactly one ExecutionCompleted."""
    events = list(events)
    kinds = Counter(e.kind for e in events)
    scheduled = [e.event_id for e in events if e.kind == "TaskScheduled"]
    assert len(scheduled) == len(set(scheduled)), f"TaskScheduled ids repeat: {scheduled}"
    completed = Counter(e.task_scheduled_id for e in events if e.kind == "TaskCompleted")
    assert kinds["TaskFailed"] == 0, events
    for sid in scheduled:
        assert completed[sid] == 1, f"task {sid} completed {completed[sid]} times: {events}"
    assert set(completed) == set(scheduled), f"results for unscheduled tasks: {events}"
    timers = [e.event_id for e in events if e.kind == "TimerCreated"]
    fired = Counter(e.timer_id for e in events if e.kind == "TimerFired")
    for tid in timers:
        assert fired[tid] == 1, f"timer {tid} fired {fired[tid]} times: {events}"
    assert set(fired) == set(timers), events
    assert kinds["ExecutionCompleted"] == 1, f"{kinds['ExecutionCompleted']} completions: {events}"
    return dict(kinds)


def finish_all(
    client: tl.Client, workers: Workers, started: dict[str, tuple[str, int]], timeout: float
) -> None:
    """Wait for every instance to complete with the output its kind should give."""
    deadline = time.monotonic() + timeout
    for iid, (kind, x) in started.items():
        try:
            state = client.wait_for_completion(iid, max(0.1, deadline - time.monotonic()))
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{workers.output()}") from None
        assert state.runtime_status is tl.Status.COMPLETED, (iid, state.failure_details)
        assert state.output == EXPECTED[kind](x), iid


def check_all(
    client: tl.Client,
    workers: Workers,
    started: dict[str, tuple[str, int]],
    *,
    count_tasks: bool = True,
) -> None:
    """Every history is consistent, every scheduled task ran at least once and (with
    ``count_tasks``) each instance scheduled as many activities as its kind has."""
    ran = Counter((e.instance_id, e.task_id) for e in starts(workers.log))
    for iid, (kind, _) in started.items():
        history = client.get_history(iid)
        kinds = check_history(history)
        if count_tasks:
            assert kinds["TaskScheduled"] == ACTIVITIES[kind], (iid, kinds)
        for event in history:
            if event.kind == "TaskScheduled":
                assert ran[iid, event.event_id] >= 1, f"{iid} task {event.event_id} never ran"
