"""A ``taskloom serve`` worker SIGKILLed in the middle of a stream of entity signals: after
a new worker starts, every operation has been applied exactly once (operations cut off
by the kill ran again, but their episode never committed, so they count once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_app import ROOT, Workers, wait_until

import taskloom as tl

HERE = Path(__file__).resolve().parent
APP_SPEC = f"{HERE / 'entity_crash_app.py'}:app"
ENTITIES = 4
BEFORE, AFTER = 300, 200  # signals sent before the kill, and after it
TIMEOUT = 60


class EntityWorkers(Workers):
    def start(self, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, "-m", "taskloom", "serve", APP_SPEC, "--store", self.store_url]
        cmd += ["--no-http", "--lease-for", "2", "--poll-interval", "0.1", *args]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(), cwd=ROOT)
        out.close()
        self.procs.append(proc)
        return proc


@pytest.fixture
def workers(store_url: str, hub: str, tmp_path: Path) -> Iterator[EntityWorkers]:
    w = EntityWorkers(store_url, hub, tmp_path / "ops.log", tmp_path, sleep=0.01)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def client(store_url: str, hub: str) -> Iterator[tl.Client]:
    c = tl.Client(store_url, hub=hub)
    try:
        yield c
    finally:
        c.close()


def entity(i: int) -> tl.EntityId:
    return tl.EntityId("tally", f"t{i}")


def send(client: tl.Client, ids: range) -> None:
    for op_id in ids:
        client.signal_entity(entity(op_id % ENTITIES), "add", {"id": op_id, "n": op_id % 7})


def states(client: tl.Client) -> list[dict[str, Any]]:
    found = [client.read_entity_state(entity(i)) for i in range(ENTITIES)]
    return [r.entity_state for r in found if r.entity_exists]


def applied(client: tl.Client) -> int:
    return sum(s["count"] for s in states(client))


def executions(log: Path) -> Counter[int]:
    if not log.exists():
        return Counter()
    return Counter(int(line.split("\t")[0]) for line in log.read_text().splitlines())


def check_exactly_once(client: tl.Client, workers: EntityWorkers, total: int) -> None:
    final = states(client)
    assert sum(s["dups"] for s in final) == 0
    ids = sorted(i for s in final for i in s["ids"])
    assert ids == list(range(total)), "an operation was lost or applied twice"
    assert sum(s["sum"] for s in final) == sum(i % 7 for i in range(total))
    for i, s in enumerate(final):
        mine = [op for op in range(total) if op % ENTITIES == i]
        assert s["ids"] == mine, "operations of one entity were applied out of order"
    # Every operation ran at least once; those cut off by the kill ran again.
    runs = executions(workers.log)
    assert set(runs) == set(range(total))
    # (Usually some ran twice: those of the batch the kill cut off. That depends on
    # where the kill lands, so it is not asserted.)


def test_sigkill_mid_stream_of_signals(workers: EntityWorkers, client: tl.Client) -> None:
    # Each operation sleeps 50 ms, so a batch of an entity's queued operations runs for
    # seconds; the kill lands once 20 have run (the log is written before the commit),
    # inside a batch, however slowly the client sends.
    workers.sleep = 0.05
    first = workers.start()
    workers.wait_running(1)
    send(client, range(BEFORE))
    try:
        wait_until(lambda: executions(workers.log).total() >= 20, TIMEOUT, "the first operations")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers.output()}") from None
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    at_kill = applied(client)
    assert at_kill < BEFORE, "the kill came too late to test anything"

    workers.start()
    send(client, range(BEFORE, BEFORE + AFTER))  # the stream goes on meanwhile
    total = BEFORE + AFTER
    try:
        wait_until(lambda: applied(client) == total, TIMEOUT, "every operation applied")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {applied(client)} of {total}\n{workers.output()}") from None

    check_exactly_once(client, workers, total)


def test_sigkill_one_of_two_workers_mid_stream(workers: EntityWorkers, client: tl.Client) -> None:
    first, _ = workers.start(), workers.start()
    workers.wait_running(2)
    send(client, range(BEFORE))  # both workers lease entities as signals come
    try:
        wait_until(lambda: applied(client) >= 20, TIMEOUT, "the first operations")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers.output()}") from None
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    send(client, range(BEFORE, BEFORE + AFTER))
    total = BEFORE + AFTER
    try:
        wait_until(lambda: applied(client) == total, TIMEOUT, "every operation applied")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {applied(client)} of {total}\n{workers.output()}") from None
    check_exactly_once(client, workers, total)
