"""Regenerate golden history files: ``python tests/golden/record.py [FLOW ...]``.

Each flow of ``flows.FLOWS`` runs in a :class:`taskloom.testing.TestEnv` on a virtual
clock that starts at ``START``; the file ``tests/golden/<flow>.json`` gets the
orchestrator's name, instance id, input, and the history as ``event_to_dict`` dicts.
Without arguments every flow is recorded.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import flows  # noqa: E402

from taskloom.history import event_to_dict  # noqa: E402
from taskloom.models import Status  # noqa: E402
from taskloom.testing import TestEnv  # noqa: E402

START = datetime(2026, 1, 1, 9, 0, 0, tzinfo=UTC)


def instance_id(flow: flows.Flow) -> str:
    return f"golden-{flow.name}"


def record(flow: flows.Flow, directory: Path = HERE) -> Path:
    """Run ``flow`` to completion and write its golden file; returns the path."""
    iid = instance_id(flow)
    with TestEnv(flows.app, start=START, time_skipping=flow.drive is None) as env:
        env.client.start_new(flow.orchestrator, input=flow.input, instance_id=iid)
        if flow.drive is not None:
            flow.drive(env, iid)
        state = env.client.wait_for_completion(iid, timeout=30)
        if state.runtime_status is not Status.COMPLETED:
            raise RuntimeError(f"flow {flow.name!r} ended {state.runtime_status}: {state}")
        history = env.client.get_history(iid)
    data: dict[str, Any] = {
        "flow": flow.name,
        "orchestrator": flow.orchestrator,
        "instance_id": iid,
        "input": flow.input,
        "history": [event_to_dict(e) for e in history],
    }
    path = directory / f"{flow.name}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def main(argv: list[str]) -> int:
    wanted = set(argv)
    for flow in flows.FLOWS:
        if not wanted or flow.name in wanted:
            print(record(flow))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
