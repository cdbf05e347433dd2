"""samples/data_pipeline: an inbox folder with a good CSV, a good JSON and a malformed
file is ingested over HTTP; the good rows land in the warehouse table, the bad file
fails only its branch and is listed in the summary with its error. Once in TestEnv with
the services swapped for test doubles, once under a real ``taskloom serve``."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sample_loader import load_sample

import taskloom as tl

ROOT = Path(__file__).resolve().parents[2]
STAMP = datetime(2026, 1, 31, 6, 0, tzinfo=UTC)


def wait_until(read: Callable[[], Any], ok: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + 15
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        time.sleep(0.05)


def table(db: Path, query: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(query)]


def test_a_malformed_file_fails_only_its_branch(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    folder = inbox / "2026-01-31"
    folder.mkdir(parents=True)
    (folder / "customers.csv").write_text(
        "id,name,amount\nC-1,  ada   lovelace,120.50\nC-2,alan,3\n"
    )
    (folder / "orders.json").write_text(json.dumps([{"id": 7, "name": "widgets", "amount": 2}]))
    (folder / "broken.json").write_text('[{"id": "B-1", "name": "x", "amount": 1},')
    (folder / "notes.txt").write_text("not data: ignored")
    db = tmp_path / "warehouse.db"

    sample = load_sample("data_pipeline")
    sample.app.add_service("warehouse", sample.Warehouse(db))
    sample.app.add_service("inbox", sample.Inbox(inbox))
    sample.app.add_service("clock", lambda: STAMP)
    with tl.testing.TestEnv(sample.app, http=True) as env:
        assert env.base_url is not None
        with httpx.Client(base_url=env.base_url, timeout=10) as http:
            started = http.post("/ingestions", json={"folder": "2026-01-31"})
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]
            state = env.client.wait_for_completion(run_id, timeout=15)
            shown = http.get(f"/ingestions/{run_id}").json()
            loaded = http.get("/records", params={"source_file": "2026-01-31/customers.csv"})

    assert state.runtime_status is tl.Status.COMPLETED
    summary = state.output
    assert shown["summary"] == summary and shown["runtimeStatus"] == "Completed"
    assert summary["loaded_rows"] == 3
    by_file = {r["file"]: r for r in summary["files"]}
    assert sorted(by_file) == [
        "2026-01-31/broken.json",
        "2026-01-31/customers.csv",
        "2026-01-31/orders.json",
    ]
    assert by_file["2026-01-31/customers.csv"] == {
        "file": "2026-01-31/customers.csv",
        "ok": True,
        "rows": 2,
        "error": None,
    }
    assert by_file["2026-01-31/orders.json"]["rows"] == 1
    [failed] = summary["failed"]
    assert failed["file"] == "2026-01-31/broken.json"
    assert "BadFileError: not valid JSON" in failed["error"]

    rows = table(db, "SELECT * FROM records ORDER BY source_file, line")
    assert [(r["source_file"], r["id"], r["name"], r["amount_cents"]) for r in rows] == [
        ("2026-01-31/customers.csv", "C-1", "Ada Lovelace", 12050),
        ("2026-01-31/customers.csv", "C-2", "Alan", 300),
        ("2026-01-31/orders.json", "7", "Widgets", 200),
    ]
    assert {r["ingested_at"] for r in rows} == {STAMP.isoformat()}  # the injected clock
    assert {r["run_id"] for r in rows} == {run_id}
    assert [r["id"] for r in loaded.json()] == ["C-1", "C-2"]
    [run] = table(db, "SELECT * FROM ingestion_runs")
    assert (run["run_id"], run["files"], run["loaded_rows"]) == (run_id, 3, 3)
    assert json.loads(run["failed_files"]) == summary["failed"]


def test_taskloom_serve_runs_the_sample_from_its_file_path(tmp_path: Path) -> None:
    """The README's commands: serve the file path (its sibling module imports), POST a
    folder of the shipped inbox, read the summary and the records over HTTP."""
    port = _free_port()
    env = {**os.environ, "PIPELINE_DB": str(tmp_path / "pipeline.db")}
    store = f"sqlite:///{tmp_path / 'taskloom.db'}"
    command = [sys.executable, "-m", "taskloom", "serve", "samples/data_pipeline/app.py:app"]
    server = subprocess.Popen(
        [*command, "--store", store, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_until(lambda: _reachable(http, server), bool, "taskloom serve to listen")
            started = http.post("/ingestions", json={"folder": "batch-1"})
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]
            shown = wait_until(
                lambda: http.get(f"/ingestions/{run_id}").json(),
                lambda s: s["runtimeStatus"] not in ("Pending", "Running"),
                "the ingestion to finish",
            )
            escape = http.post("/ingestions", json={"folder": "../.."}).json()["id"]
            refused = wait_until(
                lambda: http.get(f"/ingestions/{escape}").json(),
                lambda s: s["runtimeStatus"] not in ("Pending", "Running"),
                "a folder outside the inbox to be refused",
            )
            records = http.get("/records").json()
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0, errors

    summary = shown["summary"]
    assert shown["runtimeStatus"] == "Completed", shown
    assert summary["loaded_rows"] == 5
    assert summary["failed"] == [
        {
            "file": "batch-1/refunds.csv",
            "error": "BadFileError: record 3: amount 'not-a-number' is not a number",
        }
    ]
    assert sorted(r["id"] for r in records) == ["C-1", "C-2", "C-3", "O-1", "O-2"]
    assert refused["runtimeStatus"] == "Failed"
    assert "no folder '../..' in the inbox" in refused["failureDetails"]["message"]


def _reachable(http: httpx.Client, server: subprocess.Popen[str]) -> bool:
    if server.poll() is not None:
        raise AssertionError(
            f"taskloom serve exited: {server.stderr.read() if server.stderr else ''}"
        )
    try:
        return http.get("/openapi.json").status_code == 200
    except httpx.TransportError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
