"""The public surface: ``taskloom.__all__`` is exactly the public names, and the names
and signatures the API contract (docs, ``API.md``) promises exist."""

from __future__ import annotations

import dataclasses
import inspect
import types

import pytest

import taskloom as tl

# Every ``tl.<name>`` the API contract uses, plus the types it names without the prefix.
CONTRACT_NAMES = {
    "App",
    "AsyncClient",
    "Client",
    "InstanceExistsError",
    "NonDeterminismError",
    "OrchestrationContext",
    "OrchestrationState",
    "Page",
    "RetryPolicy",
    "Status",
    "TaskFailedError",
    "TaskTimeoutError",
    "TimerTask",
    "activity_info",
    "testing",
}

CLIENT_METHODS = [
    "start_new",
    "get_status",
    "wait_for_start",
    "wait_for_completion",
    "raise_event",
    "terminate",
    "suspend",
    "resume",
    "rewind",
    "purge",
    "purge_many",
    "query",
    "get_history",
]

CONTEXT_MEMBERS = [
    "instance_id",
    "name",
    "parent_instance_id",
    "is_replaying",
    "current_utc_datetime",
    "get_input",
    "new_uuid",
    "call_activity",
    "call_activity_with_retry",
    "call_sub_orchestrator",
    "create_timer",
    "wait_for_external_event",
    "task_all",
    "task_any",
    "continue_as_new",
    "set_custom_status",
]


def _public_attributes() -> set[str]:
    """Names a user could reach as ``tl.<name>``, minus submodules that are not exported
    and the ``from __future__`` feature flag."""
    names = set()
    for name, value in vars(tl).items():
        if name.startswith("_") or name == "annotations":  # from __future__ import
            continue
        if isinstance(value, types.ModuleType) and name not in tl.__all__:
            continue
        names.add(name)
    return names


def test_all_is_exactly_the_public_names() -> None:
    assert set(tl.__all__) == _public_attributes()


def test_all_has_no_duplicates_and_is_sorted() -> None:
    assert len(tl.__all__) == len(set(tl.__all__))
    assert tl.__all__ == sorted(tl.__all__)


def test_every_exported_name_resolves() -> None:
    for name in tl.__all__:
        assert getattr(tl, name) is not None, name


def test_every_contract_name_is_exported() -> None:
    assert set(tl.__all__) >= CONTRACT_NAMES


def test_testing_exports_test_env() -> None:
    assert "TestEnv" in tl.testing.__all__
    params = inspect.signature(tl.testing.TestEnv).parameters
    assert {"time_skipping", "store"} <= set(params)
    assert params["time_skipping"].kind is inspect.Parameter.KEYWORD_ONLY


def test_status_values_are_the_durable_functions_strings() -> None:
    assert {s.name: s.value for s in tl.Status} == {
        "PENDING": "Pending",
        "RUNNING": "Running",
        "COMPLETED": "Completed",
        "FAILED": "Failed",
        "TERMINATED": "Terminated",
        "SUSPENDED": "Suspended",
        "CONTINUED_AS_NEW": "ContinuedAsNew",
    }


def test_error_hierarchy() -> None:
    assert issubclass(tl.TaskTimeoutError, tl.TaskFailedError)
    assert issubclass(tl.TaskFailedError, tl.OrchestrationError)
    assert issubclass(tl.NonDeterminismError, tl.OrchestrationError)
    for name in tl.__all__:
        value = getattr(tl, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, tl.TaskloomError), name


@pytest.mark.parametrize("method", CLIENT_METHODS)
def test_client_and_async_client_have_the_contract_methods(method: str) -> None:
    assert callable(getattr(tl.Client, method))
    assert inspect.iscoroutinefunction(getattr(tl.AsyncClient, method))


def test_client_signatures_follow_the_contract() -> None:
    start = inspect.signature(tl.Client.start_new).parameters
    assert list(start)[1:4] == ["name", "input", "instance_id"]
    assert start["start_at"].kind is inspect.Parameter.KEYWORD_ONLY
    assert start["version"].kind is inspect.Parameter.KEYWORD_ONLY
    terminate = inspect.signature(tl.Client.terminate).parameters
    assert terminate["recursive"].kind is inspect.Parameter.KEYWORD_ONLY
    raise_event = inspect.signature(tl.Client.raise_event).parameters
    assert list(raise_event)[1:] == ["instance_id", "event_name", "data"]


@pytest.mark.parametrize("member", CONTEXT_MEMBERS)
def test_orchestration_context_has_the_contract_members(member: str) -> None:
    assert hasattr(tl.OrchestrationContext, member)


def test_context_signatures_follow_the_contract() -> None:
    ctx = tl.OrchestrationContext
    call = inspect.signature(ctx.call_activity).parameters
    assert list(call)[1:3] == ["fn_or_name", "input"]
    assert call["retry_policy"].kind is inspect.Parameter.KEYWORD_ONLY
    sub = inspect.signature(ctx.call_sub_orchestrator).parameters
    assert list(sub)[1:4] == ["fn_or_name", "input", "instance_id"]
    retry = inspect.signature(ctx.call_activity_with_retry).parameters
    assert list(retry)[1:4] == ["fn_or_name", "retry_policy", "input"]
    wait = inspect.signature(ctx.wait_for_external_event).parameters
    assert wait["timeout"].kind is inspect.Parameter.KEYWORD_ONLY
    can = inspect.signature(ctx.continue_as_new).parameters
    assert can["save_events"].kind is inspect.Parameter.KEYWORD_ONLY


def test_retry_policy_fields() -> None:
    names = [f.name for f in dataclasses.fields(tl.RetryPolicy)]
    assert names == [
        "first_retry_interval",
        "max_number_of_attempts",
        "backoff_coefficient",
        "max_retry_interval",
        "retry_timeout",
        "handle",
    ]


def test_orchestration_state_and_activity_info_fields() -> None:
    state = {f.name for f in dataclasses.fields(tl.OrchestrationState)}
    assert {
        "instance_id",
        "name",
        "runtime_status",
        "input",
        "output",
        "custom_status",
        "created_at",
        "last_updated_at",
        "failure_details",
        "history",
    } <= state
    info = [f.name for f in dataclasses.fields(tl.ActivityInfo)]
    assert info == ["instance_id", "task_id", "name", "attempt"]


def test_failure_details_fields() -> None:
    names = {f.name for f in dataclasses.fields(tl.FailureDetails)}
    assert {"error_type", "message", "stack_trace"} <= names


def test_app_has_the_entry_points() -> None:
    for member in ("activity", "orchestrator", "run", "client"):
        assert callable(getattr(tl.App, member)), member
