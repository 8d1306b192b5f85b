"""Aggregate gates such as ``triplet_safety>=0.8``: parsed up front, judged at session end."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pytest_osi.errors import ConfigError
from pytest_osi.metrics import Metrics, metric_names

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_GATE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*$")


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
        raise ConfigError(
            f"malformed gate {text!r}: expected METRIC OP NUMBER, e.g. 'triplet_safety>=0.8' "
            f"(OP one of {', '.join(_OPERATORS)})"
        )
    metric, op, number = match.groups()
    known = metric_names()
    if metric not in known:
        raise ConfigError(f"gate {text!r} names unknown metric {metric!r}; known metrics: {', '.join(known)}")
    return Gate(metric, op, float(number))


def parse_gates(texts: Iterable[str]) -> list[Gate]:
    return [parse_gate(t) for t in texts if t.strip()]
