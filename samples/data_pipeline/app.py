"""Seed 003, a prescriptive data pipeline: ingest every CSV and JSON file of an inbox
folder in parallel (validate, transform, load into SQLite), then write a summary. A bad
file fails only its own branch and shows up in the summary with its error.

    taskloom serve samples/data_pipeline/app.py:app
    # inbox: samples/data_pipeline/inbox ($PIPELINE_INBOX); database: ./pipeline.db ($PIPELINE_DB)

Services reach activities by dependency injection, as in the .NET isolated worker:
``warehouse`` (the target database), ``inbox`` (the source folder) and ``clock`` (the
source's clock, which stamps ``ingested_at``).

Routes: ``POST /ingestions`` ``{"folder": "batch-1"}`` (``write``), ``GET
/ingestions/{id}`` and ``GET /records?source_file=`` (``read``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from pydantic import BaseModel
from warehouse import Clock, Inbox, Warehouse, system_clock

import taskloom as tl
import taskloom.http

app = tl.App("data_pipeline")
HERE = Path(__file__).resolve().parent
app.add_service(
    "warehouse", factory=lambda: Warehouse(os.environ.get("PIPELINE_DB", "pipeline.db"))
)
app.add_service("inbox", factory=lambda: Inbox(os.environ.get("PIPELINE_INBOX", HERE / "inbox")))
app.add_service("clock", system_clock)

FIELDS = ("id", "name", "amount")
LOAD_RETRY = tl.RetryPolicy(first_retry_interval=timedelta(seconds=2), max_number_of_attempts=3)


class BadFileError(ValueError):
    """A source file that cannot be ingested; retrying does not help."""


# -- activities ---------------------------------------------------------------------


@app.activity(name="ListInputFiles")
def list_input_files(folder: str, *, inbox: Inbox) -> list[str]:
    return inbox.files(folder)


@app.activity(name="ValidateAndTransform")
def validate_and_transform(path: str, *, inbox: Inbox, clock: Clock) -> list[dict[str, Any]]:
    """Parse a CSV or JSON file, check every record, and return the rows to load:
    trimmed, title-cased names, amounts in cents, stamped with the source's clock."""
    text = inbox.read(path)
    records = _parse_json(path, text) if path.lower().endswith(".json") else _parse_csv(text)
    stamp = clock().isoformat()
    return [_transform(path, line, record, stamp) for line, record in records]


@app.activity(name="LoadRows")
def load_rows(batch: dict[str, Any], *, warehouse: Warehouse) -> int:
    return warehouse.load(batch["run_id"], batch["rows"])


@app.activity(name="RecordSummary")
def record_summary(summary: dict[str, Any], *, warehouse: Warehouse) -> None:
    warehouse.record_run(summary)


def _parse_csv(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise BadFileError(f"the header lacks {', '.join(missing)}")
    return [(reader.line_num, dict(row)) for row in reader]


def _parse_json(path: str, text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadFileError(f"not valid JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise BadFileError("expected a JSON array of objects")
    return list(enumerate(data, 1))


def _transform(path: str, line: int, record: dict[str, Any], stamp: str) -> dict[str, Any]:
    where = f"record {line}"
    missing = [f for f in FIELDS if record.get(f) in (None, "")]
    if missing:
        raise BadFileError(f"{where}: missing {', '.join(missing)}")
    try:
        amount = Decimal(str(record["amount"]).strip())
    except InvalidOperation:
        raise BadFileError(f"{where}: amount {record['amount']!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise BadFileError(f"{where}: amount {record['amount']!r} must be 0 or more")
    return {
        "source_file": path,
        "line": line,
        "id": str(record["id"]).strip(),
        "name": " ".join(str(record["name"]).split()).title(),
        "amount_cents": int((amount * 100).to_integral_value()),
        "ingested_at": stamp,
    }


# -- orchestrations -----------------------------------------------------------------


@app.orchestrator(name="IngestFolder")
def ingest_folder(ctx: tl.OrchestrationContext, request: dict[str, Any]) -> Any:
    """Fan out one IngestFile per file, fan in, write the summary."""
    folder = request["folder"]
    files: list[str] = yield ctx.call_activity(list_input_files, folder)
    ctx.set_custom_status({"stage": "Ingesting", "files": len(files)})
    branches = [
        ctx.call_sub_orchestrator(
            ingest_file,
            {"run_id": ctx.instance_id, "path": path},
            instance_id=f"{ctx.instance_id}:{n}",
        )
        for n, path in enumerate(files)
    ]
    results: list[dict[str, Any]] = yield ctx.task_all(branches)
    summary = {
        "run_id": ctx.instance_id,
        "folder": folder,
        "files": results,
        "loaded_rows": sum(r["rows"] for r in results),
        "failed": [{"file": r["file"], "error": r["error"]} for r in results if not r["ok"]],
        "finished_at": ctx.current_utc_datetime.isoformat(),
    }
    yield ctx.call_activity(record_summary, summary)
    ctx.set_custom_status({"stage": "Done", "failed": len(summary["failed"])})
    return summary


@app.orchestrator(name="IngestFile")
def ingest_file(ctx: tl.OrchestrationContext, job: dict[str, Any]) -> Any:
    """One file's branch: its failure becomes its result, so the others carry on."""
    path = job["path"]
    try:
        rows = yield ctx.call_activity(validate_and_transform, path)
        loaded = yield ctx.call_activity(
            load_rows, {"run_id": job["run_id"], "rows": rows}, retry_policy=LOAD_RETRY
        )
    except tl.TaskFailedError as exc:
        kind = exc.details.error_type.rsplit(".", 1)[-1]  # "BadFileError", not "app.BadFileError"
        return {"file": path, "ok": False, "rows": 0, "error": f"{kind}: {exc.details.message}"}
    return {"file": path, "ok": True, "rows": loaded, "error": None}


# -- HTTP routes --------------------------------------------------------------------

Client = Annotated[tl.AsyncClient, Depends(taskloom.http.client)]
Reader = Depends(taskloom.http.authorize("read"))
Writer = Depends(taskloom.http.authorize("write"))


class IngestionRequest(BaseModel):
    folder: str


@app.api.post("/ingestions", status_code=202, dependencies=[Writer])
async def start_ingestion(body: IngestionRequest, client: Client) -> dict[str, str]:
    run_id = await client.start_new("IngestFolder", body.model_dump())
    return {"id": run_id, "statusUri": f"/ingestions/{run_id}"}


@app.api.get("/ingestions/{run_id}", dependencies=[Reader])
async def ingestion_status(run_id: str, client: Client) -> dict[str, Any]:
    state = await client.get_status(run_id)
    if state is None or state.name != "IngestFolder":
        raise HTTPException(404, f"no ingestion {run_id!r}")
    return {
        "id": run_id,
        "runtimeStatus": state.runtime_status.value,
        "customStatus": state.custom_status,
        "summary": state.output,
        "failureDetails": state.failure_details,
    }


@app.api.get("/records", dependencies=[Reader])
async def records(source_file: str | None = None) -> list[dict[str, Any]]:
    warehouse: Warehouse = app.service("warehouse")
    found: list[dict[str, Any]] = warehouse.records(source_file)
    return found
