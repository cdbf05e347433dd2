"""The Prometheus exposition of taskloom's metric registry."""

from __future__ import annotations

import pytest
from prom_text import parse

from taskloom.observability.metrics import REGISTRY, Counter, Gauge, Histogram, Registry


def test_exposition_parses_back_with_escaped_labels() -> None:
    registry = Registry()
    runs = registry.add(Counter("t_runs_total", "Runs.", ("name", "outcome")))
    slots = registry.add(Gauge("t_slots", "Slots.", ("kind",)))
    took = registry.add(Histogram("t_took_seconds", "Took.", ("name",), buckets=(0.1, 1.0)))
    hostile = 'a"b\\c\nd'
    runs.inc(hostile, "completed")
    runs.inc(hostile, "completed", amount=2)
    runs.inc("plain", "failed")
    slots.set("activity", value=10)
    owner = object()
    slots.track(owner, lambda: {("activity",): 5.0, ("orchestration",): 2.0})
    for value in (0.05, 0.5, 5.0):
        took.observe(value, hostile)
    parsed = parse(registry.render())
    assert parsed.types == {
        "t_runs_total": "counter",
        "t_slots": "gauge",
        "t_took_seconds": "histogram",
    }
    assert parsed.value("t_runs_total", name=hostile, outcome="completed") == 3
    assert parsed.value("t_runs_total", name="plain", outcome="failed") == 1
    assert parsed.value("t_slots", kind="activity") == 15
    assert parsed.value("t_slots", kind="orchestration") == 2
    assert parsed.value("t_took_seconds_bucket", name=hostile, le="0.1") == 1
    assert parsed.value("t_took_seconds_bucket", name=hostile, le="1") == 2
    assert parsed.value("t_took_seconds_bucket", name=hostile, le="+Inf") == 3
    assert parsed.value("t_took_seconds_sum", name=hostile) == pytest.approx(5.55)
    slots.untrack(owner)
    assert parse(registry.render()).value("t_slots", kind="orchestration") == 0


def test_wrong_labels_and_twice_defined_names_are_refused() -> None:
    registry = Registry()
    runs = registry.add(Counter("t_total", "Runs.", ("name",)))
    with pytest.raises(ValueError, match="takes labels"):
        runs.inc()
    with pytest.raises(ValueError, match="defined twice"):
        registry.add(Counter("t_total", "Again."))


def test_taskloom_metric_names_follow_the_conventions() -> None:
    parsed = parse(REGISTRY.render())
    for name, kind in parsed.types.items():
        assert name.startswith("taskloom_"), name
        if kind == "counter":
            assert name.endswith("_total"), name
        assert "instance" not in " ".join(REGISTRY.metrics[name].label_names), name
        assert parsed.helps[name], name
