"""The README's claims app, ready for ``taskloom serve examples/claims.py:app``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request

import taskloom as tl
import taskloom.http

app = tl.App("claims")


@app.activity
def validate_claim(claim: dict[str, Any]) -> bool:
    return bool(claim["amount"] > 0)


@app.orchestrator
def approve_claim(ctx: tl.OrchestrationContext, claim: dict[str, Any]) -> Any:
    if not (yield ctx.call_activity(validate_claim, claim)):
        return {"status": "Invalid"}
    approval = ctx.wait_for_external_event("Approval")
    deadline = ctx.create_timer(timedelta(hours=72))
    winner = yield ctx.task_any([approval, deadline])
    if winner is deadline:
        return {"status": "TimedOut"}
    deadline.cancel()
    return {"status": "Approved" if approval.result["approved"] else "Rejected"}


@app.api.post("/claims", status_code=202)
async def submit_claim(
    claim: dict[str, Any],
    request: Request,
    client: Annotated[tl.AsyncClient, Depends(taskloom.http.client)],
) -> Any:
    """The app's own route: start a claim, answer with the check-status links."""
    iid = await client.start_new("approve_claim", claim)
    return client.create_check_status_response(request, iid)


@app.api.get("/claims/{claim_id}/approve-link")
async def approve_link(
    claim_id: str, client: Annotated[tl.AsyncClient, Depends(taskloom.http.client)]
) -> dict[str, str]:
    """A link an approver can click without an API key (valid for a day)."""
    url = await client.create_event_link(
        claim_id, "Approval", timedelta(days=1), data={"approved": True}
    )
    return {"url": url}
