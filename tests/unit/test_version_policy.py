"""Version comparison, the App's versioning policy, and the failure plan of a mismatch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import taskloom as tl
from taskloom import history as h
from taskloom.errors import ConfigurationError
from taskloom.models import Status
from taskloom.runtime.episodes import plan_version_failure
from taskloom.storage.base import AT_ONCE, InstanceRecord, LeasedEpisode, Message
from taskloom.versioning import MISMATCH_ERROR, VersionPolicy, check_version, compare_versions

NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.9", "1.10"),
        ("1.10", "2"),
        ("1", "1.0"),
        ("2", "10"),
        ("0.9.9", "1"),
        (None, "1"),
        ("", "0"),
        ("alpha", "beta"),
        ("1", "1a"),  # not both numbers: strings
        ("01", "1"),  # equal numbers, different spelling: strings
        ("2024-01-01", "2024-02-01"),
    ],
)
def test_compare_versions_orders(older: str | None, newer: str | None) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1


@pytest.mark.parametrize(("a", "b"), [("1.2", "1.2"), (None, ""), (None, None), ("x", "x")])
def test_compare_versions_equal(a: str | None, b: str | None) -> None:
    assert compare_versions(a, b) == 0


def test_versions_are_equal_only_when_the_same_string() -> None:
    for a, b in [("1", "01"), ("1.0", "1"), ("1.0", "1.00")]:
        assert compare_versions(a, b) != 0


def test_precedence_explicit_then_default_then_worker_version() -> None:
    assert VersionPolicy().resolve(None) is None
    assert VersionPolicy(version="3").resolve(None) == "3"
    assert VersionPolicy(version="3", default_version="2").resolve(None) == "2"
    assert VersionPolicy(version="3", default_version="2").resolve("5") == "5"
    assert VersionPolicy(default_version="2").start_version == "2"


def test_may_run_by_match() -> None:
    anything = VersionPolicy(version="2")
    exact = VersionPolicy(version="2", match="exact")
    older = VersionPolicy(version="1.10", match="current_or_older")
    assert all(anything.may_run(v) for v in (None, "1", "2", "3", "x"))
    assert exact.match == "exact"
    assert exact.may_run("2") and not exact.may_run("1") and not exact.may_run(None)
    assert not exact.may_run("3")
    assert older.may_run("1.10") and older.may_run("1.9") and older.may_run(None)
    assert not older.may_run("1.11") and not older.may_run("2")


def test_filters_only_when_waiting_with_a_match() -> None:
    assert not VersionPolicy(version="1").filters
    assert VersionPolicy(version="1", match="exact").filters
    assert not VersionPolicy(version="1", match="exact", mismatch="fail").filters


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"version_match": "strict"}, "version_match must be one of"),
        ({"version": "1", "version_mismatch": "reject"}, "version_mismatch must be"),
        ({"version_match": "exact"}, "give the App a version="),
        ({"version": ""}, "version must be a non-empty string"),
        ({"version": " 1"}, "without surrounding spaces"),
        ({"default_version": 2}, "default_version must be"),
        ({"version": "x" * 101}, "longer than 100"),
    ],
)
def test_app_rejects_bad_policies(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        tl.App("v", **kwargs)  # type: ignore[arg-type]


def test_app_keeps_its_policy() -> None:
    app = tl.App(
        "v", version="2", default_version="1", version_match="current_or_older",
        version_mismatch="fail",
    )  # fmt: skip
    assert app.versioning == VersionPolicy("2", "1", "current_or_older", "fail")


def test_check_version_for_starts() -> None:
    assert check_version(None) is None and check_version("1.2") == "1.2"
    with pytest.raises(ValueError, match="version must be"):
        check_version("")


def test_mismatch_failure_names_both_versions() -> None:
    policy = VersionPolicy(version="1.2", match="exact", mismatch="fail")
    failure = policy.mismatch_failure("i1", "2.0")
    assert failure.error_type == MISMATCH_ERROR
    assert "'2.0'" in failure.message and "'1.2'" in failure.message and "'i1'" in failure.message
    assert "version none" in policy.mismatch_failure("i1", None).message


def _episode(messages: list[h.HistoryEvent], history_len: int = 0) -> LeasedEpisode:
    rec = InstanceRecord("child", "e1", "work", Status.PENDING, NOW, NOW, version="2")
    inbox = [Message("child", e, AT_ONCE, id=k + 1) for k, e in enumerate(messages)]
    return LeasedEpisode(rec, inbox, 7)


def test_plan_version_failure_fails_and_tells_the_parent() -> None:
    parent = h.ParentInstance("outer", "p1", 3, "pe")
    start = h.ExecutionStarted(NOW, -1, "work", "child", "e1", None, "2", parent)
    failure = VersionPolicy(version="1", match="exact", mismatch="fail").mismatch_failure(
        "child", "2"
    )
    plan = plan_version_failure(_episode([start]), [], failure, NOW)
    commit = plan.commit
    assert commit.instance.status is Status.FAILED and commit.instance.failure == failure
    assert [type(e) for e in commit.history] == [
        h.OrchestratorStarted,
        h.ExecutionStarted,
        h.ExecutionCompleted,
    ]
    assert commit.instance.history_len == 3 and list(commit.consumed) == [1]
    (told,) = commit.messages
    assert told.instance_id == "p1" and told.execution_id == "pe"
    assert isinstance(told.event, h.SubOrchestrationInstanceFailed)
    assert told.event.task_scheduled_id == 3 and told.event.failure == failure


def test_plan_version_failure_waits_for_a_scheduled_start() -> None:
    raised = h.EventRaised(NOW, name="go")
    failure = VersionPolicy(version="1", match="exact", mismatch="fail").mismatch_failure("c", "2")
    plan = plan_version_failure(_episode([raised]), [], failure, NOW)
    assert plan.commit.instance.status is Status.PENDING and not plan.commit.history
    assert len(plan.commit.messages) == 1  # the event moved to the start time
