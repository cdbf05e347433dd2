"""Two ``taskloom serve`` processes of one app, versions 1 and 2 (``version_match="exact"``),
on one hub: version-1 instances started before version 2 was deployed finish on the
version-1 worker while version-2 starts run on the version-2 worker; no episode of either
ever runs on the other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import taskloom as tl

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
APP = f"{HERE / 'versioned_app.py'}:app"


def serve(store_url: str, hub: str, version: str, log: Path, out: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, TASKLOOM_TEST_HUB=hub, TASKLOOM_TEST_VERSION=version,
               TASKLOOM_TEST_LOG=str(log), PYTHONUNBUFFERED="1")  # fmt: skip
    cmd = [sys.executable, "-m", "taskloom", "serve", APP, "--store", store_url, "--no-http",
           "--poll-interval", "0.1", "--lease-for", "5"]  # fmt: skip
    with open(out, "wb") as sink:
        return subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def wait_started(out: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while "started for hub" not in out.read_text(errors="replace"):
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_worker_versions_on_one_hub(store_url: str, hub: str, tmp_path: Path) -> None:
    log = tmp_path / "episodes.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(serve(store_url, hub, "1", log, tmp_path / "v1.out"))
        wait_started(tmp_path / "v1.out", procs[0])
        with tl.Client(store_url, hub=hub) as client:
            old = [client.start_new("flow", version="1", instance_id=f"v1-{i}") for i in range(8)]
            deadline = time.monotonic() + 20
            while any(client.get_status(i).runtime_status is tl.Status.PENDING for i in old):  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "v1 instances did not start"
                time.sleep(0.05)
            # Version 2 is deployed beside version 1; new starts are version 2.
            procs.append(serve(store_url, hub, "2", log, tmp_path / "v2.out"))
            wait_started(tmp_path / "v2.out", procs[1])
            new = [client.start_new("flow", version="2", instance_id=f"v2-{i}") for i in range(8)]
            for iid in old + new:
                client.raise_event(iid, "go")
            for iid in old + new:
                state = client.wait_for_completion(iid, 30)
                assert state is not None and state.runtime_status is tl.Status.COMPLETED, state
                v = "1" if iid.startswith("v1-") else "2"
                assert state.output == {"version": v, "ran_on": v, "child": v}
        rows = [line.split(",") for line in log.read_text().splitlines()]
        assert rows and all(version == worker for _, version, worker in rows), rows
        ran = {worker for iid, _, worker in rows if iid.startswith("v2-")}
        assert ran == {"2"}
        assert {worker for iid, _, worker in rows if iid.startswith("v1-")} == {"1"}
        children = [iid for iid, _, _ in rows if ":" in iid]
        assert len(set(children)) == 16  # every child ran, on its parent's version
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
