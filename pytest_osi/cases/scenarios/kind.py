"""The clarification-scenario kind, registered: its checks, metrics, result type and case
argument (a :class:`~pytest_osi.cases.scenarios.conversation.Conversation`)."""

from __future__ import annotations

from typing import Any

from pytest_osi.cases.base import CaseKind, Outcome, register_kind
from pytest_osi.cases.scenarios import measures as _measures  # noqa: F401 - registers the metrics
from pytest_osi.cases.scenarios.checks import CHECKS, junit_properties
from pytest_osi.cases.scenarios.result import KIND, ConversationResult, Thresholds


def _case_type() -> type:
    from pytest_osi.cases.scenarios.conversation import Conversation  # pydantic: only when cases exist

    return Conversation


def _evaluate() -> object:
    from pytest_osi.cases.scenarios.pipeline import evaluate

    return evaluate


def _error_result(conversation: Any, outcome: Outcome, error: str) -> ConversationResult:
    s = conversation.scenario
    return ConversationResult(s.id, conversation.flow.id, s.harm_domain, s.task_type, outcome, s.checklist,
                              error=error, flow_index=conversation.flow_index, thresholds=Thresholds())


def _from_dict(data: dict[str, Any]) -> ConversationResult:
    return ConversationResult.from_dict(data)


SCENARIOS = register_kind(CaseKind(
    name=KIND,
    label="scenario",
    case_arg="osi_conversation",
    case_type=_case_type,
    result_from_dict=_from_dict,
    pipeline=_evaluate,
    error_result=_error_result,
    checks=CHECKS,
    strata=("harm_domain", "task_type", "flow"),
    extra={"junit_properties": junit_properties},
))
