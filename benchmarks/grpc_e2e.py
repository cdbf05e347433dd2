"""Run Microsoft's durabletask-python end-to-end tests against ``taskloom serve --grpc``.

Their e2e modules start the SDK's in-memory sidecar with
``durabletask.testing.create_test_backend(port=...)``. This script copies the test
folder of a checkout you provide into a temporary directory (nothing of theirs is kept
in this repository), adds a ``conftest.py`` that replaces ``create_test_backend`` with a
stand-in starting ``taskloom serve --grpc PORT --no-http`` on a fresh SQLite file (or the
PostgreSQL URL given, on a fresh hub) for every test, runs each module on its own and
prints passed / failed / skipped per module. The ``durabletask.azuremanaged`` modules
(written for the Durable Task Scheduler emulator at ``ENDPOINT``) get one ``taskloom
serve --grpc`` per module, reached as ``http://localhost:PORT`` with task hub ``TASKHUB``.

    git clone https://github.com/microsoft/durabletask-python /tmp/durabletask-python
    .venv/bin/python -m benchmarks.grpc_e2e /tmp/durabletask-python [--store URL] [-k EXPR]

The checkout's tests should match the installed ``durabletask`` (their HEAD may test
features a released SDK lacks). Results and the reasons of each remaining failure are in
``docs/grpc.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The modules that start a test backend (the e2e ones).
MODULES = [
    "tests/durabletask/test_orchestration_e2e.py",
    "tests/durabletask/test_orchestration_async_e2e.py",
    "tests/durabletask/test_orchestration_versioning_e2e.py",
    "tests/durabletask/test_rewind_e2e.py",
    "tests/durabletask/test_work_item_filters_e2e.py",
    "tests/durabletask/test_batch_actions.py",
    "tests/durabletask/test_delayed_signal_normalization.py",
    "tests/durabletask/test_large_payload_e2e.py",
    "tests/durabletask/entities/test_class_based_entities_e2e.py",
    "tests/durabletask/entities/test_function_based_entities_e2e.py",
    "tests/durabletask/entities/test_delayed_signals_e2e.py",
    "tests/durabletask/entities/test_entity_failure_handling.py",
    "tests/durabletask/scheduled/test_scheduled_e2e.py",
]

#: The ``durabletask.azuremanaged`` modules: they talk to a running Durable Task
#: Scheduler (emulator) at ``ENDPOINT``, task hub ``TASKHUB``; here one
#: ``taskloom serve --grpc`` per module on a fresh SQLite file, reached over
#: ``http://localhost:PORT`` with the ``taskhub`` metadata the SDK sends.
DTS_MODULES = [
    "tests/durabletask-azuremanaged/test_dts_activity_sequence.py",
    "tests/durabletask-azuremanaged/test_dts_orchestration_e2e.py",
    "tests/durabletask-azuremanaged/test_dts_async_orchestration_e2e.py",
    "tests/durabletask-azuremanaged/test_dts_orchestration_versioning_e2e.py",
    "tests/durabletask-azuremanaged/test_dts_rewind_e2e.py",
    "tests/durabletask-azuremanaged/test_dts_work_item_filters_e2e.py",
    "tests/durabletask-azuremanaged/test_dts_batch_actions.py",
    "tests/durabletask-azuremanaged/test_dts_large_payload_e2e.py",
    "tests/durabletask-azuremanaged/entities/test_dts_class_based_entities_e2e.py",
    "tests/durabletask-azuremanaged/entities/test_dts_function_based_entities_e2e.py",
    "tests/durabletask-azuremanaged/entities/test_dts_delayed_signals_e2e.py",
    "tests/durabletask-azuremanaged/entities/test_dts_entity_failure_handling.py",
    "tests/durabletask-azuremanaged/scheduled/test_dts_scheduled_e2e.py",
]

CONFTEST = '''
"""Written by taskloom's benchmarks/grpc_e2e.py: the SDK's test backend, replaced by
`taskloom serve --grpc` on a fresh store per test."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import time
import uuid

import durabletask.testing as testing

STORE = os.environ.get("TASKLOOM_E2E_STORE", "")


class TaskloomBackend:
    def __init__(self, port, max_history_size=10000):
        self.port = port
        self._dir = tempfile.mkdtemp(prefix="tl-e2e-")
        self._proc = None

    def start(self):
        store = STORE or f"sqlite:///{self._dir}/hub.db"
        hub = "e2e" + uuid.uuid4().hex[:10]
        if STORE:
            _use_keys(store, hub)
        self._log = open(os.path.join(self._dir, "serve.log"), "w")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "serve", "--grpc", str(self.port),
             "--no-http", "--store", store, "--hub", hub, "--lease-for", "10"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"taskloom serve exited: see {self._dir}/serve.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return f"localhost:{self.port}"
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("taskloom serve did not listen within 30 s")

    def stop(self, grace=None):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def reset(self):
        pass


def _use_keys(store_url, hub):
    """A shared database holds other hubs' keys, so keyless calls are refused there:
    make a worker key and a contributor key for this hub and have the SDK's workers and
    clients send them (their tests pass no metadata)."""
    import asyncio
    from datetime import datetime, timezone

    from durabletask import client, worker
    from taskloom import manage
    from taskloom.storage import open_store

    async def make():
        s = open_store(store_url, hub=hub)
        await s.open()
        try:
            now = datetime.now(timezone.utc)
            w = await manage.create_key(s, "worker", None, now)
            c = await manage.create_key(s, "contributor", None, now)
            return w.key, c.key
        finally:
            await s.close()

    work, contrib = asyncio.run(make())
    for cls, key in ((worker.TaskHubGrpcWorker, work), (client.TaskHubGrpcClient, contrib),
                     (client.AsyncTaskHubGrpcClient, contrib)):
        init = getattr(cls, "_taskloom_init", cls.__init__)
        cls._taskloom_init = init

        def patched(self, *args, _init=init, _key=key, **kwargs):
            kwargs["metadata"] = [*(kwargs.get("metadata") or []),
                                  ("authorization", f"Bearer {_key}")]
            _init(self, *args, **kwargs)

        cls.__init__ = patched


def create_test_backend(port=50051, max_history_size=10000):
    backend = TaskloomBackend(port, max_history_size)
    backend.start()
    return backend


testing.create_test_backend = create_test_backend
'''

_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|error|errors|xfailed|xpassed)")


def _serve(db: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``taskloom serve --grpc`` on a free port and a fresh SQLite file, listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    command = [sys.executable, "-m", "taskloom", "serve", "--grpc", str(port), "--no-http"]
    command += ["--store", f"sqlite:///{db}", "--lease-for", "10"]
    log = open(db.with_suffix(".serve.log"), "wb")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"taskloom serve did not listen; see {db.with_suffix('.serve.log')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of durabletask-python")
    parser.add_argument("--store", default="", help="store URL (default: a SQLite file)")
    parser.add_argument("-k", default="", help="pytest -k expression")
    parser.add_argument("--module", action="append", help="run only these modules")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dt-e2e-"))
    shutil.copytree(args.checkout / "tests", work / "tests")
    (work / "conftest.py").write_text(CONFTEST)
    env = {**os.environ, "TASKLOOM_E2E_STORE": args.store}
    totals: dict[str, int] = {}
    modules = args.module or [*MODULES, *DTS_MODULES]
    for module in modules:
        if not (work / module).exists():
            print(f"{module}: not in this checkout")
            continue
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module]
        # Their pyproject's pytest settings (async tests run by pytest-asyncio).
        command += ["--timeout", str(args.timeout), "-o", "addopts=", "-o", "asyncio_mode=auto"]
        if args.k:
            command += ["-k", args.k]
        server = None
        if "durabletask-azuremanaged" in module:
            server, port = _serve(work / (Path(module).stem + ".db"))
            env["ENDPOINT"], env["TASKHUB"] = f"http://localhost:{port}", "e2e-dts"
        try:
            done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
        tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
        counts = {kind: int(n) for n, kind in _COUNTS.findall(tail)}
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n
        print(f"{module}: {tail}", flush=True)
        (work / (Path(module).stem + ".log")).write_text(done.stdout + done.stderr)
    print("total:", ", ".join(f"{n} {k}" for k, n in sorted(totals.items())))
    print(f"logs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
