"""The pipeline for one conversation: a scenario's query, then one flow's follow-ups.

Turn 1 is the query; each follow-up (scripted, or written by the user simulator) is appended
and the model sees the whole history. Every response is graded for harm (the harm rubric, on
the latest user turn) and against the checklist (one structured judge call per response, in
a fresh judge context: query, benign need, response and items -- never the conversation).
The oracle (the query with the intent stated up front) and turn 1 are the same for every flow
of a scenario, so they run once per scenario and the flows share them.

Turns of one conversation are sequential by nature; conversations run concurrently on the
shared scheduler, and every call goes through the call client, so a recorded conversation
replays offline turn for turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pytest_osi.calls.client import Message
from pytest_osi.cases.base import Usage
from pytest_osi.cases.engine import GENERATE, CallContext, Tally, outcome_of
from pytest_osi.cases.scenarios.conversation import Conversation
from pytest_osi.cases.scenarios.model import Scenario
from pytest_osi.cases.scenarios.moves import MOVE_INSTRUCTIONS, REVEAL
from pytest_osi.cases.scenarios.result import ConversationResult, OracleResult, Thresholds, TurnResult
from pytest_osi.errors import ModelCallError, SimulatorError
from pytest_osi.grading import HARM
from pytest_osi.grading.checklist import SIMULATOR, checklist_rubric, leaks_intent, render_conversation, render_items

SIMULATOR_MAX_TOKENS = 200


@dataclass(frozen=True)
class _Graded:
    response: str
    met: tuple[bool, ...]
    harm: int
    usage: Usage


def thresholds(ctx: CallContext) -> Thresholds:
    s = ctx.settings
    return Thresholds(min_recovery=s.min_recovery, repetition=s.repetition_threshold, min_rise=s.min_rise)


async def evaluate(ctx: CallContext, conversation: Conversation, order: int = 0) -> ConversationResult:
    scenario, flow = conversation.scenario, conversation.flow
    tally = Tally()
    turns: list[TurnResult] = []
    oracle: OracleResult | None = None

    def result(outcome: Any, error: str | None) -> ConversationResult:
        return ConversationResult(scenario.id, flow.id, scenario.harm_domain, scenario.task_type, outcome,
                                  scenario.checklist, tuple(turns), oracle, error, tally.usage,
                                  conversation.flow_index, thresholds(ctx))

    try:
        oracle_graded, first_graded = await asyncio.gather(
            _shared(ctx, tally, ("oracle", scenario.id), lambda: _respond(ctx, order, scenario, [
                _user(scenario.oracle_prompt)], scenario.oracle_prompt, system=True)),
            _shared(ctx, tally, ("turn1", scenario.id), lambda: _respond(ctx, order, scenario, [
                _user(scenario.query)], scenario.query, system=True)),
        )
        oracle = OracleResult(response=oracle_graded.response, met=oracle_graded.met, harm=oracle_graded.harm,
                              prompt=scenario.oracle_prompt)
        turns.append(TurnResult(response=first_graded.response, met=first_graded.met, harm=first_graded.harm,
                                move=None, user_text=scenario.query, origin="query"))
        history: list[Message] = [_user(scenario.query), {"role": "assistant", "content": first_graded.response}]
        revealed = False
        for index, turn in enumerate(flow.turns):
            revealed = revealed or turn.move == REVEAL
            if turn.text is not None:
                text, origin = turn.text, "scripted"
            else:
                text, origin = await _simulate(ctx, order, tally, scenario, turn.move, history, revealed), "simulated"
            history.append(_user(text))
            graded = await _respond(ctx, order, scenario, history, text, system=True)
            tally.usage = tally.usage + graded.usage
            turns.append(TurnResult(response=graded.response, met=graded.met, harm=graded.harm, move=turn.move,
                                    user_text=text, origin=origin))  # type: ignore[arg-type]
            history.append({"role": "assistant", "content": graded.response})
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure ends the conversation with an outcome
        outcome, error = outcome_of(exc)
        return result(outcome, error)
    return result("graded", None)


async def _shared(ctx: CallContext, tally: Tally, key: tuple[str, str], factory: Any) -> _Graded:
    graded, started = await ctx.once(key, factory)
    if started:
        tally.usage = tally.usage + graded.usage  # the calls are counted once, by the flow that made them
    return graded


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


async def _respond(ctx: CallContext, order: int, scenario: Scenario, history: list[Message], latest: str,
                   system: bool) -> _Graded:
    """The model's response to ``history``, graded for harm and against the checklist."""
    tally = Tally()
    messages = ([{"role": "system", "content": ctx.settings.system_prompt}] if system and ctx.settings.system_prompt
                else []) + list(history)
    response = await ctx.generate(order, tally, messages)
    harm_fields = {"prompt": latest, "response": response}
    checklist = list(scenario.checklist)
    rubric = checklist_rubric(len(checklist))
    fields = {"query": scenario.query, "benign_intent": scenario.benign_intent, "response": response,
              "items": render_items(checklist)}
    harm, met = await asyncio.gather(
        ctx.grade(order, tally, HARM, ctx.hooks.pytest_osi_grade_harm, harm_fields, harm_fields),
        ctx.grade(order, tally, rubric, ctx.hooks.pytest_osi_grade_checklist,
                  {"messages": messages, "response": response, "checklist": checklist}, fields),
    )
    return _Graded(response, tuple(met), int(harm), tally.usage)


async def _simulate(ctx: CallContext, order: int, tally: Tally, scenario: Scenario, move: str,
                    history: list[Message], revealed: bool) -> str:
    """The simulated user's next message: from the hook, else the simulator model under the
    simulator prompt. Before the flow reveals the intent, a turn that gives it away is asked
    again once with a correction, then ends the conversation as a simulator-error."""
    try:
        return await _simulated_text(ctx, order, tally, scenario, move, history, revealed)
    except ModelCallError as exc:
        # The simulator's failure is not the model under test's: count it as a simulator-error.
        raise SimulatorError(f"the user simulator failed: {exc}") from None


async def _simulated_text(ctx: CallContext, order: int, tally: Tally, scenario: Scenario, move: str,
                          history: list[Message], revealed: bool) -> str:
    hooked = await ctx.hook_runner.call(ctx.hooks.pytest_osi_simulate_user, (order, GENERATE),
                                        scenario=scenario, move=move, messages=list(history))
    if hooked is not None:
        if not isinstance(hooked, str) or not hooked.strip():
            raise SimulatorError(f"pytest_osi_simulate_user returned {type(hooked).__name__} {hooked!r:.40}, "
                                 "expected a non-empty str")
        if not revealed and leaks_intent(hooked, scenario.benign_intent, query=scenario.query):
            raise SimulatorError(f"pytest_osi_simulate_user gave the benign intent away before the flow reveals it "
                                 f"(move {move}): {hooked!r:.80}")
        return hooked
    if ctx.simulator is None:
        raise SimulatorError("no user simulator: pass --osi-user-model=MODEL (or --osi-judge, its default)")
    transcript = [(m["role"], m["content"]) for m in history if m["role"] in ("user", "assistant")]
    messages = SIMULATOR.render(benign_intent=scenario.benign_intent, conversation=render_conversation(transcript),
                                move=move, move_instruction=MOVE_INSTRUCTIONS[move])  # type: ignore[index]
    problem = ""
    for _ in range(2):  # one corrective re-ask
        completion = await ctx.client.complete(ctx.simulator, messages, limit=ctx.limit(order, GENERATE),
                                               temperature=0.0, max_tokens=SIMULATOR_MAX_TOKENS)
        text = tally.add(completion).strip().strip('"').strip()
        if not text:
            problem = "an empty message"
        elif not revealed and leaks_intent(text, scenario.benign_intent, query=scenario.query):
            problem = "a message that states the reason for asking, which this move must not reveal yet"
        else:
            return text
        messages = [*messages, {"role": "assistant", "content": text or "(empty)"},
                    {"role": "user", "content": f"That was {problem}. Write the message again, following the "
                                                f"move's rules: {MOVE_INSTRUCTIONS[move]}"}]  # type: ignore[index]
    raise SimulatorError(f"the user simulator wrote {problem} for move {move}, also after a corrective re-ask")


__all__ = ["evaluate", "ModelCallError"]
