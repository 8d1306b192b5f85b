"""What a run tells its user at the terminal: the header lines and the end-of-session summary.

The summary and the JSON report (``report.py``) are built from the same :class:`RunSummary`,
so the terminal and ``--osi-report`` can never disagree; both list metrics from the metric
registry, not from a hand-written list. Everything shown passes through redaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pytest_osi.cases.base import OUTCOMES, Usage
from pytest_osi.gates import Gate, GateVerdict
from pytest_osi.grading import rubric_label, rubrics_for
from pytest_osi.metrics import Metrics, compute_metrics, compute_strata, registry
from pytest_osi.options import LOCAL, Settings
from pytest_osi.redaction import redact

if TYPE_CHECKING:
    from pytest_osi.run import RunState


def judge_note(settings: Settings) -> str | None:
    if settings.judge_model == LOCAL:
        return ("the local judge (SmolLM2-135M) is a demonstration judge, not a trustworthy one: "
                "for real verdicts point it at a capable model, e.g. --osi-judge=openai/gpt-4o")
    if settings.judge is None and settings.model is not None:
        return f"the judge is the model under test ({settings.model}); set --osi-judge to grade with an independent model"
    return None


def header_lines(state: RunState) -> list[str]:
    from pytest_osi.pipeline import concurrency

    s = state.settings
    lines = [f"osi: model={s.model or '(hook)'} judge={s.judge_model or '(hook)'} "
             f"rubrics={rubric_label(*rubrics_for(_kinds(state)))} concurrency={concurrency(s)}"]
    if state.cases:
        kinds = [getattr(type(c), "kind", "") for cases in state.cases.values() for c in cases]
        parts = [f"{kinds.count('prompt_set')} prompt-set(s)"] if "prompt_set" in kinds else []
        parts += [f"{kinds.count('scenario')} scenario conversation(s)"] if "scenario" in kinds else []
        lines.append(f"osi: {', '.join(parts)} from {len(state.cases)} dataset(s)")
    lines.append(f"osi: {store_line(s, state.config.rootpath)}")
    note = judge_note(s)
    if note:
        lines.append(f"osi: NOTE: {note}")
    return lines


def _kinds(state: RunState) -> set[str]:
    return {getattr(type(c), "kind", "") for cases in state.cases.values() for c in cases}


def store_line(settings: Settings, rootdir: Any) -> str:
    """Where calls are recorded and in which mode (the header says it before any call)."""
    from pytest_osi.calls.store import store_dir

    modes = {settings.record, settings.record_model or settings.record}
    if modes == {"off"}:
        return "call store: off (every call is live, nothing is recorded)"
    model = f", model under test: {settings.record_model}" if settings.record_model else ""
    return f"call store: {store_dir(settings, rootdir)} (record {settings.record}{model})"


@dataclass(frozen=True)
class RunSummary:
    model: str | None
    judge: str | None
    results: Sequence[Any]  # CaseResult
    metrics: Metrics
    verdicts: Sequence[GateVerdict]
    strata: dict[str, dict[str, dict[str, float | int | None]]]
    usage: Usage
    wall_time: float
    judge_note: str | None = None
    configured_sets: int = 0  # cases in the configured datasets (0: none configured)
    complete: bool = True  # False when the run stopped early (-x, --maxfail, Ctrl-C)
    baseline: Any = None  # BaselineTally: check items against their verdict snapshots
    comparison: dict[str, Any] | None = None  # the version diff's report keys (baseline, deltas, transitions)
    comparison_lines: tuple[str, ...] = ()
    drop_failures: tuple[str, ...] = ()  # --osi-fail-on-drop rules that fired, as messages
    store_note: str | None = None  # what the call store did at the end (a rewrite's prune)

    @classmethod
    def build(cls, model: str | None, judge: str | None, results: Sequence[Any],
              gates: Sequence[Gate], wall_time: float, judge_note: str | None = None,
              configured_sets: int = 0, complete: bool = True) -> RunSummary:
        ordered = sorted(results, key=lambda r: (r.kind, r.case_id))
        metrics = compute_metrics(ordered)
        usage = sum((r.usage for r in ordered), Usage())
        strata: dict[str, dict[str, dict[str, float | int | None]]] = {}
        for kind, strata_metrics in _STRATA_METRICS.items():
            of_kind = [r for r in ordered if r.kind == kind]
            for key in sorted({key for r in of_kind for key in r.strata()}):
                name = key if kind == "prompt_set" else f"scenario_{key}"
                strata[name] = compute_strata(of_kind, _stratum(key), strata_metrics)
        return cls(model, judge, ordered, metrics, [g.check(metrics) for g in gates], strata, usage, wall_time,
                   judge_note, configured_sets, complete)

    @classmethod
    def from_run(cls, state: RunState, complete: bool) -> RunSummary:
        s = state.settings
        from pytest_osi.baseline import compare_run, drop_failures, unjudged_drop_rules

        summary = cls.build(s.model, s.judge_model, list(state.results.values()), s.gates, state.elapsed(),
                            judge_note(s), configured_sets=state.configured_count, complete=complete)
        comparison = compare_run(state, list(summary.results))
        drops = drop_failures(state, comparison)
        unjudged = unjudged_drop_rules(state, comparison)
        if comparison is None:
            return replace(summary, baseline=state.baseline, comparison_lines=tuple(unjudged))
        report_keys = comparison.to_dict()
        report_keys["drop_failures"] = [d.to_dict() for d in drops]
        return replace(summary, baseline=state.baseline, comparison=report_keys,
                       comparison_lines=tuple([*comparison.lines(), *unjudged]),
                       drop_failures=tuple(d.message() for d in drops))

    @property
    def failed_gates(self) -> list[GateVerdict]:
        return [v for v in self.verdicts if not v.passed]

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)

    def counts(self) -> dict[str, int]:
        """Cases per outcome; outcomes no kind produced in this run are left out."""
        base = {"graded": 0, "judge-error": 0, "model-error": 0}
        base.update({o: self.count(o) for o in OUTCOMES if self.count(o) or o in base})
        return base


# The metrics reported per stratum, by case kind.
_STRATA_METRICS = {"prompt_set": ("triplet_safety", "mean_utility"),
                   "scenario": ("recovery_rate", "ben_util_final", "lock_in_rate")}


def _stratum(key: str) -> Callable[[Any], str]:
    return lambda result: str(result.strata().get(key, ""))


def _day(stamp: str | None) -> str:
    """'2026-11-30T14:02:11+00:00' -> '2026-11-30 14:02 UTC'."""
    if not stamp:
        return "?"
    return stamp[:16].replace("T", " ") + " UTC"


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_lines(summary: RunSummary) -> list[str]:
    lines = [
        f"model: {summary.model or '(hook)'}    judge: {summary.judge or '(hook)'}    "
        f"rubrics: {rubric_label(*rubrics_for(r.kind for r in summary.results)).replace(',', ' ')}",
    ]
    if summary.judge_note:
        lines.append(f"NOTE: {summary.judge_note}")
    labels = {"prompt_set": "prompt-sets", "scenario": "conversations"}
    for kind, label in labels.items():
        of_kind = [r for r in summary.results if r.kind == kind]
        if of_kind or (kind == "prompt_set" and not summary.results):
            outcomes = [o for o in summary.counts() if kind == "scenario" or o != "simulator-error"]
            counts = {o: sum(r.outcome == o for r in of_kind) for o in outcomes}
            lines.append(f"{label}: {len(of_kind)}  " + "  ".join(f"{o}: {n}" for o, n in counts.items()))
    if not summary.complete:
        lines.append("NOTE: the run stopped early: these numbers cover only what was graded; gates not enforced")
    elif len(summary.results) < summary.configured_sets:
        lines.append(f"NOTE: metrics and gates cover {len(summary.results)} of the {summary.configured_sets} "
                     "configured cases (a selection: -k, -m, --lf)")
    lines += _metric_table(summary)
    lines += _prompt_set_details(summary)
    lines += _scenario_details(summary)
    for key, title in (("harm_domain", "harm domain"), ("task_type", "task type")):
        if key not in summary.strata or not any(r.kind == "prompt_set" for r in summary.results):
            continue
        lines.append("")
        lines.append(f"{'by ' + title:<36} {'sets':>5} {'triplet_safety':>15} {'mean_utility':>13}")
        for name, row in summary.strata[key].items():
            lines.append(f"  {redact(name)[:34]:<34} {row['sets']:>5} {_fmt(row['triplet_safety']):>15} {_fmt(row['mean_utility']):>13}")
    lines += _baseline_lines(summary)
    errors = [r for r in summary.results if not r.graded]
    if errors:
        lines.append("")
        lines.append("not graded (left out of the metrics above):")
        lines.extend(f"  {r.case_id}: {r.outcome}: {r.error}" for r in errors)
    u = summary.usage
    cost = f"${u.cost:.4f}" if u.cost is not None else "unknown"
    lines.append("")
    lines.append(
        f"calls: {u.calls} ({u.live} live, {u.replayed} replayed)  tokens: {u.prompt_tokens} prompt / "
        f"{u.completion_tokens} completion  cost: {cost}  wall time: {summary.wall_time:.1f}s"
    )
    if u.replayed:
        # A stale answer must never pass silently: say what was replayed, and from when.
        lines.append(f"NOTE: {u.replayed} of {u.calls} calls were replayed from the call store, recorded "
                     f"{_day(u.recorded_from)} .. {_day(u.recorded_to)}; --osi-record=all calls everything again")
    if summary.store_note:
        lines.append(summary.store_note)
    if summary.comparison_lines:
        lines.append("")
        lines.extend(summary.comparison_lines)
    for verdict in summary.failed_gates if summary.complete else ():
        lines.append(f"FAIL Required gate {verdict.gate} not met: {verdict.gate.metric} = {_fmt(verdict.value)}")
    for message in summary.drop_failures if summary.complete else ():
        lines.append(f"FAIL Drop beyond --osi-fail-on-drop: {message}")
    return [redact(line) for line in lines]


def _metric_table(summary: RunSummary) -> list[str]:
    kinds_present = {r.kind for r in summary.results}
    gates = {v.gate.metric: v for v in summary.verdicts}
    lines = ["", f"{'metric':<26} {'value':>7}  {'gate':<22} verdict"]
    for name, metric in registry().items():
        if metric.kind not in kinds_present and name not in gates:
            continue
        verdict = gates.get(name)
        gate_text = f"{verdict.gate.op}{verdict.gate.threshold:g}" if verdict else ""
        verdict_text = ("PASS" if verdict.passed else "FAIL") if verdict else ""
        lines.append(f"{name:<26} {_fmt(summary.metrics[name]):>7}  {gate_text:<22} {verdict_text}".rstrip())
    # A gate may name a metric twice (a floor and a ceiling): list the extra ones too.
    for verdict in summary.verdicts:
        if gates[verdict.gate.metric] is not verdict:
            extra_gate = f"{verdict.gate.op}{verdict.gate.threshold:g}"
            lines.append(f"{verdict.gate.metric:<26} {_fmt(verdict.value):>7}  {extra_gate:<22} "
                         f"{'PASS' if verdict.passed else 'FAIL'}")
    return lines


_BASELINE_TITLES = {
    "regression": "regressions against the snapshot baseline (these fail)",
    "known-failure": "known failures in the baseline (xfail; --osi-strict makes them fail)",
    "improvement": "improvements on the baseline (accept them with --snapshot-update)",
}


def _baseline_lines(summary: RunSummary) -> list[str]:
    tally = summary.baseline
    if tally is None or not tally.items:
        return []
    lines = ["", f"verdict snapshots: {tally.with_baseline} of {tally.items} check items have a baseline"]
    if tally.with_baseline < tally.items:
        lines.append("  (without one a check is absolute; record the current verdicts as the baseline with "
                     "--snapshot-update)")
    for status, title in _BASELINE_TITLES.items():
        by_check = tally.outcomes.get(status, {})
        if by_check:
            lines.append(f"{title}:")
            for check, ids in sorted(by_check.items()):
                shown = ", ".join(i.rsplit("::", 1)[-1] for i in sorted(ids)[:10])
                more = f" (+{len(ids) - 10} more)" if len(ids) > 10 else ""
                lines.append(f"  {check}: {len(ids)}: {shown}{more}")
    return lines


def scenario_tables(results: Sequence[Any]) -> dict[str, Any]:
    """The scenario tables (recovery curve, gains per move, recovery splits), as plain data for
    the summary and the report."""
    from pytest_osi.cases.scenarios import measures as m

    def share(x: Any) -> dict[str, Any]:
        return {"value": x.value, "n": x.n, "excluded": x.excluded}

    return {
        "recovery_curve": {str(t): share(x) for t, x in m.recovery_curve(results).items()},
        "gain_by_move": {move: share(x) for move, x in m.gain_by_move(results).items()},
        "recovery_by_turn1": {k: share(x) for k, x in m.recovery_by_turn1(results).items()},
        "recovery_by_harm_domain": {k: share(x) for k, x in m.recovery_by_harm_domain(results).items()},
        "recovery_by_flow": {k: share(x) for k, x in m.recovery_by_flow(results).items()},
        "note": m.no_baseline_note(results),
    }


def _scenario_details(summary: RunSummary) -> list[str]:
    conversations = [r for r in summary.results if r.kind == "scenario"]
    if not conversations:
        return []
    tables = scenario_tables(conversations)
    scenarios = len({r.scenario_id for r in conversations})
    lines = ["", f"clarification scenarios: {scenarios} scenario(s), {len(conversations)} conversation(s)"]
    curve = "  ".join(f"t{t} {_fmt(x['value'])}" for t, x in tables["recovery_curve"].items())
    lines.append(f"recovery curve (mean Ben-Util by turn): {curve or 'n/a'}")
    gains = "  ".join(f"{move} {x['value']:+.3f} (n={x['n']})" for move, x in tables["gain_by_move"].items()
                      if x["value"] is not None)
    lines.append(f"Ben-Util gain after each move: {gains or 'n/a'}")
    for title, key in (("first response", "recovery_by_turn1"), ("harm domain", "recovery_by_harm_domain"),
                       ("flow", "recovery_by_flow")):
        rows = "  ".join(f"{name} {_fmt(x['value'])} (n={x['n']})" for name, x in tables[key].items())
        lines.append(f"recovery by {title}: {rows or 'n/a'}")
    if tables["note"]:
        lines.append(f"NOTE: {tables['note']}")
    return lines


def _prompt_set_details(summary: RunSummary) -> list[str]:
    if not any(r.kind == "prompt_set" for r in summary.results):
        return []
    m = summary.metrics
    return [
        "",
        f"per-variant safety:   benign {_fmt(m['benign_safety'])}  dual_use {_fmt(m['dual_use_safety'])}  "
        f"malicious {_fmt(m['malicious_safety'])}",
        f"paraphrase stability: stable-safe {_fmt(m['stable_safe_rate'])}  flip {_fmt(m['flip_rate'])}  "
        f"stable-unsafe {_fmt(m['stable_unsafe_rate'])}  utility range {_fmt(m['utility_range'])}",
    ]
