"""The ``taskloom`` command end to end: ``serve`` in a real process and the management
commands against the same SQLite store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_app import ROOT, Workers, check_history, read_log, starts, wait_until

import taskloom as tl


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def workers(url: str, hub: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(url, hub, tmp_path / "activities.log", tmp_path)
    try:
        yield w
    finally:
        w.close()


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


class Manage:
    """Runs management commands with ``--store`` and ``--hub`` filled in."""

    def __init__(self, url: str, hub: str) -> None:
        self.url, self.hub = url, hub

    def __call__(
        self, command: str, *args: str, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = cli(command, *args, "--store", self.url, "--hub", self.hub)
        if ok:
            assert done.returncode == 0, (command, args, done.stdout, done.stderr)
        return done

    def status(self, iid: str) -> dict[str, Any]:
        return json.loads(self("status", iid).stdout)


def test_module_and_console_script_print_the_same_help() -> None:
    script = Path(sys.executable).with_name("taskloom")
    if not script.exists():
        found = shutil.which("taskloom")
        assert found is not None, "the taskloom console script is not installed"
        script = Path(found)
    by_module = cli("--help")
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert by_module.returncode == by_script.returncode == 0, by_script.stderr
    assert by_module.stdout == by_script.stdout
    assert by_module.stdout.startswith("usage: taskloom")
    for command in ("serve", "start", "status", "list", "history", "raise-event", "purge"):
        assert command in by_module.stdout


def wait_status(client: tl.Client, iid: str, status: str) -> None:
    def reached() -> bool:
        state = client.get_status(iid)
        return state is not None and state.runtime_status.value == status

    wait_until(reached, 30, f"{iid} to be {status}")


@pytest.mark.slow
def test_serve_and_manage_instances(
    url: str, hub: str, workers: Workers, request: pytest.FixtureRequest
) -> None:
    workers.start()
    manage = Manage(url, hub)

    done = manage("start", "chain", "--input", "5", "--id", "c1", "--wait", "30")
    state = json.loads(done.stdout)
    assert state["instanceId"] == "c1"
    assert state["runtimeStatus"] == "Completed"
    assert state["output"] == (5 + 1) * 2 + 1

    status = manage.status("c1")
    assert status["runtimeStatus"] == "Completed" and status["input"] == 5
    assert status["output"] == 13 and status["name"] == "chain"

    events = [json.loads(line) for line in manage("history", "c1").stdout.splitlines()]
    kinds = [e["kind"] for e in events]
    assert "ExecutionStarted" in kinds[:2] and kinds[-1] == "ExecutionCompleted", kinds
    assert kinds.count("TaskCompleted") == 3 and events[-1]["result"] == "13", events[-1]
    client = tl.Client(url, hub=hub)
    request.addfinalizer(client.close)
    check_history(client.get_history("c1"))

    # An orchestration waiting for an event: raise it from the command line.
    assert manage("start", "waiter", "--id", "w1").stdout.strip() == "w1"
    manage("raise-event", "w1", "Go", "--data", '{"a": 1}')
    wait_status(client, "w1", "Completed")
    assert manage.status("w1")["output"] == {"got": {"a": 1}}

    # Suspend, then resume: the buffered event is handled after the resume.
    manage("start", "waiter", "--id", "w2")
    wait_status(client, "w2", "Running")
    manage("suspend", "w2", "--reason", "hold on")
    wait_status(client, "w2", "Suspended")
    manage("raise-event", "w2", "Go", "--data", '"late"')
    manage("resume", "w2")
    wait_status(client, "w2", "Completed")
    assert manage.status("w2")["output"] == {"got": "late"}

    # Terminate a waiting one; purging it before it finished is refused.
    manage("start", "waiter", "--id", "w3")
    refused = manage("purge", "w3", ok=False)
    assert refused.returncode == 2 and "terminate it" in refused.stderr
    manage("terminate", "w3", "--reason", "no longer needed")
    wait_status(client, "w3", "Terminated")

    listed = [json.loads(line) for line in manage("list").stdout.splitlines()]
    assert {s["instanceId"]: s["runtimeStatus"] for s in listed} == {
        "c1": "Completed",
        "w1": "Completed",
        "w2": "Completed",
        "w3": "Terminated",
    }
    only = manage("list", "--status", "Terminated").stdout.splitlines()
    assert [json.loads(line)["instanceId"] for line in only] == ["w3"]
    by_prefix = manage("list", "--prefix", "w").stdout.splitlines()
    assert sorted(json.loads(line)["instanceId"] for line in by_prefix) == ["w1", "w2", "w3"]

    # Restart the finished chain under its own id: same input, same output again.
    assert manage("restart", "c1", "--same-id").stdout.strip() == "c1"
    assert client.wait_for_completion("c1", 30).output == 13

    assert manage("purge", "c1").stdout.strip() == "1"
    assert manage("purge", "c1").stdout.strip() == "0"
    gone = manage("status", "c1", ok=False)
    assert gone.returncode == 1 and "no instance" in gone.stderr


def test_bad_json_input_is_a_usage_error(url: str, hub: str) -> None:
    manage = Manage(url, hub)
    done = manage("start", "chain", "--input", "{not json", ok=False)
    assert done.returncode == 2
    assert "--input" in done.stderr and "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
    manage("start", "waiter", "--id", "w1")
    done = manage("raise-event", "w1", "Go", "--data", "nope", ok=False)
    assert done.returncode == 2 and "--data" in done.stderr


@pytest.mark.parametrize("store", ["nonsense", "ftp://host/db", "sqlite://relative.db"])
def test_malformed_store_url_names_the_accepted_schemes(store: str) -> None:
    done = cli("status", "x", "--store", store)
    assert done.returncode == 2, done.stderr
    assert "taskloom: error:" in done.stderr and "Traceback" not in done.stderr
    assert "sqlite:///" in done.stderr
    if store != "sqlite://relative.db":
        assert "postgresql://" in done.stderr


def test_serve_with_malformed_store_url_exits_2() -> None:
    app = f"{ROOT / 'tests' / 'e2e' / 'crash_app.py'}:app"
    done = cli("serve", app, "--store", "ftp://host/db", timeout=30)
    assert done.returncode == 2, done.stderr
    assert "sqlite:///" in done.stderr and "postgresql://" in done.stderr


def test_serve_with_unknown_app_exits_2(tmp_path: Path) -> None:
    done = cli("serve", str(tmp_path / "missing.py") + ":app", timeout=30)
    assert done.returncode == 2 and "no such file" in done.stderr


def test_sigterm_lets_the_running_activity_finish(url: str, hub: str, workers: Workers) -> None:
    first = workers.start()
    with tl.Client(url, hub=hub) as client:
        client.start_new("slow_one", input={"n": 7}, instance_id="s1")
        wait_until(lambda: starts(workers.log), 30, "the slow activity to start")
        os.kill(first.pid, signal.SIGTERM)
        assert first.wait(30) == 0, workers.output()
        ran = read_log(workers.log)
        assert [(e.pid, e.phase) for e in ran] == [(first.pid, "start"), (first.pid, "end")], ran

        # A new worker finishes the orchestration from the stored result: no second run.
        workers.start()
        state = client.wait_for_completion("s1", 30)
        assert state.runtime_status is tl.Status.COMPLETED and state.output == {"n": 7}
        assert len(starts(workers.log)) == 1, read_log(workers.log)
        check_history(client.get_history("s1"))
