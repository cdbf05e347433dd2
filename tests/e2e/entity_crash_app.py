"""The app of the entity crash test: ``taskloom serve tests/e2e/entity_crash_app.py:app``.

Entity ``tally`` applies ``add`` operations carrying ``{"id": n, "n": amount}``: its state
counts them, sums them, remembers every id seen and counts ids seen twice. Each
execution of an operation also appends ``id<TAB>pid`` to ``TASKLOOM_TEST_LOG`` (a side
effect, so at least once) and sleeps ``TASKLOOM_TEST_SLEEP`` seconds, so a kill lands
in the middle of a batch.
"""

from __future__ import annotations

import os
import time
from typing import Any

import taskloom as tl

app = tl.App(os.environ.get("TASKLOOM_TEST_HUB", "entitycrash"))
SLEEP = float(os.environ.get("TASKLOOM_TEST_SLEEP", "0.005"))


def _log(op_id: int) -> None:
    path = os.environ.get("TASKLOOM_TEST_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{op_id}\t{os.getpid()}\n".encode())
    finally:
        os.close(fd)


@app.entity
def tally(ctx: tl.EntityContext) -> Any:
    state = ctx.get_state(lambda: {"count": 0, "sum": 0, "ids": [], "dups": 0})
    if ctx.operation_name == "add":
        op = ctx.get_input()
        _log(op["id"])
        time.sleep(SLEEP)
        if op["id"] in state["ids"]:
            state["dups"] += 1
        state["ids"].append(op["id"])
        state["count"] += 1
        state["sum"] += op["n"]
        ctx.set_state(state)
    return None
