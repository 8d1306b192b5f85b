"""The prompt-set kind, registered: its checks, metrics, result type and case argument."""

from __future__ import annotations

from typing import Any

from pytest_osi.cases.base import CaseKind, Outcome, register_kind
from pytest_osi.cases.prompt_sets import metrics as _metrics  # noqa: F401 - registers the metrics
from pytest_osi.cases.prompt_sets.checks import CHECKS, junit_properties
from pytest_osi.cases.prompt_sets.result import KIND, PromptSetResult


def _case_type() -> type:
    from pytest_osi.cases.prompt_sets.model import PromptSet  # pydantic: only when cases exist

    return PromptSet


def _evaluate() -> object:
    from pytest_osi.cases.prompt_sets.pipeline import evaluate

    return evaluate


def _error_result(prompt_set: Any, outcome: Outcome, error: str) -> PromptSetResult:
    return PromptSetResult(prompt_set.id, prompt_set.harm_domain, prompt_set.task_type, outcome, {}, error)


def _from_dict(data: dict[str, Any]) -> PromptSetResult:
    return PromptSetResult.from_dict(data)


PROMPT_SETS = register_kind(CaseKind(
    name=KIND,
    label="prompt-set",
    case_arg="osi_prompt_set",
    case_type=_case_type,
    result_from_dict=_from_dict,
    pipeline=_evaluate,
    error_result=_error_result,
    checks=CHECKS,
    strata=("harm_domain", "task_type"),
    extra={"junit_properties": junit_properties},
))
