"""The clarification scenario (CarryOnBench-style): a query that looks risky out of context,
the benign intent behind it, a checklist of what a helpful answer to that intent contains, and
one or more scripted or simulated follow-up sequences (flows) a user might continue with.

Conversation turns are numbered from 1, the query; a flow's k-th turn (1-based, as messages
say "flow 'reveal' turn 2") is conversation turn k + 1.

Pydantic because this is an edge: rows come from user files and must be validated field by
field. The rules that span fields (counts, uniqueness, where ``disengage`` may stand) are
checked here too, so a scenario built in a test module is held to them as well; they raise
:class:`ScenarioRuleError`, which names the field path the loader reports.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from pytest_osi.cases.base import mark_in_use
from pytest_osi.cases.fields import NonEmpty
from pytest_osi.cases.scenarios.moves import DISENGAGE, Move


MIN_ITEMS, MAX_ITEMS = 2, 12  # checklist items per scenario
MIN_TURNS, MAX_TURNS = 1, 11  # user turns per flow (after the query)
ID_SEPARATOR = "::"  # scenario id :: flow id is a conversation's case id


class ScenarioRuleError(ValueError):
    """A rule spanning fields is broken. ``field`` is the path (``flows[0].turns[1].move``);
    ``problem`` says what is wrong, starting with the flow and turn it concerns."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def where(flow_id: str | None, flow_index: int, turn_index: int | None = None) -> str:
    """``flow 'reveal' turn 2`` (the turn 1-based within the flow; a flow without a usable id
    by position, ``flow #1``), for messages."""
    flow = f"flow {flow_id!r}" if flow_id else f"flow #{flow_index + 1}"
    return flow if turn_index is None else f"{flow} turn {turn_index + 1}"


class Turn(BaseModel):
    """One user turn of a flow: a move and, when scripted, its text (None: simulated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    move: Move
    text: NonEmpty | None = None

    @property
    def simulated(self) -> bool:
        return self.text is None


class Flow(BaseModel):
    """One follow-up sequence after the query: 1-11 user turns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: NonEmpty
    turns: tuple[Turn, ...]

    @property
    def moves(self) -> tuple[Move, ...]:
        return tuple(turn.move for turn in self.turns)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = "scenario"

    id: NonEmpty
    harm_domain: NonEmpty
    task_type: NonEmpty
    query: NonEmpty
    benign_intent: NonEmpty
    oracle_query: NonEmpty | None = None
    checklist: tuple[NonEmpty, ...]
    flows: tuple[Flow, ...]

    def model_post_init(self, context: Any) -> None:
        # The explicit "scenarios exist in this process" flag the plugin checks before
        # looking for them among the collected items.
        mark_in_use(self.kind)

    def __str__(self) -> str:
        # So ``parametrize(..., ids=str)`` gives readable, stable test ids.
        return self.id

    @property
    def oracle_prompt(self) -> str:
        """The query with the benign intent stated up front: what a user who explains
        themselves at once would send. The scenario's ``oracle_query`` when it has one."""
        if self.oracle_query is not None:
            return self.oracle_query
        intent = self.benign_intent
        if intent[-1] not in ".!?":
            intent += "."
        return f"{intent} {self.query}"

    def flow(self, flow_id: str) -> Flow:
        for flow in self.flows:
            if flow.id == flow_id:
                return flow
        raise KeyError(f"scenario {self.id!r} has no flow {flow_id!r}")

    def case_id(self, flow: Flow | str) -> str:
        """``scenario-id::flow-id``, the id of one conversation (and of its result)."""
        return f"{self.id}{ID_SEPARATOR}{flow if isinstance(flow, str) else flow.id}"

    @model_validator(mode="after")
    def _rules(self) -> Scenario:
        if ID_SEPARATOR in self.id:
            raise ScenarioRuleError("id", f"must not contain {ID_SEPARATOR!r} (it separates scenario and flow ids)")
        _check_checklist(self.checklist)
        if not self.flows:
            raise ScenarioRuleError("flows", "no flows: at least one follow-up sequence is required")
        seen: dict[str, int] = {}
        for i, flow in enumerate(self.flows):
            _check_flow(flow, i)
            if flow.id in seen:
                raise ScenarioRuleError(f"flows[{i}].id", f"{where(flow.id, i)}: duplicate flow id, already used by "
                                                          f"flows[{seen[flow.id]}]; flow ids must be unique in a scenario")
            seen[flow.id] = i
        return self


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _check_checklist(items: tuple[str, ...]) -> None:
    if not MIN_ITEMS <= len(items) <= MAX_ITEMS:
        raise ScenarioRuleError("checklist", f"has {len(items)} item(s); a checklist needs {MIN_ITEMS}-{MAX_ITEMS}")
    first: dict[str, int] = {}
    for j, item in enumerate(items):
        key = _normal(item)
        if key in first:
            raise ScenarioRuleError(f"checklist[{j}]", f"item {j + 1} repeats item {first[key] + 1} ({item!r}); "
                                                       "checklist items must be distinct")
        first[key] = j


def _check_flow(flow: Flow, i: int) -> None:
    if ID_SEPARATOR in flow.id:
        raise ScenarioRuleError(f"flows[{i}].id", f"{where(flow.id, i)}: flow id must not contain {ID_SEPARATOR!r}")
    if not MIN_TURNS <= len(flow.turns) <= MAX_TURNS:
        raise ScenarioRuleError(f"flows[{i}].turns", f"{where(flow.id, i)}: has {len(flow.turns)} turn(s); "
                                                     f"a flow needs {MIN_TURNS}-{MAX_TURNS} user turns")
    for k, turn in enumerate(flow.turns[:-1]):
        if turn.move == DISENGAGE:
            raise ScenarioRuleError(f"flows[{i}].turns[{k}].move",
                                    f"{where(flow.id, i, k)}: {DISENGAGE} ends the conversation, so it can only be "
                                    f"the flow's last turn (this flow has {len(flow.turns)})")
