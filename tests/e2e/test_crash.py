"""A worker process SIGKILLed mid-run: a new worker finishes every instance, each task's
result lands in history exactly once, and every activity ran at least once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_app import Workers, check_all, finish_all, read_log, starts, wait_until

import taskloom as tl

KINDS = ("chain", "fanout", "timer")
PER_KIND = 8  # 24 instances, 8 * (3 + 5 + 2) = 80 activity executions without crashes


@pytest.fixture
def workers(store_url: str, hub: str, tmp_path: Path) -> Iterator[Workers]:
    # Few activity slots and 50 ms activities: a worker needs about a second for all of
    # them, so a kill after the first few lands in the middle.
    w = Workers(store_url, hub, tmp_path / "activities.log", tmp_path, sleep=0.05)
    w.extra = ("--max-concurrent-activities", "4")
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
        if store_url.startswith("postgres"):
            c.purge_many()
        c.close()


def start_mix(client: tl.Client) -> dict[str, tuple[str, int]]:
    started = {}
    for i in range(PER_KIND):
        for kind in KINDS:
            iid = client.start_new(kind, input=i, instance_id=f"{kind}-{i}")
            started[iid] = (kind, i)
    return started


def killed_mid_run(workers: Workers, pid: int) -> set[tuple[str, int]]:
    """Activities the killed process started and did not finish."""
    mine = [e for e in read_log(workers.log) if e.pid == pid]
    ended = {(e.instance_id, e.task_id) for e in mine if e.phase == "end"}
    return {(e.instance_id, e.task_id) for e in mine if e.phase == "start"} - ended


def test_sigkill_then_new_worker_completes_everything(workers: Workers, client: tl.Client) -> None:
    started = start_mix(client)
    first = workers.start()
    wait_until(lambda: len(starts(workers.log)) >= 10, 30, "the first activities")
    workers.kill(first)
    done = client.query(statuses=[tl.Status.COMPLETED], page_size=100).items
    assert len(done) < len(started), "the kill came too late to test anything"
    interrupted = killed_mid_run(workers, first.pid)

    second = workers.start()
    finish_all(client, workers, started, 45)
    check_all(client, workers, started, count_tasks=False)
    reruns = {(e.instance_id, e.task_id) for e in starts(workers.log) if e.pid == second.pid}
    assert interrupted <= reruns, "activities cut off by the kill were not run again"


@pytest.mark.slow
def test_repeated_sigkills_still_complete_everything(workers: Workers, client: tl.Client) -> None:
    started = start_mix(client)
    for threshold in (8, 25, 45):
        proc = workers.start()
        wait_until(
            lambda t=threshold: len(starts(workers.log)) >= t,
            30,
            f"{threshold} activity executions",
        )
        workers.kill(proc)
    workers.start()
    finish_all(client, workers, started, 45)
    check_all(client, workers, started, count_tasks=False)
    pids = {e.pid for e in starts(workers.log)}
    assert len(pids) >= 3, f"expected the work spread over the killed workers, got {pids}"
