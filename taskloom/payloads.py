"""The Durable Functions management payload and check-status responses.

Pure helpers shared by the client methods and the management API, so both build the
same URLs: ``{base}/runtime/webhooks/durabletask/instances/{id}...?taskHub=..&code=..``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from taskloom.models import OrchestrationState, Status

PREFIX = "/runtime/webhooks/durabletask"


def management_urls(
    base_url: str, hub: str, instance_id: str, code: str | None = None
) -> dict[str, str]:
    """The ``create_http_management_payload`` dict for one instance."""
    root = f"{base_url.rstrip('/')}{PREFIX}/instances/{quote(instance_id, safe='')}"
    params = {"taskHub": hub, **({"code": code} if code else {})}
    query = urlencode(params)
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{root}?{query}",
        "sendEventPostUri": f"{root}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{root}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{root}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{root}?{query}",
        "restartPostUri": f"{root}/restart?{query}",
        "suspendPostUri": f"{root}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{root}/resume?reason={{text}}&{query}",
    }


def status_json(state: OrchestrationState, *, show_input: bool = True) -> dict[str, Any]:
    """An instance's status in the Durable Functions HTTP API's field names."""
    body: dict[str, Any] = {
        "name": state.name,
        "instanceId": state.instance_id,
        "runtimeStatus": state.runtime_status.value,
        "input": state.input if show_input else None,
        "customStatus": state.custom_status,
        "output": state.output,
        "createdTime": _iso(state.created_at),
        "lastUpdatedTime": _iso(state.last_updated_at),
    }
    if state.failure_details is not None:
        body["failureDetails"] = state.failure_details.to_dict()
        if state.runtime_status is Status.FAILED and body["output"] is None:
            body["output"] = state.failure_details.message
    return body


def _iso(moment: Any) -> str | None:
    if moment is None:
        return None
    text: str = moment.isoformat()
    return text.replace("+00:00", "Z")


def check_status_response(payload: dict[str, str]) -> Any:
    """202 Accepted with the payload and ``Location``/``Retry-After`` headers."""
    from starlette.responses import Response

    return Response(
        json.dumps(payload),
        status_code=202,
        media_type="application/json",
        headers={"Location": payload["statusQueryGetUri"], "Retry-After": "1"},
    )


def completed_response(state: OrchestrationState) -> Any:
    """200 with the output of a completed instance; 500 with the status of a failed one;
    200 with the status of a terminated one (as Durable Functions does)."""
    from starlette.responses import Response

    if state.runtime_status is Status.COMPLETED:
        return Response(json.dumps(state.output), status_code=200, media_type="application/json")
    code = 500 if state.runtime_status is Status.FAILED else 200
    return Response(json.dumps(status_json(state)), status_code=code, media_type="application/json")


def base_url_of(request: Any) -> str:
    """The externally visible base URL of a Starlette/FastAPI request."""
    return str(request.base_url).rstrip("/")


def code_of(request: Any) -> str | None:
    """The ``?code=`` key the caller put in the URL, to carry into the links it gets back.

    A key sent in the ``Authorization`` header is never copied into URLs: links end up
    in logs, browsers and e-mails, where a header key would leak.
    """
    code = request.query_params.get("code")
    return str(code) if code else None
