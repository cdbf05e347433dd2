"""One request, one trace, across processes: a client process (which set up
OpenTelemetry itself) starts an orchestration with an activity, a timer and a
sub-orchestration, and raises an event; a ``taskloom serve`` worker process runs it and
exports by OTLP. A receiver on loopback gets both processes' spans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_app import wait_until
from otlp_receiver import Receiver, Span, otlp_receiver

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as r:
        yield r


def one(spans: list[Span], name: str, kind: str) -> Span:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, f"{len(found)} spans {name} ({kind}) in {[s.name for s in spans]}"
    return found[0]


def test_one_trace_across_a_client_and_a_worker_process(
    receiver: Receiver, store_url: str, hub: str, tmp_path: Path
) -> None:
    env = dict(os.environ, TASKLOOM_TEST_HUB=hub, PYTHONUNBUFFERED="1")
    env["OTEL_BSP_SCHEDULE_DELAY"] = "50"  # export within 50 ms rather than 5 s
    worker_log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "taskloom", "serve", f"{HERE / 'trace_app.py'}:app"]
    cmd += ["--store", store_url, "--no-http", "--json-logs", "--poll-interval", "0.2"]
    cmd += ["--otlp-endpoint", receiver.url]
    with open(worker_log, "wb") as out:
        worker = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_until(lambda: "started for hub" in worker_log.read_text(), 60, "the worker")
        client = subprocess.run(
            [
                sys.executable,
                str(HERE / "trace_client.py"),
                store_url,
                hub,
                receiver.url + "/v1/traces",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        assert client.returncode == 0, client.stderr + worker_log.read_text()
        started = json.loads(client.stdout.strip().splitlines()[-1])
        trace_id, iid = started["trace_id"], started["instance_id"]

        def done() -> bool:
            return any(s.name == "orchestration:checkout" for s in receiver.snapshot())

        wait_until(done, 60, "the orchestration's span")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert worker.returncode == 0, worker_log.read_text()

    spans = receiver.snapshot()
    assert {s.trace_id for s in spans} == {trace_id}, "every span is in the client's trace"
    services = {s.service for s in spans}
    assert services == {"shop-frontend", hub}, services

    request = next(s for s in spans if s.name == "POST /checkout")
    create = one(spans, "create_orchestration:checkout", "PRODUCER")
    event = one(spans, "orchestration_event:approved", "PRODUCER")
    orch = one(spans, "orchestration:checkout", "SERVER")
    timer = one(spans, "orchestration:checkout:timer", "INTERNAL")
    sub_wait = one(spans, "orchestration:child", "CLIENT")
    sub = one(spans, "orchestration:child", "SERVER")
    waits = [s for s in spans if s.name == "activity:greet" and s.kind == "CLIENT"]
    runs = [s for s in spans if s.name == "activity:greet" and s.kind == "SERVER"]
    assert len(waits) == len(runs) == 2

    # Which process emitted what.
    assert {create.service, event.service, request.service} == {"shop-frontend"}
    assert {s.service for s in (orch, timer, sub_wait, sub, *waits, *runs)} == {hub}

    # Parentage: the request > create > orchestration > (timer, tasks) > runs.
    assert create.parent_span_id == event.parent_span_id == request.span_id
    assert orch.parent_span_id == create.span_id
    assert timer.parent_span_id == sub_wait.parent_span_id == orch.span_id
    assert sub.parent_span_id == sub_wait.span_id
    assert {w.parent_span_id for w in waits} == {orch.span_id, sub.span_id}
    assert {r.parent_span_id for r in runs} == {w.span_id for w in waits}

    # Attributes of the Durable Task schema.
    assert orch.attributes["durabletask.type"] == "orchestration"
    assert orch.attributes["durabletask.task.name"] == "checkout"
    assert orch.attributes["durabletask.task.instance_id"] == iid
    assert orch.attributes["durabletask.task.status"] == "Completed"
    assert create.attributes["durabletask.task.instance_id"] == iid
    assert sub.attributes["durabletask.task.instance_id"] == f"{iid}:0002"
    assert timer.attributes["durabletask.type"] == "timer"
    assert "durabletask.fire_at" in timer.attributes
    assert event.attributes["durabletask.event.target_instance_id"] == iid
    assert {r.attributes["durabletask.task.task_id"] for r in runs} == {0}
    assert not any(s.error for s in spans)

    # Real durations: the timer's span lasts at least its 300 ms; the orchestration's
    # span covers its whole life, from the first episode to the completion.
    assert timer.end_ns - timer.start_ns >= 300_000_000
    assert orch.start_ns <= timer.start_ns and orch.end_ns >= sub_wait.end_ns
    assert sub_wait.start_ns <= sub.start_ns and sub.end_ns <= sub_wait.end_ns

    # JSON log lines written inside an activity's run carry its trace id.
    lines = [json.loads(x) for x in worker_log.read_text().splitlines() if x.startswith("{")]
    greetings = [x for x in lines if x["message"].startswith("greeting")]
    assert len(greetings) == 2
    assert {x["trace_id"] for x in greetings} == {trace_id}
    assert {x["span_id"] for x in greetings} == {r.span_id for r in runs}


def test_a_takeover_after_sigkill_stays_in_one_trace(
    receiver: Receiver, store_url: str, hub: str, tmp_path: Path
) -> None:
    import taskloom as tl

    mark, gate = tmp_path / "mark", tmp_path / "gate"
    env = dict(os.environ, TASKLOOM_TEST_HUB=hub, PYTHONUNBUFFERED="1")
    env.update(OTEL_BSP_SCHEDULE_DELAY="50", TASKLOOM_TEST_MARK=str(mark))
    env["TASKLOOM_TEST_GATE"] = str(gate)
    cmd = [sys.executable, "-m", "taskloom", "serve", f"{HERE / 'trace_app.py'}:app"]
    cmd += ["--store", store_url, "--no-http", "--poll-interval", "0.2", "--lease-for", "2"]
    cmd += ["--otlp-endpoint", receiver.url]
    logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
    workers = []
    for log in logs:
        with open(log, "wb") as out:
            workers.append(
                subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            )
    try:
        for log in logs:
            wait_until(lambda log=log: "started for hub" in log.read_text(), 60, "a worker")
        # The test process does not trace: the instance gets a derived trace of its own.
        with tl.Client(store_url, hub=hub) as client:
            iid = client.start_new("gated")
            wait_until(mark.exists, 60, "the activity to start")
            holder = next(w for w in workers if w.pid == int(mark.read_text()))
            holder.kill()
            holder.wait(10)
            gate.touch()
            state = client.wait_for_completion(iid, timeout=120)
            assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
            survivor = next(w for w in workers if w is not holder)
            assert state.output == survivor.pid
        wait_until(
            lambda: any(s.name == "orchestration:gated" for s in receiver.snapshot()),
            60,
            "the orchestration's span",
        )
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(60) == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(10)

    spans = receiver.snapshot()
    orch = one(spans, "orchestration:gated", "SERVER")
    wait = one(spans, "activity:hold", "CLIENT")
    run = one(spans, "activity:hold", "SERVER")  # the killed run was never exported
    assert {s.trace_id for s in spans} == {orch.trace_id}
    assert orch.parent_span_id == "" and orch.attributes["durabletask.task.instance_id"] == iid
    assert wait.parent_span_id == orch.span_id
    # The run after the takeover is parented on the span id the first worker stamped on
    # the work item: every worker derives the same ids from the history.
    assert run.parent_span_id == wait.span_id
    assert run.attributes["taskloom.activity.attempt"] == 2
