"""The clarification-scenario case kind (CarryOnBench-style): a query that looks risky out of
context, its benign intent, a checklist of what a helpful answer contains, and follow-up flows
a user carries on with; measured for how much help comes back as the user explains.

Exports resolve lazily: importing the plugin must not pay for pydantic until data is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_osi.cases.scenarios.moves import MOVE_INSTRUCTIONS, MOVES, Move

if TYPE_CHECKING:
    from pytest_osi.cases.scenarios.loader import is_scenario_document, is_scenario_file, load_scenarios
    from pytest_osi.cases.scenarios.model import Flow, Scenario, Turn
    from pytest_osi.cases.scenarios.result import ConversationResult, OracleResult, Thresholds, TurnResult

__all__ = ["MOVES", "MOVE_INSTRUCTIONS", "ConversationResult", "Flow", "Move", "OracleResult", "Scenario",
           "Thresholds", "Turn", "TurnResult", "is_scenario_document", "is_scenario_file", "load_scenarios"]

_LAZY = {
    "Flow": "model", "Scenario": "model", "Turn": "model",
    "is_scenario_document": "loader", "is_scenario_file": "loader", "load_scenarios": "loader",
    "ConversationResult": "result", "OracleResult": "result", "Thresholds": "result", "TurnResult": "result",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pytest_osi.cases.scenarios.{_LAZY[name]}"), name)
    raise AttributeError(name)
