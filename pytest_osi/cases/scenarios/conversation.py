"""A conversation: one scenario followed by one of its flows -- the unit a scenario's pytest
items are parametrized over and its pipeline evaluates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_osi.cases.scenarios.model import Flow, Scenario

# The separator in item ids (``scenarios.yaml::recovers[garden-plants--reveal]``). Not the
# result's "::" (pytest and syrupy split node ids on it), nor "/" (snapshot file names drop
# it). Ids that still collide are refused when the dataset is loaded.
PARAM_SEPARATOR = "--"


@dataclass(frozen=True)
class Conversation:
    kind: ClassVar[str] = "scenario"

    scenario: Scenario
    flow: Flow
    flow_index: int

    @property
    def id(self) -> str:
        return f"{self.scenario.id}{PARAM_SEPARATOR}{self.flow.id}"

    @property
    def result_id(self) -> str:
        """The id its result carries (``scenario::flow``)."""
        return self.scenario.case_id(self.flow)

    @property
    def scope(self) -> str:
        """What keeps items together on one xdist worker: the scenario (its flows share the
        oracle and the first turn)."""
        return self.scenario.id

    @property
    def harm_domain(self) -> str:
        return self.scenario.harm_domain

    @property
    def task_type(self) -> str:
        return self.scenario.task_type

    def __str__(self) -> str:
        return self.id


def conversations(scenarios: list[Scenario]) -> list[Conversation]:
    return [Conversation(s, flow, i) for s in scenarios for i, flow in enumerate(s.flows)]
