"""Seed 000, claim approval: validate a claim, wait up to 72 hours for an approver's
decision, record the outcome in a SQLite ledger.

    taskloom serve samples/claim_approval/app.py:app      # ledger: ./claims.db ($CLAIMS_DB)

Routes (see samples/README.md for curl calls):

- ``POST /claims`` (any key, ``read``): submit ``{"claimant", "amount", "description"}``.
- ``GET /claims/{id}`` (``read``): the orchestration's stage and the ledger row.
- ``POST /claims/{id}/approve`` and ``/reject`` (``write``: a contributor key, the
  approvers' role): raise the ``Decision`` event, naming the approver's key.

The Azure original used managed identities and RBAC; here API keys carry the roles
(``taskloom keys create --role reader|contributor``).
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from typing import Annotated, Any

from claims_ledger import ClaimsLedger
from fastapi import Depends, HTTPException
from pydantic import BaseModel, Field

import taskloom as tl
import taskloom.http
from taskloom.http import Principal

app = tl.App("claim_approval")
app.add_service("ledger", factory=lambda: ClaimsLedger(os.environ.get("CLAIMS_DB", "claims.db")))
log = logging.getLogger("claim_approval")

DECISION_EVENT = "Decision"
APPROVAL_WINDOW = timedelta(hours=72)
AMOUNT_LIMIT = 10_000.0


# -- activities ---------------------------------------------------------------------


@app.activity(name="ValidateClaim")
def validate_claim(claim: dict[str, Any]) -> list[str]:
    """The problems with a claim (none: it goes to an approver)."""
    problems = []
    if not str(claim.get("claimant", "")).strip():
        problems.append("no claimant")
    amount = claim.get("amount")
    if not isinstance(amount, int | float) or amount <= 0:
        problems.append("the amount must be a positive number")
    elif amount > AMOUNT_LIMIT:
        problems.append(f"the amount exceeds the limit of {AMOUNT_LIMIT:,.2f}")
    if not str(claim.get("description", "")).strip():
        problems.append("no description")
    return problems


@app.activity(name="NotifyApprovers")
def notify_approvers(request: dict[str, Any]) -> None:
    """Tell the approvers a claim waits for them (a mail in real life; a log line here)."""
    log.info(
        "claim %s (%s, %.2f) awaits a decision until %s",
        request["claim_id"],
        request["claimant"],
        request["amount"],
        request["deadline"],
    )


@app.activity(name="RecordOutcome")
def record_outcome(outcome: dict[str, Any], *, ledger: ClaimsLedger) -> None:
    ledger.record(outcome)


# -- the orchestration --------------------------------------------------------------


@app.orchestrator(name="ClaimApproval")
def claim_approval(ctx: tl.OrchestrationContext, claim: dict[str, Any]) -> Any:
    outcome: dict[str, Any] = {
        "claim_id": ctx.instance_id,
        "claimant": str(claim.get("claimant", "")),
        "amount": claim.get("amount") if isinstance(claim.get("amount"), int | float) else 0,
        "decided_by": None,
        "reason": None,
    }
    ctx.set_custom_status({"stage": "Validating"})
    problems = yield ctx.call_activity(validate_claim, claim)
    if problems:
        outcome.update(status="Invalid", reason="; ".join(problems))
    else:
        deadline = ctx.current_utc_datetime + APPROVAL_WINDOW
        yield ctx.call_activity(notify_approvers, {**outcome, "deadline": deadline.isoformat()})
        ctx.set_custom_status({"stage": "AwaitingDecision", "deadline": deadline.isoformat()})
        decision = ctx.wait_for_external_event(DECISION_EVENT)
        timer = ctx.create_timer(deadline)
        winner = yield ctx.task_any([decision, timer])
        if winner is timer:
            outcome.update(status="TimedOut", reason="no decision within 72 hours")
        else:
            timer.cancel()
            data = decision.result or {}
            outcome.update(
                status="Approved" if data.get("approved") else "Rejected",
                decided_by=data.get("by"),
                reason=data.get("comment"),
            )
    outcome["decided_at"] = ctx.current_utc_datetime.isoformat()
    yield ctx.call_activity(record_outcome, outcome)
    ctx.set_custom_status({"stage": "Done", "status": outcome["status"]})
    if not ctx.is_replaying:
        log.info("claim %s: %s", ctx.instance_id, outcome["status"])
    return outcome


# -- HTTP routes --------------------------------------------------------------------

Client = Annotated[tl.AsyncClient, Depends(taskloom.http.client)]
Reader = Annotated[Principal, Depends(taskloom.http.authorize("read"))]
Approver = Annotated[Principal, Depends(taskloom.http.authorize("write"))]


class NewClaim(BaseModel):
    claimant: str
    amount: float
    description: str = ""


class DecisionNote(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


@app.api.post("/claims", status_code=202)
async def submit_claim(claim: NewClaim, client: Client, caller: Reader) -> dict[str, str]:
    claim_id = f"claim-{uuid.uuid4().hex[:12]}"
    await client.start_new("ClaimApproval", claim.model_dump(), instance_id=claim_id)
    log.info("claim %s submitted by %s", claim_id, caller.name or "an open-host caller")
    return {"id": claim_id, "statusUri": f"/claims/{claim_id}"}


@app.api.get("/claims/{claim_id}")
async def claim_status(claim_id: str, client: Client, _: Reader) -> dict[str, Any]:
    state = await _claim(client, claim_id)
    ledger: ClaimsLedger = app.service("ledger")
    return {
        "id": claim_id,
        "runtimeStatus": state.runtime_status.value,
        "customStatus": state.custom_status,
        "outcome": state.output,
        "ledger": ledger.get(claim_id),
    }


@app.api.post("/claims/{claim_id}/approve", status_code=202)
async def approve(
    claim_id: str, client: Client, approver: Approver, note: DecisionNote | None = None
) -> dict[str, str]:
    return await _decide(client, claim_id, approver, approved=True, note=note)


@app.api.post("/claims/{claim_id}/reject", status_code=202)
async def reject(
    claim_id: str, client: Client, approver: Approver, note: DecisionNote | None = None
) -> dict[str, str]:
    return await _decide(client, claim_id, approver, approved=False, note=note)


async def _claim(client: tl.AsyncClient, claim_id: str) -> tl.OrchestrationState:
    state = await client.get_status(claim_id, show_input=False)
    if state is None or state.name != "ClaimApproval":
        raise HTTPException(404, f"no claim {claim_id!r}")
    return state


async def _decide(
    client: tl.AsyncClient,
    claim_id: str,
    approver: Principal,
    *,
    approved: bool,
    note: DecisionNote | None,
) -> dict[str, str]:
    state = await _claim(client, claim_id)
    if state.runtime_status not in (tl.Status.PENDING, tl.Status.RUNNING):
        raise HTTPException(409, f"claim {claim_id!r} is already {state.runtime_status.value}")
    decision = {
        "approved": approved,
        "by": approver.name or "anonymous",
        "comment": note.comment if note else None,
    }
    try:
        await client.raise_event(claim_id, DECISION_EVENT, decision)
    except tl.InvalidStateError as exc:  # it finished (timed out) meanwhile
        raise HTTPException(409, str(exc)) from exc
    return {"id": claim_id, "decision": "approve" if approved else "reject"}
