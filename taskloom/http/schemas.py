"""The JSON shapes of the management API, for the OpenAPI document.

Handlers build their responses with :mod:`taskloom.payloads`; these models only
describe them (field names are the Durable Functions ones).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue

from taskloom.models import Status

RUNTIME_STATUSES: list[JsonValue] = [s.value for s in Status]


class Error(BaseModel):
    detail: str = Field(description="What went wrong and what to do about it.")
    Message: str = Field(description="The same text, as Durable Functions names it.")
    ExceptionMessage: str = Field(
        description="The same text again: Durable Functions' SDKs read this member."
    )


class ManagementPayload(BaseModel):
    """``create_http_management_payload``: the URLs that manage one instance."""

    id: str
    statusQueryGetUri: str
    sendEventPostUri: str
    terminatePostUri: str
    rewindPostUri: str
    purgeHistoryDeleteUri: str
    restartPostUri: str
    suspendPostUri: str
    resumePostUri: str


class InstanceStatus(BaseModel):
    name: str
    instanceId: str
    runtimeStatus: str = Field(json_schema_extra={"enum": RUNTIME_STATUSES})
    input: Any = None
    customStatus: Any = None
    output: Any = None
    createdTime: str | None = None
    lastUpdatedTime: str | None = None
    failureDetails: dict[str, Any] | None = None
    historyEvents: list[dict[str, Any]] | None = None


class PurgeResult(BaseModel):
    instancesDeleted: int


class KeyInfo(BaseModel):
    id: str
    name: str
    role: str
    createdTime: str
    revokedTime: str | None = None


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    role: Literal["reader", "worker", "contributor", "admin", "publisher"]


class CreatedKey(KeyInfo):
    key: str = Field(description="The key itself; shown once, only its hash is stored.")


class Revoked(BaseModel):
    revoked: bool


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for error statuses, each with the :class:`Error` body."""
    text = {
        400: "The request is malformed (bad JSON, bad parameter).",
        401: "No valid API key.",
        403: "The key's role may not do this, or the signed link was altered or expired.",
        404: "No such instance (or nothing matched).",
        409: "An instance with this id exists and has not finished.",
        410: "The instance's status does not allow this (it already finished).",
        412: "The instance has not finished (Durable Functions' Precondition Failed).",
    }
    return {code: {"model": Error, "description": text[code]} for code in codes}
