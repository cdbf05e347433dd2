"""samples/claim_approval driven as people drive it: a clerk submits claims over HTTP,
an approver decides, nobody decides for 72 virtual hours; the outcome lands in the
ledger table. Roles come from API keys made through the management API."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sample_loader import load_sample

import taskloom as tl

KEYS = "/runtime/webhooks/durabletask/keys"


@dataclass
class Office:
    env: tl.testing.TestEnv
    http: httpx.Client
    db: Path
    clerk: dict[str, str]  # a reader key: may submit and look
    approver: dict[str, str]  # a contributor key named "alice"

    def submit(self, claim: dict[str, Any]) -> str:
        answer = self.http.post("/claims", json=claim, headers=self.clerk)
        assert answer.status_code == 202, answer.text
        claim_id: str = answer.json()["id"]
        return claim_id

    def status(self, claim_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/claims/{claim_id}", headers=self.clerk)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def await_stage(self, claim_id: str, stage: str) -> dict[str, Any]:
        found: dict[str, Any] = wait_until(
            lambda: self.status(claim_id),
            lambda s: (s["customStatus"] or {}).get("stage") == stage,
            f"claim {claim_id} to reach {stage}",
        )
        return found

    def ledger_row(self, claim_id: str) -> dict[str, Any]:
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM claims WHERE claim_id = ?", (claim_id,)).fetchone()
        assert row is not None, f"no ledger row for {claim_id}"
        return dict(row)


def wait_until(
    read: Callable[[], Any], ok: Callable[[Any], bool], what: str, timeout: float = 10
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    sample = load_sample("claim_approval")
    db = tmp_path_factory.mktemp("claims") / "claims.db"
    sample.app.add_service("ledger", sample.ClaimsLedger(db))
    with tl.testing.TestEnv(sample.app, http=True) as env:
        assert env.base_url is not None
        with httpx.Client(base_url=env.base_url, timeout=10) as http:
            # While the hub holds no keys, loopback callers act as admin: make the keys.
            admin = _key(http, {}, "admin", "admin")
            approver = _key(http, admin, "alice", "contributor")
            clerk = _key(http, admin, "bob", "reader")
            yield Office(env, http, db, clerk, approver)


def _key(http: httpx.Client, auth: dict[str, str], name: str, role: str) -> dict[str, str]:
    made = http.post(KEYS, json={"name": name, "role": role}, headers=auth)
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def test_an_approver_approves_a_claim(office: Office) -> None:
    claim_id = office.submit({"claimant": "bob", "amount": 120.5, "description": "Taxi"})
    waiting = office.await_stage(claim_id, "AwaitingDecision")
    assert waiting["runtimeStatus"] == "Running" and waiting["ledger"] is None

    approved = office.http.post(
        f"/claims/{claim_id}/approve", json={"comment": "fine"}, headers=office.approver
    )
    assert approved.status_code == 202, approved.text
    state = office.env.client.wait_for_completion(claim_id, timeout=10)

    assert state.runtime_status is tl.Status.COMPLETED
    assert state.output["status"] == "Approved"
    row = office.ledger_row(claim_id)
    assert row["status"] == "Approved" and row["decided_by"] == "alice"
    assert (row["claimant"], row["amount"], row["reason"]) == ("bob", 120.5, "fine")
    assert office.status(claim_id)["ledger"] == row
    again = office.http.post(f"/claims/{claim_id}/reject", headers=office.approver)
    assert again.status_code == 409  # decided claims stay decided


def test_an_approver_rejects_a_claim(office: Office) -> None:
    claim_id = office.submit({"claimant": "bob", "amount": 900, "description": "Sofa"})
    office.await_stage(claim_id, "AwaitingDecision")
    rejected = office.http.post(f"/claims/{claim_id}/reject", headers=office.approver)
    assert rejected.status_code == 202, rejected.text
    state = office.env.client.wait_for_completion(claim_id, timeout=10)
    assert state.output["status"] == "Rejected"
    row = office.ledger_row(claim_id)
    assert (row["status"], row["decided_by"], row["reason"]) == ("Rejected", "alice", None)


def test_a_claim_times_out_after_72_hours_without_a_decision(office: Office) -> None:
    claim_id = office.submit({"claimant": "bob", "amount": 42, "description": "Lunch"})
    waiting = office.await_stage(claim_id, "AwaitingDecision")
    deadline = datetime.fromisoformat(waiting["customStatus"]["deadline"])

    office.env.advance(timedelta(hours=71))
    assert office.status(claim_id)["runtimeStatus"] == "Running"
    office.env.advance(timedelta(hours=1, minutes=1))
    state = office.env.client.wait_for_completion(claim_id, timeout=10)

    assert state.output["status"] == "TimedOut"
    row = office.ledger_row(claim_id)
    assert row["status"] == "TimedOut" and row["decided_by"] is None
    assert datetime.fromisoformat(row["decided_at"]) >= deadline
    late = office.http.post(f"/claims/{claim_id}/approve", headers=office.approver)
    assert late.status_code == 409


def test_callers_without_the_approver_role_get_403(office: Office) -> None:
    claim_id = office.submit({"claimant": "bob", "amount": 75, "description": "Books"})
    office.await_stage(claim_id, "AwaitingDecision")

    for verb in ("approve", "reject"):
        by_clerk = office.http.post(f"/claims/{claim_id}/{verb}", headers=office.clerk)
        assert by_clerk.status_code == 403, by_clerk.text
        anonymous = office.http.post(f"/claims/{claim_id}/{verb}")
        assert anonymous.status_code == 401
    assert office.http.get(f"/claims/{claim_id}").status_code == 401
    assert office.status(claim_id)["runtimeStatus"] == "Running"  # nothing was decided

    office.env.client.terminate(claim_id, "test cleanup")


def test_an_invalid_claim_is_recorded_without_asking_anyone(office: Office) -> None:
    claim_id = office.submit({"claimant": "bob", "amount": 0, "description": ""})
    state = office.env.client.wait_for_completion(claim_id, timeout=10)
    assert state.output["status"] == "Invalid"
    row = office.ledger_row(claim_id)
    assert row["reason"] == "the amount must be a positive number; no description"
    missing = office.http.post("/claims/claim-nope/approve", headers=office.approver)
    assert missing.status_code == 404
