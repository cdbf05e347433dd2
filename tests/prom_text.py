"""A strict little parser of the Prometheus text format (0.0.4) for the metrics tests:
it fails on anything malformed, and checks each histogram's buckets."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{.*\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')

Labels = frozenset[tuple[str, str]]


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def value(self, metric: str, /, **labels: str) -> float:
        """The sample's value, 0 if absent (a counter not incremented yet)."""
        return self.samples.get((metric, frozenset(labels.items())), 0.0)

    def total(self, metric: str, /, **labels: str) -> float:
        """Sum over the series of ``metric`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == metric and want <= ls)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), text)


def _labels(text: str) -> Labels:
    body = text[1:-1]
    found: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        match = _LABEL.match(body, pos)
        assert match is not None, f"bad labels {text!r}"
        found.append((match[1], _unescape(match[2])))
        pos = match.end()
    return frozenset(found)


def _family(name: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and types.get(base) == "histogram":
            return base
    return name


def parse(text: str) -> Exposition:
    out = Exposition()
    assert text.endswith("\n"), "the exposition ends with a newline"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            out.helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, line
            assert name not in out.types, f"{name} typed twice"
            out.types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match is not None, f"bad sample line {line!r}"
            name, labels, value = match[1], match[2], match[3]
            assert _family(name, out.types) in out.types, f"{name} has no TYPE"
            key = (name, _labels(labels) if labels else frozenset())
            assert key not in out.samples, f"duplicate sample {line!r}"
            out.samples[key] = float(value.replace("+Inf", "inf"))
    _check_histograms(out)
    return out


def _check_histograms(out: Exposition) -> None:
    for name, kind in out.types.items():
        if kind != "histogram":
            continue
        series: dict[Labels, list[tuple[float, float]]] = {}
        for (sample, labels), value in out.samples.items():
            if sample == f"{name}_bucket":
                le = dict(labels)["le"]
                rest = frozenset(x for x in labels if x[0] != "le")
                series.setdefault(rest, []).append((float(le.replace("+Inf", "inf")), value))
        for labels, buckets in series.items():
            buckets.sort()
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{name}{dict(labels)} buckets not cumulative"
            assert math.isinf(buckets[-1][0]), f"{name} lacks le=+Inf"
            assert out.samples[(f"{name}_count", labels)] == counts[-1]
            assert (f"{name}_sum", labels) in out.samples
