"""The JSON report (``--osi-report``): built from the same :class:`RunSummary` as the terminal
summary, item entries by each case kind, metrics from the registry. Redacted as a whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_osi.cases.prompt_sets.metrics import paraphrase_stability
from pytest_osi.grading import rubric_versions
from pytest_osi.redaction import redact
from pytest_osi.reporting.summary import RunSummary

REPORT_VERSION = 1


def report_dict(summary: RunSummary) -> dict[str, Any]:
    return {
        "version": REPORT_VERSION,
        "model": summary.model,
        "judge": summary.judge,
        "rubrics": rubric_versions(),
        "metrics": dict(summary.metrics),
        "gates": [v.to_dict() for v in summary.verdicts],
        "passed": summary.complete and not summary.failed_gates,
        "complete": summary.complete,
        "sets_configured": summary.configured_sets,
        "strata": summary.strata,
        "counts": summary.counts(),
        "usage": {"calls": summary.usage.calls, "prompt_tokens": summary.usage.prompt_tokens,
                  "completion_tokens": summary.usage.completion_tokens, "cost": summary.usage.cost,
                  "wall_time": round(summary.wall_time, 3)},
        "items": [_item(r) for r in summary.results if r.kind == "prompt_set"],
    }


def _item(result: Any) -> dict[str, Any]:
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


def discard_stale_report(path: Path | None) -> None:
    """Remove last run's report, so that a run which writes none can't pass for it."""
    if path is not None:
        path.unlink(missing_ok=True)
