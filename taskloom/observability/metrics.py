"""Metrics, written in the Prometheus text format (version 0.0.4) for ``/metrics``.

A small registry of counters, gauges and histograms (no ``prometheus_client``
dependency): names start with ``taskloom_``, carry base units (``_seconds``,
``_total``), and no label holds an instance id, so series stay few whatever the load.
Updates happen on the worker's event loop and cost a dictionary update each; gauges
that describe live objects (worker slots) are read from them when scraped. The
catalogue of taskloom's metrics is at the end of this module; ``docs/observability.md``
has the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Labels = tuple[str, ...]

DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0,
)  # fmt: skip
COUNT_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metric:
    """A named family of series, one per combination of label values."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        # Keys seen before, by the label values as given: most observations repeat a
        # handful of label combinations, several times per episode.
        self._keys: dict[tuple[object, ...], Labels] = {}

    def _key(self, labels: Sequence[str]) -> Labels:
        given = tuple(labels)
        key = self._keys.get(given)
        if key is not None:
            return key
        if len(given) != len(self.label_names):
            raise ValueError(f"metric {self.name} takes labels {self.label_names}, got {given}")
        key = tuple(str(v) for v in given)
        if len(self._keys) < 10_000:
            self._keys[given] = key
        return key

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        lines.extend(self.samples())
        return "\n".join(lines)


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(Metric):
    """A value set directly, or summed from the live objects that ``track`` it."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[Labels, float] = {}
        self._sources: dict[int, Callable[[], dict[Labels, float]]] = {}

    def set(self, *labels: str, value: float) -> None:
        self.values[self._key(labels)] = value

    def track(self, owner: object, read: Callable[[], dict[Labels, float]]) -> None:
        """Add ``read()``'s values at every scrape, until :meth:`untrack`."""
        self._sources[id(owner)] = read

    def untrack(self, owner: object) -> None:
        self._sources.pop(id(owner), None)

    def current(self) -> dict[Labels, float]:
        totals = dict(self.values)
        for read in list(self._sources.values()):
            for key, value in read().items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self.current().items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Histogram(Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        # Per series: a count per bucket (not cumulative), then the sum and the count.
        self.series: dict[Labels, list[float]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                row[i] += 1
                break
        row[-2] += value
        row[-1] += 1

    def samples(self) -> Iterable[str]:
        names = self.label_names
        for key, row in sorted(self.series.items()):
            running = 0.0
            for bound, count in zip(self.buckets, row, strict=False):
                running += count
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(names, key, le)} {_number(running)}"
            inf = _labels(names, key, 'le="+Inf"')
            yield f"{self.name}_bucket{inf} {_number(row[-1])}"
            yield f"{self.name}_sum{_labels(names, key)} {_number(row[-2])}"
            yield f"{self.name}_count{_labels(names, key)} {_number(row[-1])}"


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, metric: Any) -> Any:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} is defined twice")
        self.metrics[metric.name] = metric
        return metric

    def render(self, extra: Iterable[Metric] = ()) -> str:
        """The exposition text of every metric (and ``extra`` ones, e.g. read per scrape)."""
        blocks = [m.render() for m in [*self.metrics.values(), *extra]]
        return "\n".join(blocks) + "\n"


REGISTRY = Registry()

# -- taskloom's metrics ------------------------------------------------------------------

ORCHESTRATIONS: Counter = REGISTRY.add(
    Counter(
        "taskloom_orchestrations_total",
        "Orchestration executions that ended, by name and final status.",
        ("name", "status"),
    )
)
ORCHESTRATION_DURATION: Histogram = REGISTRY.add(
    Histogram(
        "taskloom_orchestration_duration_seconds",
        "From an instance's creation to the end of the execution, by name and status.",
        ("name", "status"),
    )
)
ACTIVITIES: Counter = REGISTRY.add(
    Counter(
        "taskloom_activities_total",
        "Activity runs that finished on this worker, by name and outcome.",
        ("name", "outcome"),
    )
)
ACTIVITY_DURATION: Histogram = REGISTRY.add(
    Histogram(
        "taskloom_activity_duration_seconds",
        "How long activity runs took, by name and outcome.",
        ("name", "outcome"),
    )
)
ACTIVITY_LAG: Histogram = REGISTRY.add(
    Histogram(
        "taskloom_activity_schedule_to_start_seconds",
        "From an activity's scheduling to the start of its run (queue wait), by name.",
        ("name",),
    )
)
EPISODE_LAG: Histogram = REGISTRY.add(
    Histogram(
        "taskloom_episode_schedule_to_start_seconds",
        "From the oldest message of an episode becoming runnable to its lease (queue wait).",
    )
)
EPISODES: Counter = REGISTRY.add(
    Counter(
        "taskloom_episodes_total",
        "Orchestration episodes planned, by sticky-cache use (hit: no replay).",
        ("cache",),
    )
)
REPLAYED: Histogram = REGISTRY.add(
    Histogram(
        "taskloom_episode_replayed_events",
        "History events replayed to plan an episode (0 on a sticky-cache hit).",
        buckets=COUNT_BUCKETS,
    )
)
TIMER_LAG: Histogram = REGISTRY.add(
    Histogram(
        "taskloom_timer_lag_seconds",
        "From a timer's due time to the episode that saw it fire.",
    )
)
LEASE_EXPIRIES: Counter = REGISTRY.add(
    Counter(
        "taskloom_lease_expiries_total",
        "Commits refused because the worker's lease had lapsed (another took over), by kind.",
        ("kind",),
    )
)
STORE_LATENCY: Histogram = REGISTRY.add(
    Histogram(
        "taskloom_store_operation_seconds",
        "Latency of the worker's store operations, by operation.",
        ("operation",),
    )
)
SLOTS: Gauge = REGISTRY.add(
    Gauge(
        "taskloom_worker_slots",
        "Concurrency slots of this process's workers, by kind (activity, orchestration).",
        ("kind",),
    )
)
SLOTS_BUSY: Gauge = REGISTRY.add(
    Gauge(
        "taskloom_worker_slots_busy",
        "Slots in use: activities running, episodes being planned or committed.",
        ("kind",),
    )
)
