"""schemathesis against ``/openapi.json`` of a real ``taskloom serve``: every check, no
500s, no schema violations, with an admin key (so the fuzzed requests reach the logic)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from http_server import running

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).parent / "schemathesis.toml"


def test_schemathesis_finds_no_server_errors_or_schema_violations(tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    with running(tmp_path, roles=("admin",)) as server:
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file", str(CONFIG),
            "run", f"{server.base_url}/openapi.json",
            "-H", f"Authorization: Bearer {server.keys['admin']}",
            "--checks", "all",
            "--max-examples", os.environ.get("TASKLOOM_SCHEMATHESIS_EXAMPLES", "25"),
            # One worker: hypothesis describes filters with ast.parse, which is not
            # thread-safe on CPython 3.11.
            "--workers", "1",
            "--seed", "1",
        ]  # fmt: skip
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        log = server.log()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Traceback" not in log and " 500" not in log, log[-4000:]
