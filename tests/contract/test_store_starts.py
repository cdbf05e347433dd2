"""Starts made together (one transaction on SQLite, one statement per batch on
PostgreSQL) keep the rules of a single start: a free id is created with its start
message, a running one refused, a finished one replaced."""

from __future__ import annotations

import asyncio

import pytest
from store_builders import lease_all, new_instance, settle

from taskloom.errors import InstanceExistsError
from taskloom.models import Status
from taskloom.storage import Store


async def test_a_burst_of_starts_creates_each_free_id_once(store: Store) -> None:
    await store.create_instance(new_instance("done"))
    await settle(store, {"done": Status.COMPLETED})
    await store.create_instance(new_instance("busy"))
    ids = [f"s{n}" for n in range(300)]
    news = [new_instance(i) for i in ids]
    news += [new_instance("s7"), new_instance("busy"), new_instance("done", execution_id="d2")]
    outcomes = await asyncio.gather(
        *(store.create_instance(n) for n in news), return_exceptions=True
    )
    refused = [n.record.instance_id for n, o in zip(news, outcomes, strict=True) if o is not None]
    # One of the two starts of s7 wins; "busy" is running; "done" is finished: replaced.
    assert sorted(refused) == ["busy", "s7"]
    assert all(isinstance(o, InstanceExistsError) for o in outcomes if o is not None)
    leased = await lease_all(store)
    assert set(leased) == {*ids, "busy", "done"}
    for iid in ids:
        assert [type(m.event).__name__ for m in leased[iid].messages] == ["ExecutionStarted"]
    replaced = await store.get_instance("done")
    assert replaced is not None and replaced.execution_id == "d2"
    assert replaced.status is Status.PENDING


async def test_a_refused_start_in_a_burst_names_the_instance(store: Store) -> None:
    await store.create_instance(new_instance("twice"))
    with pytest.raises(InstanceExistsError, match="'twice'"):
        await asyncio.gather(
            store.create_instance(new_instance("twice")),
            store.create_instance(new_instance("other")),
        )
    assert await store.get_instance("other") is not None
