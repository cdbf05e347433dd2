"""Document approval (seed 004), ported from a Durable Functions app.

A schema change arrives on the ``schema-changes`` queue and starts an approval for its
document (unless one is already running). The orchestration writes a draft, picks the
approval tier from the document's metadata, mails the approvers signed approve and reject
links, and waits for ``ApprovalEvent`` until the tier's SLA. Past the SLA it escalates once
with 24 more hours, then ends ``TimedOut``; a rejection mails the documentation team; an
approval writes the final document, files it in the document library folder and records
it in the master index (a SQLite table).

Run it with ``taskloom serve samples/document_approval/app.py:app``; settings come from
``DOCAPPROVAL_*`` environment variables (see :func:`_env`), and ``samples/README.md``
shows how to drive it by hand.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends

import taskloom as tl
import taskloom.http

log = logging.getLogger("document_approval")

# host.json: maxConcurrentActivityFunctions 10, maxConcurrentOrchestratorFunctions 5.
# (Service Bus maxConcurrentCalls 16 is the queue runner's default concurrency.)
app = tl.App("document_approval", max_concurrent_activities=10, max_concurrent_orchestrations=5)

EVENT = "ApprovalEvent"
ESCALATION_HOURS = 24
AUTHOR_ROLE = "documentation-team"  # who hears about rejections


# -- settings, injected as services (tests replace them with app.add_service) -----------


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DOCAPPROVAL_{name}", default)


def _data_dir() -> Path:
    return Path(_env("DATA_DIR", "document-approval-data"))


@dataclass(frozen=True)
class Smtp:
    """Where mail goes: ``DOCAPPROVAL_SMTP_HOST``/``_PORT`` (localhost:1025), optional
    ``_SMTP_USER``/``_SMTP_PASSWORD`` and ``_SMTP_STARTTLS=1``; ``_MAIL_FROM`` the sender
    and ``_MAIL_DOMAIN`` the domain of the approver roles' addresses (role@domain)."""

    host: str = "localhost"
    port: int = 1025
    sender: str = "approvals@localhost"
    domain: str = "example.com"
    user: str | None = None
    password: str | None = None
    starttls: bool = False

    @classmethod
    def from_env(cls) -> Smtp:
        return cls(
            host=_env("SMTP_HOST", cls.host),
            port=int(_env("SMTP_PORT", str(cls.port))),
            sender=_env("MAIL_FROM", cls.sender),
            domain=_env("MAIL_DOMAIN", cls.domain),
            user=os.environ.get("DOCAPPROVAL_SMTP_USER"),
            password=os.environ.get("DOCAPPROVAL_SMTP_PASSWORD"),
            starttls=_env("SMTP_STARTTLS", "0") == "1",
        )

    def address(self, role: str) -> str:
        return f"{role}@{self.domain}"

    def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(message)


app.add_service("smtp", factory=Smtp.from_env)
app.add_service("drafts_dir", factory=lambda: Path(_env("DRAFTS_DIR", str(_data_dir() / "drafts"))))
app.add_service(
    "library_dir", factory=lambda: Path(_env("LIBRARY_DIR", str(_data_dir() / "library")))
)
app.add_service(
    "index_db", factory=lambda: Path(_env("INDEX_DB", str(_data_dir() / "master-index.db")))
)


# -- the starter (Service Bus trigger in the seed) and a route to publish by hand -------


@app.queue_trigger("schema-changes", max_dequeue_count=5)
async def start_approval_workflow(message: dict[str, Any], client: tl.AsyncClient) -> None:
    """Start the approval of the changed document, unless one is running for it."""
    missing = [k for k in ("document_id", "physical_name", "database_name") if not message.get(k)]
    if missing:
        raise ValueError(f"schema change message lacks {', '.join(missing)}: {message!r}")
    iid = str(message["document_id"])
    existing = await client.get_status(iid)
    if existing is not None and not existing.runtime_status.is_terminal:
        log.warning("approval already %s for document %s", existing.runtime_status.value, iid)
        return
    try:
        await client.start_new("DocumentApprovalOrchestrator", message, iid)
    except tl.InstanceExistsError:  # another delivery won the race
        log.warning("approval already running for document %s", iid)
        return
    log.info("started approval %s for %s", iid, message["physical_name"])


@app.api.post("/schema-changes", status_code=202)
async def publish_schema_change(
    message: dict[str, Any],
    client: Annotated[tl.AsyncClient, Depends(taskloom.http.client)],
    _: Annotated[Any, Depends(taskloom.http.authorize("write"))],
) -> dict[str, Any]:
    """Put a schema change on the queue (what the upstream publisher does)."""
    return {"queued": await client.enqueue("schema-changes", message)}


# -- the orchestration ---------------------------------------------------------------


@app.orchestrator(name="DocumentApprovalOrchestrator")
def document_approval(ctx: tl.OrchestrationContext, request: dict[str, Any]) -> Any:
    doc = request["document_id"]
    draft = yield ctx.call_activity("GenerateDraft", request)
    tier = yield ctx.call_activity("DetermineApprovalTier", request.get("metadata") or {})
    deadline = ctx.current_utc_datetime + timedelta(hours=tier["sla_hours"])
    notice = {**request, "instance_id": ctx.instance_id, "draft_path": draft, "tier": tier}
    yield ctx.call_activity("NotifyApprovers", {**notice, "deadline": deadline})
    _stage(ctx, "AwaitingApproval", tier, deadline)

    approval = ctx.wait_for_external_event(EVENT)
    timer = ctx.create_timer(deadline)
    if (yield ctx.task_any([approval, timer])) is timer:
        extended = ctx.current_utc_datetime + timedelta(hours=ESCALATION_HOURS)
        yield ctx.call_activity("EscalateApproval", {**notice, "deadline": extended})
        _stage(ctx, "Escalated", tier, extended)
        timer = ctx.create_timer(extended)
        if (yield ctx.task_any([approval, timer])) is timer:
            ctx.set_custom_status(None)
            return {"status": "TimedOut", "document_id": doc}
    timer.cancel()
    ctx.set_custom_status(None)
    answer = approval.result if isinstance(approval.result, dict) else {}
    by = str(answer.get("approver") or "unknown")
    comments = str(answer.get("comments") or "")

    if answer.get("approved") is not True:
        rejection = {**request, "rejected_by": by, "reason": comments}
        yield ctx.call_activity("NotifyRejection", rejection)
        return {"status": "Rejected", "document_id": doc, "rejected_by": by, "reason": comments}

    final = yield ctx.call_activity(
        "GenerateFinalDocument",
        {"draft_path": draft, "approved_by": by, "approved_at": ctx.current_utc_datetime},
    )
    url = yield ctx.call_activity("FileToLibrary", {**request, "final_path": final})
    entry = {**request, "library_url": url, "approved_by": by, "tier": tier["tier"]}
    yield ctx.call_activity("UpdateMasterIndex", {**entry, "approved_at": ctx.current_utc_datetime})
    return {"status": "Approved", "document_id": doc, "library_url": url, "approved_by": by}


def _stage(ctx: tl.OrchestrationContext, stage: str, tier: Any, deadline: datetime) -> None:
    ctx.set_custom_status({"stage": stage, "tier": tier["tier"], "deadline": deadline.isoformat()})


# -- activities ----------------------------------------------------------------------


@app.activity(name="GenerateDraft")
def generate_draft(request: dict[str, Any], *, drafts_dir: Path) -> str:
    """Write the draft documentation of the changed object; returns its path."""
    path = drafts_dir / _safe(request["document_id"]) / "draft.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = request.get("metadata") or {}
    lines = [
        f"# {request['physical_name']} ({request['database_name']})",
        "",
        "**DRAFT: awaiting approval**",
        "",
        f"- Document: {request['document_id']}",
        f"- Change: {request.get('change_type', 'unknown')}",
        *(f"- {key}: {value}" for key, value in sorted(meta.items())),
        "",
        str(request.get("description", "")),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# tier: (approver roles, SLA hours, escalation path)
TIERS: dict[int, tuple[list[str], int, list[str]]] = {
    1: (["data-steward"], 48, ["data-governance-lead"]),
    2: (["data-steward", "dba"], 24, ["data-governance-lead"]),
    3: (["privacy-officer", "data-steward"], 72, ["chief-privacy-officer"]),
    4: (["dba-lead", "system-owner"], 8, ["head-of-data-platform"]),
}


@app.activity(name="DetermineApprovalTier")
def determine_approval_tier(metadata: dict[str, Any]) -> dict[str, Any]:
    """The seed's rules, first match wins: PII 3, critical database 4, table or view 2, 1."""
    if metadata.get("contains_pii"):
        tier = 3
    elif str(metadata.get("database_criticality", "")).lower() == "critical":
        tier = 4
    elif str(metadata.get("object_type", "")).lower() in ("table", "view"):
        tier = 2
    else:
        tier = 1
    approvers, sla_hours, escalation = TIERS[tier]
    return {"tier": tier, "approvers": approvers, "sla_hours": sla_hours, "escalation": escalation}


@app.activity(name="NotifyApprovers")
def notify_approvers(notice: dict[str, Any], *, client: tl.Client, smtp: Smtp) -> None:
    _request_decisions(notice, notice["tier"]["approvers"], "Approval required", client, smtp)


@app.activity(name="EscalateApproval")
def escalate_approval(notice: dict[str, Any], *, client: tl.Client, smtp: Smtp) -> None:
    missed = ", ".join(notice["tier"]["approvers"])
    subject = f"Escalated (no answer from {missed})"
    _request_decisions(notice, notice["tier"]["escalation"], subject, client, smtp)


def _request_decisions(
    notice: dict[str, Any], roles: list[str], subject: str, client: tl.Client, smtp: Smtp
) -> None:
    """Mail each role its own approve and reject links, valid until the deadline."""
    deadline: datetime = notice["deadline"]
    for role in roles:
        to = smtp.address(role)
        links = {
            verdict: client.create_event_link(
                notice["instance_id"],
                EVENT,
                deadline,
                data={"approved": verdict == "Approve", "approver": to},
            )
            for verdict in ("Approve", "Reject")
        }
        text = (
            f"{notice['physical_name']} in {notice['database_name']} changed "
            f"({notice.get('change_type', 'unknown')}) and its documentation needs your "
            f"approval (tier {notice['tier']['tier']}).\n\n"
            f"Draft: {notice['draft_path']}\n"
            f"Deadline: {deadline:%Y-%m-%d %H:%M} UTC\n\n"
            f"Approve: {links['Approve']}\n"
            f"Reject: {links['Reject']}\n"
        )
        smtp.send(to, f"{subject}: {notice['document_id']}", text)


@app.activity(name="NotifyRejection")
def notify_rejection(rejection: dict[str, Any], *, smtp: Smtp) -> None:
    to = rejection.get("requested_by") or smtp.address(AUTHOR_ROLE)
    text = (
        f"The documentation of {rejection['physical_name']} ({rejection['database_name']}) "
        f"was rejected by {rejection['rejected_by']}.\n\nReason: {rejection['reason'] or '-'}\n"
    )
    smtp.send(to, f"Rejected: {rejection['document_id']}", text)


@app.activity(name="GenerateFinalDocument")
def generate_final_document(request: dict[str, Any]) -> str:
    """The draft, stamped with the approval, beside it as final.md; returns its path."""
    draft = Path(request["draft_path"])
    approved_at: datetime = request["approved_at"]
    stamp = f"**Approved by {request['approved_by']} on {approved_at:%Y-%m-%d %H:%M} UTC**"
    text = draft.read_text(encoding="utf-8").replace("**DRAFT: awaiting approval**", stamp)
    final = draft.with_name("final.md")
    final.write_text(text, encoding="utf-8")
    return str(final)


@app.activity(name="FileToLibrary")
def file_to_library(request: dict[str, Any], *, library_dir: Path) -> str:
    """File the final document as Documentation/<database>/<object>.md; returns its URL."""
    folder = library_dir / "Documentation" / _safe(request["database_name"])
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{_safe(request['physical_name'])}.md"
    target.write_bytes(Path(request["final_path"]).read_bytes())
    return target.resolve().as_uri()


INDEX_TABLE = """CREATE TABLE IF NOT EXISTS master_index (
    document_id TEXT PRIMARY KEY,
    physical_name TEXT NOT NULL,
    database_name TEXT NOT NULL,
    library_url TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    tier INTEGER NOT NULL
)"""


@app.activity(name="UpdateMasterIndex")
def update_master_index(entry: dict[str, Any], *, index_db: Path) -> None:
    """Upsert the document's row, so a retried activity writes it once."""
    index_db.parent.mkdir(parents=True, exist_ok=True)
    row = {k: entry[k] for k in ("document_id", "physical_name", "database_name")}
    row.update(
        library_url=entry["library_url"],
        approved_by=entry["approved_by"],
        approved_at=entry["approved_at"].isoformat(),
        tier=entry["tier"],
    )
    with sqlite3.connect(index_db) as db:
        db.execute(INDEX_TABLE)
        db.execute(
            f"INSERT OR REPLACE INTO master_index ({', '.join(row)}) "
            f"VALUES ({', '.join(':' + k for k in row)})",
            row,
        )
    db.close()


def _safe(name: object) -> str:
    """A file name made of the text's letters, digits, '.', '-' and '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip(".") or "_"
