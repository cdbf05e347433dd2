"""An SDK worker process: ``python sdk_worker_script.py ADDRESS KEY``; runs the
orchestrations of ``sdk_orchestrations.py`` until killed."""

from __future__ import annotations

import sys
import time

import sdk_orchestrations as o
from durabletask import worker as sdk


def main() -> None:
    address, key = sys.argv[1], sys.argv[2]
    w = sdk.TaskHubGrpcWorker(host_address=address, metadata=[("authorization", f"Bearer {key}")])
    for fn in (o.waits_slowly,):
        w.add_orchestrator(fn)
    for act in (o.slow,):
        w.add_activity(act)
    w.start()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
