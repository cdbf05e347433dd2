"""PostgreSQL drops every connection mid-run (as a restart does): the workers log it,
reconnect and finish everything, and no activity result is applied twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from crash_app import Workers, check_all, finish_all, starts, wait_until

import taskloom as tl


@pytest.fixture
def workers(store_url: str, hub: str, tmp_path: Path) -> Iterator[Workers]:
    made = Workers(store_url, hub, tmp_path / "activities.log", tmp_path, sleep=0.01)
    try:
        yield made
    finally:
        made.close()


def kill_all_connections(url: str, hub: str) -> int:
    """Terminate every connection of this test's workers and client, as a restart would.

    The store names its connections ``taskloom:<hub>``; other tests running in parallel
    on the same database keep theirs.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            [f"taskloom:{hub}"],
        ).fetchall()
    return len(rows)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_all_connections_killed_mid_run(store_url: str, hub: str, workers: Workers) -> None:
    for _ in range(2):
        workers.start()
    workers.wait_running(2)
    mix = ["chain2", "fanout", "timer"]
    plan = {f"{mix[i % 3]}-{i}": (mix[i % 3], i) for i in range(90)}
    with tl.Client(store_url, hub=hub) as client:
        try:
            started = {
                client.start_new(kind, input=x, instance_id=iid): (kind, x)
                for iid, (kind, x) in plan.items()
            }
            wait_until(lambda: len(starts(workers.log)) >= 30, 30, "30 activities to start")
            assert kill_all_connections(store_url, hub) > 0
            # A second outage while the workers are still reconnecting.
            wait_until(lambda: len(starts(workers.log)) >= 120, 60, "work to resume")
            kill_all_connections(store_url, hub)
            finish_all(client, workers, started, 120)
            check_all(client, workers, started)
            for proc in workers.procs:
                assert proc.poll() is None, workers.output()
            assert "reconnect" in workers.output().lower() or "retry" in workers.output().lower()
        finally:
            client.purge_many()
