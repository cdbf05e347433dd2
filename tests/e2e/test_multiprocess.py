"""Several worker processes on one store: every instance completes exactly once and every
activity result is applied once, also when one of the workers is SIGKILLed mid-run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from crash_app import Workers, check_all, finish_all, starts, wait_until

import taskloom as tl


@pytest.fixture
def tmp_workers(tmp_path: Path) -> Iterator[list[Workers]]:
    made: list[Workers] = []
    try:
        yield made
    finally:
        for w in made:
            w.close()


@pytest.mark.slow
def test_three_workers_share_one_sqlite_file(
    tmp_path: Path, hub: str, tmp_workers: list[Workers]
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = Workers(url, hub, tmp_path / "activities.log", tmp_path, sleep=0.005)
    tmp_workers.append(workers)
    for _ in range(3):
        workers.start()
    workers.wait_running(3)

    with tl.Client(url, hub=hub) as client:
        started = {
            client.start_new("chain2", input=i, instance_id=f"c-{i}"): ("chain2", i)
            for i in range(200)
        }
        finish_all(client, workers, started, 60)
        check_all(client, workers, started)
        page = client.query(statuses=[tl.Status.COMPLETED], page_size=1000)
        assert len(page.items) == 200
    pids = Counter(e.pid for e in starts(workers.log))
    assert set(pids) <= {p.pid for p in workers.procs}
    assert len(pids) >= 2, f"only {pids} ran activities: the workers did not share the load"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_four_postgres_workers_one_killed(
    store_url: str, hub: str, tmp_path: Path, tmp_workers: list[Workers]
) -> None:
    workers = Workers(store_url, hub, tmp_path / "activities.log", tmp_path, sleep=0.01)
    tmp_workers.append(workers)
    procs = [workers.start() for _ in range(4)]
    workers.wait_running(4)

    mix = ["chain2"] * 3 + ["fanout", "timer"]
    plan = {f"{mix[i % len(mix)]}-{i}": (mix[i % len(mix)], i) for i in range(500)}
    with tl.Client(store_url, hub=hub) as client:
        try:
            # Start instances while the workers run, and kill one while that goes on:
            # 300 * 2 + 100 * 5 + 100 * 2 = 1300 activities in all.
            with ThreadPoolExecutor(1) as starter:
                starting = starter.submit(
                    lambda: [
                        client.start_new(kind, input=x, instance_id=iid)
                        for iid, (kind, x) in plan.items()
                    ]
                )
                victim = procs[1]
                wait_until(
                    lambda: sum(e.pid == victim.pid for e in starts(workers.log)) >= 40,
                    30,
                    "the victim to run 40 activities",
                )
                workers.kill(victim)
                assert len(starts(workers.log)) < 1300, "the kill came too late to test anything"
                started = dict(zip(starting.result(60), plan.values(), strict=True))

            finish_all(client, workers, started, 90)
            check_all(client, workers, started)
            for proc in procs:
                assert proc is victim or proc.poll() is None, workers.output()
        finally:
            client.purge_many()
