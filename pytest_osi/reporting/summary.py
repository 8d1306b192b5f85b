"""What a run tells its user: the end-of-session summary table and the JSON report.

Both are built from the same :class:`RunSummary`, so the terminal and ``--osi-report`` can
never disagree. Everything written passes through :func:`~pytest_osi.redaction.redact`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_osi.gates import Gate, GateVerdict
from pytest_osi.grading import HARM, HELPFULNESS
from pytest_osi.metrics import METRIC_DESCRIPTIONS, Metrics, compute_metrics, compute_strata, paraphrase_stability
from pytest_osi.redaction import redact
from pytest_osi.cases.prompt_sets.result import PromptSetResult, Usage

REPORT_VERSION = 1


@dataclass(frozen=True)
class RunSummary:
    model: str | None
    judge: str | None
    results: Sequence[PromptSetResult]
    metrics: Metrics
    verdicts: Sequence[GateVerdict]
    strata: dict[str, dict[str, dict[str, float | int | None]]]
    usage: Usage
    wall_time: float
    judge_note: str | None = None
    configured_sets: int = 0  # prompt-sets in the configured datasets (0: none configured)
    complete: bool = True  # False when the run stopped early (-x, --maxfail, Ctrl-C)

    @classmethod
    def build(cls, model: str | None, judge: str | None, results: Sequence[PromptSetResult],
              gates: Sequence[Gate], wall_time: float, judge_note: str | None = None,
              configured_sets: int = 0, complete: bool = True) -> RunSummary:
        ordered = sorted(results, key=lambda r: r.set_id)
        metrics = compute_metrics(ordered)
        usage = sum((r.usage for r in ordered), Usage())
        strata = {
            "harm_domain": compute_strata(ordered, lambda r: r.harm_domain),
            "task_type": compute_strata(ordered, lambda r: r.task_type),
        }
        return cls(model, judge, ordered, metrics, [g.check(metrics) for g in gates], strata, usage, wall_time,
                   judge_note, configured_sets, complete)

    @property
    def failed_gates(self) -> list[GateVerdict]:
        return [v for v in self.verdicts if not v.passed]

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_lines(summary: RunSummary) -> list[str]:
    lines = [
        f"model: {summary.model or '(hook)'}    judge: {summary.judge or '(hook)'}    "
        f"rubrics: harm@{HARM.version} helpfulness@{HELPFULNESS.version}",
    ]
    if summary.judge_note:
        lines.append(f"NOTE: {summary.judge_note}")
    lines.append(
        f"prompt-sets: {len(summary.results)}  graded: {summary.count('graded')}  "
        f"judge-error: {summary.count('judge-error')}  model-error: {summary.count('model-error')}"
    )
    if not summary.complete:
        lines.append("NOTE: the run stopped early: these numbers cover only what was graded; gates not enforced")
    elif len(summary.results) < summary.configured_sets:
        lines.append(f"NOTE: metrics and gates cover {len(summary.results)} of the {summary.configured_sets} "
                     "configured prompt-sets (a selection: -k, -m, --lf)")
    gates = {v.gate.metric: v for v in summary.verdicts}
    lines.append("")
    lines.append(f"{'metric':<20} {'value':>7}  {'gate':<22} verdict")
    for name in METRIC_DESCRIPTIONS:
        verdict = gates.get(name)
        gate_text = f"{verdict.gate.op}{verdict.gate.threshold:g}" if verdict else ""
        verdict_text = ("PASS" if verdict.passed else "FAIL") if verdict else ""
        lines.append(f"{name:<20} {_fmt(summary.metrics[name]):>7}  {gate_text:<22} {verdict_text}".rstrip())
    # A gate may name a metric twice (a floor and a ceiling): list the extra ones too.
    for verdict in summary.verdicts:
        if gates[verdict.gate.metric] is not verdict:
            lines.append(f"{verdict.gate.metric:<20} {_fmt(verdict.value):>7}  {verdict.gate.op}{verdict.gate.threshold:g}{'':<18} {'PASS' if verdict.passed else 'FAIL'}")
    m = summary.metrics
    lines.append("")
    lines.append(f"per-variant safety:   benign {_fmt(m['benign_safety'])}  dual_use {_fmt(m['dual_use_safety'])}  malicious {_fmt(m['malicious_safety'])}")
    lines.append(
        f"paraphrase stability: stable-safe {_fmt(m['stable_safe_rate'])}  flip {_fmt(m['flip_rate'])}  "
        f"stable-unsafe {_fmt(m['stable_unsafe_rate'])}  utility range {_fmt(m['utility_range'])}"
    )
    for title, key in (("harm domain", "harm_domain"), ("task type", "task_type")):
        lines.append("")
        lines.append(f"{'by ' + title:<36} {'sets':>5} {'triplet_safety':>15} {'mean_utility':>13}")
        for name, row in summary.strata[key].items():
            lines.append(f"  {name[:34]:<34} {row['sets']:>5} {_fmt(row['triplet_safety']):>15} {_fmt(row['mean_utility']):>13}")
    errors = [r for r in summary.results if not r.graded]
    if errors:
        lines.append("")
        lines.append("not graded (left out of the metrics above):")
        lines.extend(f"  {r.set_id}: {r.outcome}: {r.error}" for r in errors)
    u = summary.usage
    cost = f"${u.cost:.4f}" if u.cost is not None else "unknown"
    lines.append("")
    lines.append(
        f"calls: {u.calls}  tokens: {u.prompt_tokens} prompt / {u.completion_tokens} completion  "
        f"cost: {cost}  wall time: {summary.wall_time:.1f}s"
    )
    for verdict in summary.failed_gates if summary.complete else ():
        lines.append(f"FAIL Required gate {verdict.gate} not met: {verdict.gate.metric} = {_fmt(verdict.value)}")
    return [redact(line) for line in lines]


def report_dict(summary: RunSummary) -> dict[str, Any]:
    return {
        "version": REPORT_VERSION,
        "model": summary.model,
        "judge": summary.judge,
        "rubrics": {"harm": HARM.version, "helpfulness": HELPFULNESS.version},
        "metrics": dict(summary.metrics),
        "gates": [v.to_dict() for v in summary.verdicts],
        "passed": summary.complete and not summary.failed_gates,
        "complete": summary.complete,
        "sets_configured": summary.configured_sets,
        "strata": summary.strata,
        "counts": {k: summary.count(k) for k in ("graded", "judge-error", "model-error")},
        "usage": {"calls": summary.usage.calls, "prompt_tokens": summary.usage.prompt_tokens,
                  "completion_tokens": summary.usage.completion_tokens, "cost": summary.usage.cost,
                  "wall_time": round(summary.wall_time, 3)},
        "items": [_item(r) for r in summary.results],
    }


def _item(result: PromptSetResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        "set_id": result.set_id, "harm_domain": result.harm_domain, "task_type": result.task_type,
        "outcome": result.outcome, "error": result.error,
        "variants": {
            name: {"prompt": v.prompt, "response": v.response, "harm": v.harm, "helpfulness": v.helpfulness,
                   "safety": int(v.safe), "utility": v.utility}
            for name, v in result.variants.items()
        },
    }
    if result.graded:
        item["paraphrase_stability"] = paraphrase_stability(result)
    return item


def write_report(path: Path, summary: RunSummary) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = redact(json.dumps(report_dict(summary), indent=2, ensure_ascii=False))
    path.write_text(text + "\n", encoding="utf-8")
