"""10 MB payloads through a real worker on both backends: orchestration input and output,
an activity's input and result, an external event's data; stored rows stay small, results
are exact, purge removes the payload rows, values above the limit fail clearly."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
from envs import OPTIONS

import taskloom as tl
from taskloom.runtime.worker import Worker
from taskloom.storage import Store, open_store
from taskloom.storage.large import MARKER

big_app = tl.App("large")
TEN_MB = 10_000_000


def blob(tag: str, size: int = TEN_MB) -> dict[str, Any]:
    """About ``size`` bytes of JSON records (compressible the way real data is)."""
    rows = [{"id": n, "tag": tag, "name": f"{tag}-{n * 7919 % 100003}"} for n in range(size // 45)]
    return {"tag": tag, "rows": rows}


@big_app.activity
def enlarge(data: dict[str, Any]) -> dict[str, Any]:
    return {"seen": len(data["rows"]), "back": blob("result")}


@big_app.activity
def too_big(_: None) -> str:
    return "x" * 3_000_000


@big_app.orchestrator
def roundtrip(ctx: tl.OrchestrationContext) -> Generator[Any, Any, Any]:
    data = ctx.get_input()
    result = yield ctx.call_activity(enlarge, data)
    event = yield ctx.wait_for_external_event("more")
    return {"result": result, "event": event, "input_rows": len(data["rows"])}


@big_app.orchestrator
def fails_big(ctx: tl.OrchestrationContext) -> Generator[Any, Any, Any]:
    try:
        yield ctx.call_activity(too_big)
    except tl.TaskFailedError as exc:
        return str(exc)
    return "no error"


@big_app.orchestrator
def returns_big(ctx: tl.OrchestrationContext) -> Generator[Any, Any, Any]:
    yield ctx.create_timer(ctx.current_utc_datetime)
    return "z" * 3_000_000


@pytest.fixture
async def big(store_url: str, hub: str) -> AsyncIterator[tuple[Store, tl.AsyncClient]]:
    store = open_store(store_url, hub=hub, payload_limit=32 * 1024 * 1024)
    await store.open()
    worker = Worker(big_app, store, options=OPTIONS)
    await worker.start()
    client_store = open_store(store_url, hub=hub, payload_limit=32 * 1024 * 1024)
    client = tl.AsyncClient(client_store)
    try:
        yield store, client
    finally:
        await client.close()
        await worker.stop(drain_timeout=2)
        await store.close()


async def raw(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if type(store).__name__ == "SqliteStore":
        conn = store._connection()  # type: ignore[attr-defined]
        return [tuple(r) for r in conn.execute(sql.replace("{s}", ""), params).fetchall()]

    async def op(conn: Any) -> list[tuple[Any, ...]]:
        text = sql.replace("{s}", f"{store._s}.").replace("?", "%s")  # type: ignore[attr-defined]
        return list(await (await conn.execute(text, list(params))).fetchall())

    return await store._run(op)  # type: ignore[attr-defined,no-any-return]


async def test_ten_megabytes_through_activities_events_and_orchestrations(
    big: tuple[Store, tl.AsyncClient],
) -> None:
    store, client = big
    data, more = blob("input"), blob("event")
    began = time.perf_counter()
    iid = await client.start_new("roundtrip", data, instance_id="big-1")
    await client.wait_for_start(iid, timeout=30)
    await client.raise_event(iid, "more", more)
    state = await client.wait_for_completion(iid, timeout=60)
    elapsed = time.perf_counter() - began
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.input == data
    assert state.output == {
        "result": {"seen": len(data["rows"]), "back": blob("result")},
        "event": more,
        "input_rows": len(data["rows"]),
    }
    history = await client.get_history(iid)
    assert any(getattr(e, "input", None) == json.dumps(more, separators=(",", ":"))
               or e.kind == "EventRaised" for e in history)  # fmt: skip

    # Every stored row is small; the payload table holds each value once, compressed.
    sizes = {
        table: (await raw(store, f"SELECT MAX(LENGTH({col})) FROM {{s}}{table} WHERE hub = ?",
                          store.hub))[0][0] or 0
        for table, col in (("history", "event"), ("messages", "event"))
    }  # fmt: skip
    instance = await raw(
        store,
        "SELECT LENGTH(input), LENGTH(output) FROM {s}instances WHERE hub = ? AND instance_id = ?",
        store.hub,
        iid,
    )
    payloads = await raw(
        store,
        "SELECT size, LENGTH(data) FROM {s}payloads WHERE hub = ? AND instance_id = ?",
        store.hub,
        iid,
    )
    assert sizes["history"] < 400, sizes
    assert instance == [(len(MARKER) + 64, len(MARKER) + 64)]
    # input, activity result, event data, output: one row each (the activity's input is the
    # orchestration's input, byte for byte, so it shares that row).
    assert len(payloads) == 4, payloads
    raw_total = sum(size for size, _ in payloads)
    packed_total = sum(packed for _, packed in payloads)
    assert raw_total > 4 * TEN_MB and packed_total * 3 < raw_total
    print(  # the figures of docs/architecture.md
        f"\n[{type(store).__name__}] 10 MB round trip {elapsed:.2f} s; history row max "
        f"{sizes['history']} B; payloads {raw_total:,} B -> {packed_total:,} B "
        f"(ratio {raw_total / packed_total:.2f})"
    )

    assert await client.purge(iid) == 1
    left = await raw(store, "SELECT COUNT(*) FROM {s}payloads WHERE hub = ?", store.hub)
    assert left == [(0,)]


async def test_values_above_the_limit_fail_clearly(big: tuple[Store, tl.AsyncClient]) -> None:
    _, client = big
    huge = "y" * (32 * 1024 * 1024)
    with pytest.raises(tl.PayloadTooLargeError, match=r"33,554,434 bytes .* limit of 33,554,432"):
        await client.start_new("roundtrip", huge, instance_id="huge")
    assert await client.get_status("huge") is None

    iid = await client.start_new("roundtrip", {"rows": []}, instance_id="huge-event")
    with pytest.raises(tl.PayloadTooLargeError):
        await client.raise_event(iid, "more", huge)
    assert (await client.get_status(iid)).runtime_status is not tl.Status.COMPLETED  # type: ignore[union-attr]


async def test_an_activity_result_above_the_limit_fails_the_activity(
    store_url: str, hub: str
) -> None:
    store = open_store(store_url, hub=hub, payload_threshold=1024, payload_limit=2_000_000)
    await store.open()
    worker = Worker(big_app, store, options=OPTIONS)
    await worker.start()
    client = tl.AsyncClient(store)
    try:
        iid = await client.start_new("fails_big")
        state = await client.wait_for_completion(iid, timeout=30)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        assert "3,000,002 bytes" in state.output and "limit of 2,000,000 bytes" in state.output
    finally:
        await worker.stop(drain_timeout=2)
        await store.close()


async def test_an_orchestration_output_above_the_limit_fails_the_orchestration(
    store_url: str, hub: str
) -> None:
    """The worker fails the instance, naming the size and the limit, rather than retrying
    a commit the store refuses for ever."""
    store = open_store(store_url, hub=hub, payload_threshold=1024, payload_limit=2_000_000)
    await store.open()
    worker = Worker(big_app, store, options=OPTIONS)
    await worker.start()
    client = tl.AsyncClient(store)
    try:
        iid = await client.start_new("returns_big")
        state = await client.wait_for_completion(iid, timeout=30)
        assert state.runtime_status is tl.Status.FAILED
        assert state.failure_details is not None
        assert state.failure_details.error_type == "PayloadTooLargeError"
        assert "3,000,002 bytes" in state.failure_details.message
        assert "limit of 2,000,000 bytes" in state.failure_details.message
    finally:
        await worker.stop(drain_timeout=2)
        await store.close()
