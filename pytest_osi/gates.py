"""Aggregate gates such as ``triplet_safety>=0.8``, and drop rules such as
``triplet_safety:0.05`` (``--osi-fail-on-drop``): parsed and checked against the metric registry
up front, judged at session end."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pytest_osi.errors import ConfigError
from pytest_osi.metrics import Metric, Metrics, registry

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


class RuleError(ConfigError, ValueError):
    """A gate or drop rule that cannot be used: a usage error in a run, a ValueError to callers
    that parse rules themselves (``python -m pytest_osi diff --fail-on-drop``)."""


_GATE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*$")


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"

    def check(self, metrics: Metrics) -> GateVerdict:
        value = metrics.get(self.metric)
        # A metric with no data (nothing graded) cannot show the gate is met: fail, loudly.
        passed = value is not None and _OPERATORS[self.op](value, self.threshold)
        return GateVerdict(self, value, passed)


@dataclass(frozen=True)
class GateVerdict:
    gate: Gate
    value: float | None
    passed: bool

    def to_dict(self) -> dict[str, object]:
        return {"gate": str(self.gate), "metric": self.gate.metric, "op": self.gate.op,
                "threshold": self.gate.threshold, "value": self.value, "passed": self.passed}


def parse_gate(text: str) -> Gate:
    match = _GATE.match(text)
    if not match:
        raise RuleError(
            f"malformed gate {text!r}: expected METRIC OP NUMBER, e.g. 'triplet_safety>=0.8' "
            f"(OP one of {', '.join(_OPERATORS)})"
        )
    name, op, number = match.groups()
    metric = _metric(name, f"gate {text.strip()!r} names")
    threshold = float(number)
    if not math.isfinite(threshold):  # digits enough to overflow a float
        raise RuleError(f"gate {text.strip()!r}: the threshold must be a finite number")
    gate = Gate(name, op, threshold)
    if not _can_pass(gate, metric):
        raise RuleError(f"gate {text.strip()!r} can never pass: {_range(metric)}")
    return gate


def parse_gates(texts: Iterable[str]) -> list[Gate]:
    """Every non-blank gate, in order. One metric may carry several (a floor and a ceiling)."""
    return [parse_gate(t) for t in texts if t.strip()]


def _metric(name: str, what: str) -> Metric:
    known = registry()
    if name not in known:
        raise RuleError(f"{what} unknown metric {name!r}; known metrics: {', '.join(known)}")
    return known[name]


def _range(metric: Metric) -> str:
    return f"{metric.name} ranges from {metric.low:g} to {metric.high:g}"


def _can_pass(gate: Gate, metric: Metric) -> bool:
    """Whether some value in the metric's range meets the gate."""
    low, high, t = metric.low, metric.high, gate.threshold
    return {">=": t <= high, ">": t < high, "<=": t >= low, "<": t > low, "==": low <= t <= high}[gate.op]


@dataclass(frozen=True)
class DropRule:
    """``--osi-fail-on-drop=METRIC:MARGIN``: fail when the metric moves the wrong way (by its
    direction) by more than ``margin`` against the baseline."""

    metric: str
    margin: float

    def __post_init__(self) -> None:
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin >= 0):
            raise RuleError(f"drop rule for {self.metric}: the margin must be a finite number >= 0, "
                              f"got {self.margin!r}")

    @classmethod
    def parse(cls, text: str) -> DropRule:
        return parse_drop_rule(text)

    def __str__(self) -> str:
        return f"{self.metric}:{self.margin:g}"


def parse_drop_rule(text: str) -> DropRule:
    name, colon, number = text.strip().rpartition(":")
    name = name.strip()
    if not colon or not name:
        raise RuleError(f"malformed drop rule {text!r}: expected METRIC:MARGIN, e.g. 'triplet_safety:0.05'")
    metric = _metric(name, f"drop rule {text.strip()!r} names")
    try:
        margin = float(number.strip())
    except ValueError:
        raise RuleError(f"drop rule {text.strip()!r}: the margin must be a number, got {number.strip()!r}") from None
    if not (math.isfinite(margin) and margin >= 0):
        raise RuleError(f"drop rule {text.strip()!r}: the margin must be a finite number >= 0 "
                          f"({_range(metric)}), got {number.strip()!r}")
    return DropRule(name, margin)


def parse_drop_rules(texts: Iterable[str]) -> list[DropRule]:
    return [parse_drop_rule(t) for t in texts if t.strip()]
