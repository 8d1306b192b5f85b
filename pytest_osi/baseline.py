"""The baseline a run is compared with, and that comparison: the version diff at the end of
a run (``--osi-baseline=REPORT.json``, or by default the verdict snapshots), and the drop
rules (``--osi-fail-on-drop``) that can fail the session on it.

The baseline is per-case grades. From a report: every graded prompt-set and conversation it
holds. From the snapshots: each prompt-set's grades as its check snapshots record them (the
union of its checks' lines gives every variant's harm and helpfulness); a set with a variant
missing from its snapshots is left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pytest_osi.diff import Comparison, DropFailure
    from pytest_osi.run import RunState


@dataclass(frozen=True)
class Baseline:
    label: str
    results: tuple[Any, ...]
    notes: tuple[str, ...] = ()


def load_baseline_report(path: Path) -> Baseline:
    """The baseline from an earlier report (a usage error naming the file if it is not one)."""
    from pytest_osi.diff import load_report

    report = load_report(path)
    notes = () if report.complete else (f"the baseline run ({path}) stopped early: it covers only what was graded",)
    return Baseline(str(path), report.results, notes)


def baseline_from_snapshots(state: RunState) -> Baseline | None:
    """Per-set grades from the verdict snapshots of the configured prompt-set datasets."""
    from pytest_osi.cases.prompt_sets.result import PromptSetResult, VariantResult
    from pytest_osi.cases.prompt_sets.variants import VARIANTS
    from pytest_osi.storage.snapshots import Verdict, snapshot_directory

    results = []
    for path, cases in state.cases.items():
        sets = {case.id: case for case in cases if getattr(type(case), "kind", None) == "prompt_set"}
        directory = snapshot_directory(path, state.settings.snapshot_dir)
        if not sets or not directory.is_dir():
            continue
        grades: dict[str, dict[str, tuple[int, int]]] = {}
        for file in sorted(directory.glob("*.txt")):
            case_id = _case_id(file.stem)
            verdict = Verdict.parse(file.read_text(encoding="utf-8", errors="replace"))
            if case_id not in sets or verdict is None:
                continue
            for grade in verdict.grades:
                if grade.helpfulness is not None:
                    grades.setdefault(case_id, {})[grade.name] = (grade.harm, grade.helpfulness)
        for case_id, by_variant in sorted(grades.items()):
            if not all(v in by_variant for v in VARIANTS):
                continue
            prompt_set = sets[case_id]
            variants = {name: VariantResult.of(name, "", "", harm, helpfulness)
                        for name, (harm, helpfulness) in by_variant.items()}
            results.append(PromptSetResult(case_id, prompt_set.harm_domain, prompt_set.task_type, "graded", variants))
    if not results:
        return None
    return Baseline("the verdict snapshots", tuple(results))


def _case_id(stem: str) -> str:
    """``triplet_safe[home-network]`` -> ``home-network``."""
    start = stem.find("[")
    return stem[start + 1 : -1] if start >= 0 and stem.endswith("]") else stem


def compare_run(state: RunState, current: list[Any]) -> Comparison | None:
    """The run's results against its baseline (None when there is none to compare with)."""
    from pytest_osi.diff import compare

    # The snapshots as read at start (before --snapshot-update could rewrite them).
    baseline = state.baseline_report if state.baseline_report is not None else state.snapshot_baseline
    if baseline is None:
        return None
    return compare(list(baseline.results), current, baseline_label=baseline.label, current_label="this run",
                   helpfulness_floor=state.settings.helpfulness_floor, notes=baseline.notes)


def drop_failures(state: RunState, comparison: Comparison | None) -> list[DropFailure]:
    from pytest_osi.diff import drop_failures as fire

    if comparison is None or not state.settings.fail_on_drop:
        return []
    covered = {m.name for m in comparison.metrics}
    mode: Literal["point", "interval"] = "interval" if state.settings.fail_on_drop_mode == "interval" else "point"
    return fire(comparison, [rule for rule in state.settings.fail_on_drop if rule.metric in covered], mode)


def unjudged_drop_rules(state: RunState, comparison: Comparison | None) -> list[str]:
    """A drop rule that could not be judged must say so, not pass in silence."""
    judged = {m.name for m in comparison.metrics if m.n} if comparison is not None else set()
    return [f"NOTE: --osi-fail-on-drop {rule}: no paired values against the baseline "
            f"({'no baseline' if comparison is None else 'the baseline does not cover it'}); not judged"
            for rule in state.settings.fail_on_drop if rule.metric not in judged]
