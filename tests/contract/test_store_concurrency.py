"""Several store objects on one database, each in its own thread and event loop, stand in
for several worker processes: leases and fenced commits must stay exactly-once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable

from store_builders import T0, at, commit, new_instance

from taskloom.history import TaskCompleted
from taskloom.models import Status
from taskloom.storage import Store, open_store
from taskloom.storage.base import ActivityResult, Message, NewWorkItem

WORKERS = 4
INSTANCES = 60


Body = Callable[[Store, int], Awaitable[None]]


def run_workers(store_url: str, hub: str, body: Body) -> list[BaseException]:
    """Run ``body(store, worker_number)`` in WORKERS threads, each with its own store."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(WORKERS)

    async def main(number: int) -> None:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            barrier.wait()
            await body(store, number)
        finally:
            await store.close()

    def thread(number: int) -> None:
        try:
            asyncio.run(main(number))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


async def test_concurrent_episode_leases_commit_each_instance_once(
    store: Store, store_url: str, hub: str
) -> None:
    for n in range(INSTANCES):
        await store.create_instance(new_instance(f"i{n:03d}"))
    committed: Counter[str] = Counter()
    lock = threading.Lock()

    async def worker(other: Store, number: int) -> None:
        # lease_for=0: every lease is expired at once, so workers keep stealing each
        # other's instances and most commits race a newer lease.
        idle = 0
        while idle < 3:
            episodes = await other.lease_episodes(T0, 5, 0.0, f"w{number}")
            if not episodes:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            results = await other.complete_episodes(
                [commit(e, status=Status.COMPLETED) for e in episodes], T0
            )
            with lock:
                committed.update(
                    e.instance.instance_id for e, ok in zip(episodes, results, strict=True) if ok
                )

    assert run_workers(store_url, hub, worker) == []
    assert not await store.has_runnable(T0)
    assert set(committed) == {f"i{n:03d}" for n in range(INSTANCES)}
    assert max(committed.values()) == 1
    histories = await store.load_histories(list(committed))
    assert all(len(h) == 2 for h in histories.values())


def done(task_id: int) -> TaskCompleted:
    return TaskCompleted(timestamp=T0, task_scheduled_id=task_id, result='"ok"')


async def test_concurrent_activity_completions_enqueue_each_result_once(
    store: Store, store_url: str, hub: str
) -> None:
    await store.create_instance(new_instance("fan"))
    episode = (await store.lease_episodes(T0, 1, 30, "w"))[0]
    items = [NewWorkItem("fan", "fan:1", n, "act", None, T0) for n in range(INSTANCES)]
    assert await store.complete_episodes([commit(episode, work_items=items)], T0) == [True]
    completed: Counter[int] = Counter()
    lock = threading.Lock()

    async def worker(other: Store, number: int) -> None:
        idle = 0
        while idle < 3:
            leased = await other.lease_activities(T0, 4, 0.0, f"w{number}")
            if not leased:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            results = [
                ActivityResult(
                    item.id, item.lease_token, Message("fan", done(item.task_id), T0, "fan:1")
                )
                for item in leased
            ]
            applied = await other.complete_activities(results, T0)
            with lock:
                completed.update(
                    item.task_id for item, ok in zip(leased, applied, strict=True) if ok
                )

    assert run_workers(store_url, hub, worker) == []
    assert set(completed) == set(range(INSTANCES)) and max(completed.values()) == 1
    inbox = (await store.lease_episodes(at(1), 1, 30, "w"))[0].messages
    assert sorted(getattr(m.event, "task_scheduled_id", -1) for m in inbox) == list(
        range(INSTANCES)
    )
