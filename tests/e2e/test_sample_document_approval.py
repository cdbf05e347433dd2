"""The document-approval sample (seed 004), driven the way people drive it: schema
changes on the queue, approvers clicking the links in the mail they got over SMTP, on
virtual time for the hours-long SLA and escalation; the outcome checked in the store, the
document library folder and the master index table."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sample_loader import load_sample

import taskloom as tl

LINK = re.compile(r"^(Approve|Reject): (\S+)$", re.MULTILINE)
TIMEOUT = 20
T = TypeVar("T")


sinks = load_sample("document_approval", "smtp_sink")


@dataclass
class Sample:
    env: tl.testing.TestEnv
    sink: Any
    tmp: Path

    def publish(self, doc: str, **metadata: Any) -> None:
        change = {
            "document_id": doc,
            "physical_name": f"dbo.{doc}",
            "database_name": "Sales",
            "change_type": "ColumnAdded",
            "metadata": {"object_type": "Table", "database_criticality": "Normal", **metadata},
        }
        self.env.client.enqueue("schema-changes", change)

    def mails(self, subject: str, count: int = 1) -> list[Any]:
        return list(self.sink.wait_for(lambda m: subject in m.subject, count, TIMEOUT))

    def stage(self, doc: str, stage: str) -> tl.OrchestrationState:
        """The instance's state once its custom status shows ``stage`` (an episode
        commits after the activity that sent the mail, so mail can come first)."""

        def reached() -> tl.OrchestrationState | None:
            state = self.env.client.get_status(doc)
            custom = state.custom_status if state is not None else None
            return state if isinstance(custom, dict) and custom["stage"] == stage else None

        return _eventually(reached, f"{doc} reaching {stage}")

    def wait(self, doc: str) -> tl.OrchestrationState:
        return self.env.client.wait_for_completion(doc, timeout=TIMEOUT)

    def index(self) -> list[tuple[Any, ...]]:
        db = self.tmp / "index.db"
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT document_id, approved_by, library_url, tier FROM master_index"
            )
            found = rows.fetchall()
        conn.close()
        return found


def links(mail: Any) -> dict[str, str]:
    return dict(LINK.findall(mail.text))


def click(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[Sample]:
    module = load_sample("document_approval")
    app: tl.App = module.app
    with sinks.SmtpSink() as sink:
        app.add_service("smtp", module.Smtp(host="127.0.0.1", port=sink.port))
        app.add_service("drafts_dir", tmp_path / "drafts")
        app.add_service("library_dir", tmp_path / "library")
        app.add_service("index_db", tmp_path / "index.db")
        with tl.testing.TestEnv(app, http=True) as env:
            yield Sample(env, sink, tmp_path)


def test_approved_files_the_final_document_and_indexes_it(sample: Sample) -> None:
    sample.publish("Orders")
    mails = sample.mails("Approval required: Orders", count=2)  # tier 2: two approvers
    assert sorted(m.recipients[0] for m in mails) == ["data-steward@example.com", "dba@example.com"]
    draft = sample.tmp / "drafts" / "Orders" / "draft.md"
    assert "DRAFT" in draft.read_text()
    dba = next(m for m in mails if m.recipients == ("dba@example.com",))

    page = click(links(dba)["Approve"])
    assert page.status_code == 200 and "Recorded: ApprovalEvent for Orders" in page.text

    state = sample.wait("Orders")
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    filed = sample.tmp / "library" / "Documentation" / "Sales" / "dbo.Orders.md"
    assert state.output == {
        "status": "Approved",
        "document_id": "Orders",
        "library_url": filed.resolve().as_uri(),
        "approved_by": "dba@example.com",
    }
    assert "Approved by dba@example.com" in filed.read_text()
    assert "DRAFT" not in filed.read_text()
    assert sample.index() == [("Orders", "dba@example.com", filed.resolve().as_uri(), 2)]
    assert click(links(dba)["Reject"]).status_code == 410  # finished: the other link is void


def test_rejected_mails_the_documentation_team(sample: Sample) -> None:
    sample.publish("Invoices", contains_pii=True)  # tier 3, whatever else it is
    mail = sample.mails("Approval required: Invoices", count=2)[0]
    assert click(links(mail)["Reject"]).status_code == 200

    state = sample.wait("Invoices")
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output["status"] == "Rejected"
    assert state.output["rejected_by"] == mail.recipients[0]
    (notice,) = sample.mails("Rejected: Invoices")
    assert notice.recipients == ("documentation-team@example.com",)
    assert f"rejected by {mail.recipients[0]}" in notice.text
    assert not (sample.tmp / "library").exists()
    assert sample.index() == []


def test_escalated_then_approved_within_the_extension(sample: Sample) -> None:
    sample.publish("Payments", database_criticality="Critical")  # tier 4: 8 h SLA
    first = sample.mails("Approval required: Payments", count=2)[0]
    started = sample.env.now()
    sample.stage("Payments", "AwaitingApproval")

    sample.env.advance(timedelta(hours=8, minutes=1))
    (escalation,) = sample.mails("Escalated")
    assert escalation.recipients == ("head-of-data-platform@example.com",)
    sample.stage("Payments", "Escalated")
    # The first approvers' links lived until the SLA; clicking one now changes nothing.
    assert click(links(first)["Approve"]).status_code == 403

    sample.env.advance(timedelta(hours=20))
    assert click(links(escalation)["Approve"]).status_code == 200
    state = sample.wait("Payments")
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output["status"] == "Approved"
    assert state.output["approved_by"] == "head-of-data-platform@example.com"
    assert sample.env.now() - started >= timedelta(hours=28)
    assert [row[0] for row in sample.index()] == ["Payments"]


def test_timed_out_after_the_sla_and_the_escalation(sample: Sample) -> None:
    sample.publish("Audit", object_type="Procedure")  # tier 1: 48 h SLA
    (mail,) = sample.mails("Approval required: Audit")
    assert mail.recipients == ("data-steward@example.com",)
    started = sample.env.now()

    state = sample.wait("Audit")  # the virtual clock skips both deadlines
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == {"status": "TimedOut", "document_id": "Audit"}
    assert sample.env.now() - started >= timedelta(hours=48 + 24)
    (escalation,) = sample.mails("Escalated (no answer from data-steward): Audit")
    assert escalation.recipients == ("data-governance-lead@example.com",)
    assert sample.index() == []


def test_a_second_change_while_one_runs_is_skipped_and_a_later_one_starts_again(
    sample: Sample,
) -> None:
    sample.publish("Customers")
    sample.mails("Approval required: Customers", count=2)
    first = sample.env.client.get_status("Customers")
    assert first is not None

    sample.publish("Customers")
    _eventually(lambda: not sample.env.client.peek_queue("schema-changes"), "queue drained")
    assert sample.env.client.peek_queue("schema-changes-poison") == []
    again = sample.env.client.get_status("Customers")
    assert again is not None and again.created_at == first.created_at
    assert again.runtime_status is tl.Status.RUNNING
    assert len(sample.mails("Approval required: Customers", count=2)) == 2

    (mail, *_) = sample.mails("Approval required: Customers", count=2)
    click(links(mail)["Approve"])
    assert sample.wait("Customers").output["status"] == "Approved"
    sample.publish("Customers")  # a finished approval does not block the next change
    sample.mails("Approval required: Customers", count=4)


def test_a_tampered_link_gets_403_and_raises_nothing(sample: Sample) -> None:
    sample.publish("Ledger")
    mail = sample.mails("Approval required: Ledger", count=2)[0]
    reject = links(mail)["Reject"]
    # Flip one character of the signed payload: a reject link turned into an approve one.
    head, token = reject.rsplit("/", 1)
    forged = f"{head}/{token[:10]}{'A' if token[10] != 'A' else 'B'}{token[11:]}"
    assert click(forged).status_code == 403
    assert click(f"{head}/{token[:-2]}").status_code == 403

    assert sample.stage("Ledger", "AwaitingApproval").runtime_status is tl.Status.RUNNING
    assert click(reject).status_code == 200
    assert sample.wait("Ledger").output["status"] == "Rejected"


def _eventually(probe: Callable[[], T | None], what: str) -> T:
    """What ``probe`` returns once it is truthy; fails after TIMEOUT seconds of real time."""
    deadline = time.monotonic() + TIMEOUT
    while not (found := probe()):
        assert time.monotonic() < deadline, f"no {what} within {TIMEOUT} s"
        time.sleep(0.02)
    return found
