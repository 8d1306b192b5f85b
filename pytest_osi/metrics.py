"""The metric registry: every metric a gate, the summary, the report or a version diff can
name, with its meaning, its direction and how it is computed.

Every metric is a *mean of per-case values* over the cases of its kind: a per-case function
returns a number, or None to leave that case out (a case the judge could not grade, a set
with no safe paraphrase response...). That one shape serves aggregates, strata and the paired
per-case differences a version diff needs. A metric with no data at all is None, never a
made-up 0.

The case kinds register their metrics (see ``pytest_osi.cases.prompt_sets.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any, Literal

Direction = Literal["higher", "lower"]
Metrics = dict[str, float | None]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # the case kind whose results it reads
    description: str
    direction: Direction  # which way is better: gates and version diffs need it
    per_case: Callable[[Any], float | None]
    graded_only: bool = True  # error rates count every case, grades only graded ones
    low: float = 0.0  # the range a value can take (a gate outside it can never pass)
    high: float = 1.0
    summary: bool = True  # listed in the summary's metric table

    def values(self, results: Iterable[Any]) -> list[float]:
        """The per-case values this metric averages (cases it leaves out are skipped)."""
        out = []
        for result in results:
            if result.kind != self.kind or (self.graded_only and not result.graded):
                continue
            value = self.per_case(result)
            if value is not None:
                out.append(float(value))
        return out

    def compute(self, results: Iterable[Any]) -> float | None:
        values = self.values(results)
        return fmean(values) if values else None

    def select_pairs(self, pairs: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        """The (baseline, current) case pairs a paired comparison of this metric uses: all of
        them; a metric over scenarios keeps one pair per scenario."""
        return list(pairs)

    def better(self, delta: float) -> bool:
        """True when a change of ``delta`` is an improvement."""
        return delta > 0 if self.direction == "higher" else delta < 0


_REGISTRY: dict[str, Metric] = {}


def register(*metrics: Metric) -> None:
    for metric in metrics:
        if metric.name in _REGISTRY and _REGISTRY[metric.name] != metric:
            raise ValueError(f"metric {metric.name!r} is registered twice")
        _REGISTRY[metric.name] = metric


def registry() -> dict[str, Metric]:
    """Every registered metric, in report order (importing the built-in kinds first)."""
    from pytest_osi.cases.base import kinds

    kinds()
    return dict(_REGISTRY)


def metric_names() -> tuple[str, ...]:
    return tuple(registry())


def compute_metrics(results: Sequence[Any], kind: str | None = None) -> Metrics:
    """Every metric (of ``kind``, or of all kinds) over ``results``."""
    return {name: m.compute(results) for name, m in registry().items() if kind is None or m.kind == kind}


def compute_strata(results: Sequence[Any], key: Callable[[Any], str],
                   metrics: Sequence[str] = ("triplet_safety", "mean_utility")) -> dict[str, dict[str, float | int | None]]:
    """A few metrics per stratum (harm domain, task type), with case counts."""
    groups: dict[str, list[Any]] = {}
    for result in results:
        groups.setdefault(key(result), []).append(result)
    table = registry()
    strata: dict[str, dict[str, float | int | None]] = {}
    for name in sorted(groups):
        row: dict[str, float | int | None] = {"sets": len(groups[name]), "graded": sum(r.graded for r in groups[name])}
        row.update({metric: table[metric].compute(groups[name]) for metric in metrics})
        strata[name] = row
    return strata
