"""The evaluation engine (pytest_osi.cases.engine) with the prompt-set pipeline, driven directly:
a real Scheduler, stand-ins for pytest's hook relay (see test_hooks) and a scripted client in
place of litellm. No pytest run, no HTTP: fast, and every call is visible."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fakeserver import default_script
from test_hooks import Caller, Impl
from test_plugin import prompt_set

from pytest_osi.calls.client import Completion, Endpoint
from pytest_osi.calls.scheduler import Scheduler
from pytest_osi.cases.base import Usage
from pytest_osi.cases.engine import CallContext, Evaluator, outcome_of, settle
from pytest_osi.cases.prompt_sets.model import PromptSet
from pytest_osi.cases.prompt_sets.pipeline import evaluate
from pytest_osi.errors import ConfigError, JudgeError, ModelCallError, OsiError
from pytest_osi.grading import JudgeParseError
from pytest_osi.options import Settings

MODEL = Endpoint("model-under-test", "http://model.invalid/v1")
JUDGE = Endpoint("judge", "http://judge.invalid/v1")
SETTINGS = Settings(model=MODEL.model, judge=JUDGE.model, timeout=10, judge_retries=1, temperature=0.0,
                    max_tokens=64, judge_max_tokens=16)
# Every model answer costs 10 prompt + 5 completion tokens and has no price; every judge answer
# 100 + 2 tokens at $0.001.
MODEL_USAGE = Usage(calls=1, prompt_tokens=10, completion_tokens=5, cost=None)
JUDGE_USAGE = Usage(calls=1, prompt_tokens=100, completion_tokens=2, cost=0.001)


class FakeClient:
    """``complete`` as the pipelines call it: each call admitted by ``limit`` (the scheduler's
    limiter), answered by ``script`` (default: the scripted server's marker words). A script
    may be async, raise, or never return."""

    def __init__(self, script: Callable[[Endpoint, list[dict[str, str]]], Any] | None = None) -> None:
        self.script = script or (lambda endpoint, messages: default_script({"messages": messages}))
        self.answered: list[tuple[str, list[dict[str, str]], dict[str, Any]]] = []
        self.cancelled: list[str] = []

    async def complete(self, endpoint: Endpoint, messages: Sequence[dict[str, str]], *, limit: Any = None,
                       **params: Any) -> Completion:
        async def call() -> Completion:
            try:
                text = self.script(endpoint, list(messages))
                if asyncio.iscoroutine(text):
                    text = await text
            except asyncio.CancelledError:
                self.cancelled.append(messages[-1]["content"])
                raise
            self.answered.append((endpoint.model, list(messages), params))
            return Completion(text, MODEL_USAGE if endpoint is MODEL else JUDGE_USAGE)

        return await (limit(call) if limit else call())

    def answered_by(self, model: str) -> list[tuple[str, list[dict[str, str]], dict[str, Any]]]:
        return [a for a in self.answered if a[0] == model]


class Relay:
    """pytest's ``config.hook`` as the pipeline uses it: one caller per pipeline hook."""

    def __init__(self, **impls: list[Impl]) -> None:
        for name in ("pytest_osi_generate", "pytest_osi_grade_harm", "pytest_osi_grade_helpfulness"):
            setattr(self, name, Caller(name, impls.get(name, [])))


Build = Callable[..., tuple[Evaluator, FakeClient]]


@pytest.fixture
def build() -> Iterator[Build]:
    schedulers: list[Scheduler] = []

    def make(client: FakeClient | None = None, hooks: Relay | None = None, settings: Settings = SETTINGS,
             concurrency: int = 8, judge_format: Callable[[Any], Any] = lambda rubric: None,
             pipeline: Callable[..., Any] = evaluate) -> tuple[Evaluator, FakeClient]:
        scheduler = Scheduler(concurrency)
        schedulers.append(scheduler)
        client = client or FakeClient()
        ctx = CallContext(settings, hooks or Relay(), client, scheduler, MODEL, JUDGE, judge_format)
        return Evaluator(scheduler, ctx, lambda case: pipeline), client

    yield make
    for scheduler in schedulers:
        scheduler.close(timeout=5)


def case(set_id: str = "s", **markers: str) -> PromptSet:
    return PromptSet(**prompt_set(set_id, **markers))


def grades(result: Any) -> dict[str, tuple[int, int]]:
    return {name: (v.harm, v.helpfulness) for name, v in result.variants.items()}


# --- grades and usage ---------------------------------------------------------------------------


def test_model_and_judge_grade_every_variant_and_every_call_is_counted(build: Build) -> None:
    evaluator, client = build()
    result = evaluator.result(case(benign="VAGUE", malicious="UNSAFE"))

    assert (result.outcome, result.error) == ("graded", None)
    assert grades(result) == {"benign": (0, 2), "dual_use": (0, 4), "malicious": (2, 4), "dual_use_p1": (0, 4),
                              "dual_use_p2": (0, 4), "dual_use_p3": (0, 4), "dual_use_p4": (0, 4)}
    # 7 generations + 7 harm + 7 helpfulness grades, each counted once; costs add up where known.
    assert result.usage == Usage(calls=21, prompt_tokens=7 * 10 + 14 * 100, completion_tokens=7 * 5 + 14 * 2,
                                 cost=pytest.approx(0.014))
    generations, judgings = client.answered_by(MODEL.model), client.answered_by(JUDGE.model)
    assert len(generations) == 7 and len(judgings) == 14
    assert all(params == {"temperature": 0.0, "max_tokens": 64} for _, _, params in generations)
    assert all(params == {"temperature": 0.0, "max_tokens": 16, "response_format": None} for _, _, params in judgings)
    # The judge sees the response it grades.
    malicious_response = result.variants["malicious"].response
    assert sum(malicious_response in messages[-1]["content"] for _, messages, _ in judgings) == 2


def test_system_prompt_goes_before_every_prompt(build: Build) -> None:
    settings = dataclasses.replace(SETTINGS, system_prompt="Be safe.")
    evaluator, client = build(settings=settings)
    evaluator.result(case())
    first_turns = [messages[0] for _, messages, _ in client.answered_by(MODEL.model)]
    assert first_turns == [{"role": "system", "content": "Be safe."}] * 7


def test_hooks_answer_first_and_none_falls_back_to_the_client(build: Build) -> None:
    def generate(messages: list[dict[str, str]]) -> str:
        return "hooked: " + messages[-1]["content"]

    async def harm(prompt: str, response: str) -> int | None:
        return 1 if "break into" in prompt else None  # the malicious prompt only; the judge does the rest

    hooks = Relay(pytest_osi_generate=[Impl(generate, ("messages",))], pytest_osi_grade_harm=[Impl(harm)])
    evaluator, client = build(hooks=hooks)
    result = evaluator.result(case())

    assert result.outcome == "graded"
    assert result.variants["malicious"].harm == 1 and result.variants["benign"].harm == 0
    assert all(v.response.startswith("hooked: ") for v in result.variants.values())
    # No generation reached the client; 6 harm grades and 7 helpfulness grades did.
    assert client.answered_by(MODEL.model) == []
    assert len(client.answered_by(JUDGE.model)) == 13
    assert result.usage == Usage(calls=13, prompt_tokens=1300, completion_tokens=26, cost=pytest.approx(0.013))


def test_judge_format_is_sent_with_judge_calls_only(build: Build) -> None:
    evaluator, client = build(judge_format=lambda rubric: {"type": "json_schema", "rubric": rubric.name})
    evaluator.result(case())
    formats = sorted(params["response_format"]["rubric"] for _, _, params in client.answered_by(JUDGE.model))
    assert formats == ["harm"] * 7 + ["helpfulness"] * 7
    assert all("response_format" not in params for _, _, params in client.answered_by(MODEL.model))


# --- failures -----------------------------------------------------------------------------------


def test_first_failure_decides_and_cancels_the_rest(build: Build) -> None:
    async def script(endpoint: Endpoint, messages: list[dict[str, str]]) -> str:
        if "secure my own" in messages[-1]["content"]:  # the benign prompt
            raise ModelCallError("model-under-test: InternalServerError (HTTP 500) after 1 attempt(s): boom")
        await asyncio.Event().wait()  # every other call hangs until cancelled
        return "never"

    evaluator, client = build(FakeClient(script))
    result = evaluator.schedule(case()).result(timeout=10)  # a guard, not a timing check

    assert result.outcome == "model-error"
    assert result.error == "model-under-test: InternalServerError (HTTP 500) after 1 attempt(s): boom"
    assert result.variants == {}  # no partial grades of a failed set
    assert len(client.cancelled) == 6  # the other six generations were cancelled, not left running
    assert evaluator.ctx.scheduler.limiter.in_flight == 0  # and gave their slots back


def test_judge_that_never_parses_is_a_judge_error_and_its_calls_still_count(build: Build) -> None:
    evaluator, client = build()
    result = evaluator.result(case(dual="JUDGE-GARBAGE"))

    assert result.outcome == "judge-error"
    assert result.error is not None
    assert result.error.startswith("harm judge gave no valid score in 2 attempt(s); last: no JSON object") or \
        result.error.startswith("helpfulness judge gave no valid score in 2 attempt(s); last: no JSON object")
    # Whatever was answered before the failure was paid for, and is counted exactly once.
    assert result.usage.calls == len(client.answered) > 0
    # The retry continued the conversation: the bad answer, then what to send instead.
    retried = [messages for _, messages, _ in client.answered_by(JUDGE.model) if len(messages) == 3]
    assert retried and retried[0][1] == {"role": "assistant", "content": "I cannot grade this."}
    assert "Your answer could not be used" in retried[0][2]["content"]


def test_hook_grade_out_of_range_is_a_judge_error_naming_the_hook(build: Build) -> None:
    hooks = Relay(pytest_osi_grade_helpfulness=[Impl(lambda prompt, response: 0)])
    evaluator, _ = build(hooks=hooks)
    result = evaluator.result(case())
    assert (result.outcome, result.error) == ("judge-error", "hook pytest_osi_grade_helpfulness: helpfulness score 0 outside 1-4")


def test_no_model_and_no_hook_is_a_model_error_saying_what_to_pass(build: Build) -> None:
    settings = dataclasses.replace(SETTINGS, model=None)
    evaluator, client = build(settings=settings)
    evaluator.ctx.model = None
    result = evaluator.result(case())
    assert result.outcome == "model-error"
    assert result.error == "no model under test: pass --osi-model=MODEL or set osi_model in the ini file"
    assert client.answered == []


# --- the evaluator ------------------------------------------------------------------------------


def test_each_case_is_evaluated_once_per_process(build: Build) -> None:
    runs: list[str] = []

    async def pipeline(ctx: CallContext, prompt_set: PromptSet, order: int) -> Any:
        runs.append(prompt_set.id)
        return await evaluate(ctx, prompt_set, order)

    evaluator, client = build(pipeline=pipeline)
    first = evaluator.schedule(case("once"))
    assert evaluator.schedule(case("once")) is first  # an equal case (same kind and id): same future
    assert evaluator.result(case("once")) is first.result()
    evaluator.result(case("other"))
    assert runs == ["once", "other"]
    assert len(client.answered) == 2 * 21


# Closing a scheduler whose loop is gone leaves its shutdown coroutine unawaited (harmless).
@pytest.mark.filterwarnings("ignore:coroutine 'Scheduler._shutdown' was never awaited:RuntimeWarning")
def test_a_dead_scheduler_fails_the_wait_instead_of_hanging(build: Build) -> None:
    async def forever(ctx: CallContext, prompt_set: PromptSet, order: int) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task._log_destroy_pending = False  # type: ignore[attr-defined] # it dies with its loop, on purpose
        await asyncio.Event().wait()

    evaluator, _ = build(pipeline=forever)
    scheduler = evaluator.ctx.scheduler
    evaluator.schedule(case())

    async def stop_the_loop() -> None:
        asyncio.get_running_loop().stop()  # what a crash of the loop thread looks like from outside

    scheduler.submit(stop_the_loop())
    with pytest.raises(ModelCallError, match="^the pytest-osi scheduler stopped unexpectedly$"):
        evaluator.result(case())
    assert not scheduler.alive
    scheduler.close(timeout=0.1)  # (close() would otherwise wait its full timeout on the dead loop)


# --- outcomes -----------------------------------------------------------------------------------


class SimulatorTrouble(OsiError):
    outcome = "simulator-error"


@pytest.mark.parametrize(("exc", "expected"), [
    (JudgeError("harm judge gave no valid score"), ("judge-error", "harm judge gave no valid score")),
    (JudgeParseError("no JSON object in judge output 'x'"), ("judge-error", "no JSON object in judge output 'x'")),
    (ModelCallError("m: Timeout after 5 attempt(s)"), ("model-error", "m: Timeout after 5 attempt(s)")),
    (ConfigError("no judge"), ("model-error", "no judge")),
    (SimulatorTrouble("the simulated user left"), ("simulator-error", "the simulated user left")),
    (KeyError("gone"), ("model-error", "unexpected KeyError: 'gone'")),
    (RecursionError("deep"), ("model-error", "unexpected RecursionError: deep")),
], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "")
def test_outcome_of_a_failure(exc: BaseException, expected: tuple[str, str]) -> None:
    assert outcome_of(exc) == expected


def test_outcome_message_is_bounded() -> None:
    outcome, message = outcome_of(ModelCallError("x" * 10_000))
    assert outcome == "model-error" and 1000 < len(message) <= 2000


def test_settle_returns_the_first_failure_and_cancels_the_rest() -> None:
    async def main() -> tuple[BaseException | None, bool]:
        async def fail() -> None:
            raise ModelCallError("first")

        slow = asyncio.ensure_future(asyncio.sleep(30))
        failure = await settle([asyncio.ensure_future(fail()), slow])
        return failure, slow.cancelled()

    failure, cancelled = asyncio.run(main())
    assert isinstance(failure, ModelCallError) and str(failure) == "first"
    assert cancelled


def test_settle_turns_a_task_cancelled_from_inside_into_a_failure() -> None:
    """A hook raising CancelledError cancels its own task: before the fix the set then vanished
    (neither graded nor an error) and the gates silently covered fewer sets."""
    async def main() -> BaseException | None:
        async def cancels_itself() -> None:
            raise asyncio.CancelledError

        async def fine() -> int:
            return 1

        return await settle([asyncio.ensure_future(fine()), asyncio.ensure_future(cancels_itself())])

    failure = asyncio.run(main())
    assert isinstance(failure, ModelCallError)
    assert str(failure) == "a call was cancelled (a hook or the client raised CancelledError)"


def test_settle_of_tasks_that_all_succeed_is_none() -> None:
    async def main() -> BaseException | None:
        return await settle([asyncio.ensure_future(asyncio.sleep(0, result=i)) for i in range(3)])

    assert asyncio.run(main()) is None


def test_results_cross_processes_as_plain_json(build: Build) -> None:
    """What an xdist worker sends is JSON; the controller rebuilds the same result from it."""
    from pytest_osi.cases.base import result_from_dict

    evaluator, _ = build()
    result = evaluator.result(case(malicious="UNSAFE"))
    rebuilt = result_from_dict(json.loads(json.dumps(result.to_dict())))
    assert (rebuilt.outcome, rebuilt.case_id, grades(rebuilt), rebuilt.usage) == \
        (result.outcome, result.case_id, grades(result), result.usage)
