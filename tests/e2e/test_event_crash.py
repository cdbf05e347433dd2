"""A worker running an app's projection and subscription SIGKILLed mid-stream: a new
worker catches both up; the read model is what a fresh rebuild gives (and what the
events say), and every event produced exactly one effect event, though handler calls
cut off by the kill ran again (at least once delivery, exactly once effects)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import event_crash_app as eca
import pytest
from crash_app import ROOT, wait_until

import taskloom as tl

STREAMS = 20
PER_STREAM = 20  # 400 events; the handler sleeps 5 ms, so a worker needs about 2 s
TIMEOUT = 25


def stream_name(i: int) -> str:
    return f"item-{i:02d}"


def amount(stream: int, k: int) -> int:
    return (stream * 31 + k * 7) % 100 - 20


@dataclass
class Workers:
    """``app.run`` worker processes for one test; what is left is killed at the end."""

    store_url: str
    hub: str
    log: Path
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(TASKLOOM_TEST_HUB=self.hub, TASKLOOM_TEST_LOG=str(self.log))
        env.update(TASKLOOM_TEST_SLEEP="0.005", PYTHONUNBUFFERED="1")
        out = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, str(eca.HERE), self.store_url]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        out.close()
        self.procs.append(proc)
        return proc

    def alive(self) -> None:
        for proc in self.procs[-1:]:
            assert proc.poll() is None, f"the worker exited early:\n{self.output()}"

    def output(self) -> str:
        parts = []
        for i, _ in enumerate(self.procs):
            path = self.tmp / f"worker-{i}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- worker {i} ---\n{text[-4000:]}")
        return "\n".join(parts)

    def calls(self) -> list[tuple[str, int]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            event_id, pid = line.split("\t")
            out.append((event_id, int(pid)))
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)


@pytest.fixture
def workers(store_url: str, hub: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(store_url, hub, tmp_path / "calls.log", tmp_path)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def events(store_url: str, hub: str) -> Iterator[tl.EventStore]:
    es = tl.EventStore(store_url, hub, projections=list(eca.app.projections.values()))
    try:
        yield es
    finally:
        es.close()


def append_items(es: tl.EventStore) -> dict[str, list[tl.RecordedEvent]]:
    """Append PER_STREAM events to each of STREAMS streams, interleaved, in one
    transaction per round; return each stream's events as stored."""
    for k in range(PER_STREAM):
        es.append_many(
            [
                (stream_name(s), [tl.NewEvent(eca.ITEM, {"n": amount(s, k)})], k)
                for s in range(STREAMS)
            ]
        )
    return {stream_name(s): es.read_stream(stream_name(s)) for s in range(STREAMS)}


def effects_done(es: tl.EventStore) -> int:
    return sum(es.stream_version(eca.effect_stream(stream_name(s))) for s in range(STREAMS))


def read_view(es: tl.EventStore, name: str) -> dict[str, dict[str, Any]]:
    """Every document of view ``name``, paging through ``query``."""
    view = es.view(name)
    docs: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        rows = view.query(limit=7, after_key=after)
        for row in rows:
            assert row.key not in docs, f"query paging gave {row.key!r} twice"
            docs[row.key] = row.doc
        if len(rows) < 7:
            return docs
        after = rows[-1].key


def caught_up(es: tl.EventStore, workers: Workers) -> bool:
    workers.alive()
    statuses = {s.consumer: s for s in es.consumers()}
    wanted = ("projection:totals", "subscription:mirror")
    if not all(c in statuses for c in wanted):
        return False
    for consumer in wanted:
        s = statuses[consumer]
        assert not s.parked, f"{consumer} parked events: {s.parked}\n{workers.output()}"
        if s.lag != 0 or s.failing_position is not None:
            return False
    return effects_done(es) == STREAMS * PER_STREAM


def test_sigkill_mid_stream_then_new_worker(workers: Workers, events: tl.EventStore) -> None:
    items = append_items(events)
    total = STREAMS * PER_STREAM

    first = workers.start()

    def partly() -> bool:
        workers.alive()
        return effects_done(events) > 0

    try:
        wait_until(partly, TIMEOUT, "the first effects")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers.output()}") from None
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    at_kill = effects_done(events)
    assert at_kill < total, "the kill came too late to test anything"

    workers.start()
    try:
        wait_until(lambda: caught_up(events, workers), TIMEOUT, "both consumers at lag 0")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers.output()}") from None

    # (1) The read model: what the events say, and what a fresh rebuild gives.
    expected = {
        sid: {
            "count": len(evs),
            "sum": sum(e.data["n"] for e in evs),
            "last_version": evs[-1].version,
        }
        for sid, evs in items.items()
    }
    live = read_view(events, "totals")
    assert live == expected
    report = events.rebuild("totals")
    assert report.parked == ()
    assert report.documents_before == report.documents_after == STREAMS
    rebuilt = read_view(events, "totals")
    assert rebuilt == live

    # (2) Exactly one effect per incoming event, in stream order, with its derived id.
    for sid, evs in items.items():
        effects = events.read_stream(eca.effect_stream(sid))
        assert [e.id for e in effects] == [eca.effect_id(e.id) for e in evs], sid
        assert [e.data["source"] for e in effects] == [e.id for e in evs], sid
        assert [e.version for e in effects] == list(range(1, len(evs) + 1)), sid
    all_effects = [e for e in events.read_all(limit=10 * total) if e.type == eca.EFFECT]
    assert len(all_effects) == total
    assert len({e.id for e in all_effects}) == total
    assert {e.stream_id for e in all_effects} == {eca.effect_stream(s) for s in items}

    # At least once: every event reached the handler; the kill may have made some run twice.
    calls = Counter(event_id for event_id, _ in workers.calls())
    ids = {e.id for evs in items.values() for e in evs}
    assert ids <= set(calls), "some events never reached the handler"
    assert set(calls) <= ids, "the handler got events of other types"
    again = sum(1 for n in calls.values() if n > 1)
    print(f"effects at the kill: {at_kill}/{total}; events handled more than once: {again}")
