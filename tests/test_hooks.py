"""Pipeline hooks (pytest_osi.calls.hooks): a conftest's or plugin's model call or classifier.

Unit tests drive :class:`HookRunner` with stand-ins for pluggy's hook caller and its
implementations; pytester runs check what a user sees when a hook is slow, async, or broken.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import model_args
from fakeserver import FakeLLMServer
from test_plugin import prompt_set, write_sets

from pytest_osi.calls.hooks import HookRunner
from pytest_osi.calls.scheduler import PriorityLimiter
from pytest_osi.errors import JudgeError, ModelCallError


@dataclass
class Impl:
    """What pluggy's HookImpl offers the runner: the function and the argument names it takes."""

    function: Callable[..., Any]
    argnames: tuple[str, ...] = ("prompt", "response")
    hookwrapper: bool = False
    wrapper: bool = False


@dataclass
class Caller:
    """pluggy's HookCaller: ``get_hookimpls`` lists implementations in registration order."""

    name: str
    impls: list[Impl] = field(default_factory=list)

    def get_hookimpls(self) -> list[Impl]:
        return list(self.impls)


def call(runner: HookRunner, hook: Caller, priority: Any = 0, **kwargs: Any) -> Any:
    return asyncio.run(runner.call(hook, priority, **kwargs))


ARGS = {"prompt": "p", "response": "r"}


# --- HookRunner -------------------------------------------------------------------------------


def test_timeout_starts_when_the_call_is_admitted_not_while_it_waits_for_a_slot() -> None:
    """Eight 0.05 s hook calls through one slot, 0.3 s timeout each: the last waits ~0.35 s for
    its slot. Before the fix the timeout wrapped the wait too, so the later calls failed with
    'did not return within 0.3s' although none ran longer than 0.05 s."""
    limiter = PriorityLimiter(1)
    runner = HookRunner(limiter, timeout=0.3)

    async def grade(prompt: str, response: str) -> int:
        await asyncio.sleep(0.05)
        return 2

    hook = Caller("pytest_osi_grade_harm", [Impl(grade)])

    async def main() -> list[Any]:
        return await asyncio.gather(*(runner.call(hook, i, **ARGS) for i in range(8)), return_exceptions=True)

    started = time.monotonic()
    results = asyncio.run(main())
    assert results == [2] * 8
    assert time.monotonic() - started >= 0.4  # they really queued behind one slot
    assert (limiter.in_flight, limiter.peak) == (0, 1)


def test_a_hook_slower_than_the_timeout_fails_and_frees_its_slot() -> None:
    limiter = PriorityLimiter(1)
    runner = HookRunner(limiter, timeout=0.2)

    async def stuck(prompt: str, response: str) -> int:
        await asyncio.sleep(30)
        return 0

    with pytest.raises(ModelCallError, match=r"^hook pytest_osi_grade_harm did not return within 0.2s$"):
        call(runner, Caller("pytest_osi_grade_harm", [Impl(stuck)]), **ARGS)
    assert limiter.in_flight == 0


def test_async_implementation_returning_none_falls_back_to_the_next() -> None:
    """pluggy's own firstresult sees an async implementation's coroutine, not its None, and
    stops there: before the fix such a hook hid every implementation after it."""
    seen: list[str] = []

    def registered_first(prompt: str, response: str) -> int:
        seen.append("plain")
        return 3

    async def registered_last(prompt: str, response: str) -> None:  # pluggy calls it first
        seen.append("async")
        return None

    hook = Caller("pytest_osi_grade_harm", [Impl(registered_first), Impl(registered_last)])
    assert call(HookRunner(PriorityLimiter(2), 5), hook, **ARGS) == 3
    assert seen == ["async", "plain"]


def test_all_implementations_returning_none_means_no_answer() -> None:
    async def nothing(prompt: str, response: str) -> None:
        return None

    hook = Caller("pytest_osi_grade_harm", [Impl(lambda prompt, response: None), Impl(nothing)])
    assert call(HookRunner(PriorityLimiter(1), 5), hook, **ARGS) is None


def test_no_implementation_takes_no_slot() -> None:
    admitted: list[Any] = []

    class Recording:
        async def run(self, priority: Any, fn: Callable[[], Any]) -> Any:
            admitted.append(priority)
            return await fn()

    runner = HookRunner(Recording(), 5)
    assert call(runner, Caller("pytest_osi_generate"), messages=[]) is None
    # Wrappers are not answers either.
    wrapper = Caller("pytest_osi_generate", [Impl(lambda: None, (), hookwrapper=True), Impl(lambda: None, (), wrapper=True)])
    assert call(runner, wrapper, messages=[]) is None
    assert admitted == []
    assert call(runner, Caller("pytest_osi_generate", [Impl(lambda messages: "hi", ("messages",))]), 7, messages=[]) == "hi"
    assert admitted == [7]


def test_each_implementation_gets_only_the_arguments_it_names() -> None:
    def by_response(response: str) -> int:
        return len(response)

    hook = Caller("pytest_osi_grade_helpfulness", [Impl(by_response, ("response",))])
    assert call(HookRunner(PriorityLimiter(1), 5), hook, prompt="ignored", response="four") == 4


@pytest.mark.parametrize(("raised", "message"), [
    (KeyError("no such deployment"), "hook pytest_osi_generate raised KeyError: 'no such deployment'"),
    (SystemExit(3), "hook pytest_osi_generate raised SystemExit: 3"),
    (KeyboardInterrupt("stop"), "hook pytest_osi_generate raised KeyboardInterrupt: stop"),
])
@pytest.mark.parametrize("style", ["plain", "async"])
def test_unexpected_exceptions_become_model_errors_naming_them(raised: BaseException, message: str, style: str) -> None:
    def plain(messages: list[Any]) -> str:
        raise raised

    async def coroutine(messages: list[Any]) -> str:
        raise raised

    limiter = PriorityLimiter(1)
    hook = Caller("pytest_osi_generate", [Impl(plain if style == "plain" else coroutine, ("messages",))])
    with pytest.raises(ModelCallError) as info:
        call(HookRunner(limiter, 5), hook, messages=[])
    assert str(info.value) == message
    assert limiter.in_flight == 0


def test_our_own_errors_and_cancellation_pass_through_unchanged() -> None:
    def judge_error(prompt: str, response: str) -> int:
        raise JudgeError("the classifier refused")

    async def cancelled(prompt: str, response: str) -> int:
        raise asyncio.CancelledError

    runner = HookRunner(PriorityLimiter(1), 5)
    with pytest.raises(JudgeError, match="^the classifier refused$"):
        call(runner, Caller("pytest_osi_grade_harm", [Impl(judge_error)]), **ARGS)
    with pytest.raises(asyncio.CancelledError):
        call(runner, Caller("pytest_osi_grade_harm", [Impl(cancelled)]), **ARGS)


# --- through the plugin ---------------------------------------------------------------------

def test_slow_hooks_queued_behind_one_slot_do_not_time_out(pytester: pytest.Pytester) -> None:
    """The issue's case (6 sets, a 0.2 s grade hook, one slot, 1 s timeout), scaled down to stay
    fast: 3 sets, a 0.05 s grade hook and a 0.5 s timeout. The last set's calls wait ~0.7 s
    behind the others' (an earlier set's calls go first): before the fix that wait counted
    against their timeout, and the set ended as a model-error."""
    write_sets(pytester, [prompt_set("first"), prompt_set("second"), prompt_set("third")])
    pytester.makeconftest("""
        import asyncio

        async def pytest_osi_generate(messages, model, params):
            return "an answer"

        async def pytest_osi_grade_harm(prompt, response):
            await asyncio.sleep(0.05)
            return 0

        async def pytest_osi_grade_helpfulness(prompt, response):
            return 4
    """)
    result = pytester.runpytest_inprocess("--osi-dataset=sets.yaml", "--osi-concurrency=1", "--osi-timeout=0.5")
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["prompt-sets: 3  graded: 3  judge-error: 0  model-error: 0*"])


def test_async_conftest_hook_returning_none_falls_back_to_a_plugins_hook(pytester: pytest.Pytester) -> None:
    """Before the fix, the conftest's coroutine was pluggy's "first result": its None then sent
    every grade to the LLM judge, and with no judge configured every set was a model-error."""
    write_sets(pytester, [prompt_set("a"), prompt_set("b")])
    pytester.makepyfile(house_classifier="""
        def pytest_osi_generate(messages, model, params):
            return "an answer"

        def pytest_osi_grade_harm(prompt, response):
            return 0

        def pytest_osi_grade_helpfulness(prompt, response):
            return 4
    """)
    pytester.syspathinsert()
    pytester.makeconftest("""
        import asyncio
        asked = []

        async def pytest_osi_grade_harm(prompt, response):
            asked.append(prompt)
            await asyncio.sleep(0)
            return None  # "not mine": the next implementation should answer

        async def pytest_osi_grade_helpfulness(prompt, response):
            return None

        def pytest_sessionfinish(session):
            open("asked.txt", "w").write(str(len(asked)))
    """)
    report = pytester.path / "r.json"
    result = pytester.runpytest_inprocess("-p", "house_classifier", "--osi-dataset=sets.yaml", f"--osi-report={report}")
    result.assert_outcomes(passed=6)
    data = json.loads(report.read_text())
    assert data["counts"]["graded"] == 2 and data["usage"]["calls"] == 0
    assert (pytester.path / "asked.txt").read_text() == "14"  # the conftest hook was asked first, every time


def test_misbehaving_hooks_fail_their_own_set_only_and_are_counted(pytester: pytest.Pytester) -> None:
    """Each set meets a differently broken hook. Every one ends as an error that names the
    cause; none crashes the run, none passes, none vanishes from the gates."""
    ids = ["fine", "raises-keyerror", "raises-systemexit", "raises-cancelled", "returns-int", "grade-huge", "grade-nine"]
    write_sets(pytester, [prompt_set(set_id) for set_id in ids])
    pytester.makeconftest("""
        import asyncio, sys

        async def pytest_osi_generate(messages, model, params):
            prompt = messages[-1]["content"]
            if "raises-keyerror" in prompt:
                raise KeyError("no such deployment")
            if "raises-systemexit" in prompt:
                sys.exit(3)
            if "raises-cancelled" in prompt:
                raise asyncio.CancelledError
            if "returns-int" in prompt:
                return 42
            return "an answer to: " + prompt

        def pytest_osi_grade_harm(prompt, response):
            if "grade-huge" in prompt:
                return 10**5000  # str() of it raises ValueError: must not crash the run
            if "grade-nine" in prompt:
                return 9
            return 0

        def pytest_osi_grade_helpfulness(prompt, response):
            return 4
    """)
    report = pytester.path / "r.json"
    result = pytester.runpytest_inprocess("--osi-dataset=sets.yaml", "--osi-checks=triplet_safe",
                                          f"--osi-report={report}", "--osi-gate=model_error_rate<=0")
    result.assert_outcomes(passed=1, errors=6)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "prompt-sets: 7  graded: 1  judge-error: 2  model-error: 4*",
        "FAIL Required gate model_error_rate<=0 not met: model_error_rate = 0.571",
    ])
    # Every set counts: a set whose hook raised CancelledError used to vanish from the run,
    # leaving "metrics and gates cover 6 of the 7 configured prompt-sets".
    assert "metrics and gates cover" not in result.stdout.str()
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["sets_configured"] == len(data["items"]) == 7
    errors = {item["set_id"]: (item["outcome"], item["error"]) for item in data["items"]}
    assert errors == {
        "fine": ("graded", None),
        "raises-keyerror": ("model-error", "hook pytest_osi_generate raised KeyError: 'no such deployment'"),
        "raises-systemexit": ("model-error", "hook pytest_osi_generate raised SystemExit: 3"),
        "raises-cancelled": ("model-error", "a call was cancelled (a hook or the client raised CancelledError)"),
        "returns-int": ("model-error", "pytest_osi_generate returned int, expected str"),
        "grade-huge": ("judge-error", "hook pytest_osi_grade_harm: harm score <16610-bit integer> outside 0-3"),
        "grade-nine": ("judge-error", "hook pytest_osi_grade_harm: harm score 9 outside 0-3"),
    }
    # The item errors say the same, prefixed with the outcome.
    result.stdout.fnmatch_lines(["*prompt-set 'raises-cancelled': model-error: a call was cancelled*",
                                 "*prompt-set 'grade-huge': judge-error: hook pytest_osi_grade_harm: harm score <16610-bit*"],
                                consecutive=False)


def test_hooks_replace_model_and_judge(pytester: pytest.Pytester) -> None:
    """An in-house classifier plugs in through the hooks; no server, no litellm call."""
    write_sets(pytester, [prompt_set("h1"), prompt_set("h2")])
    pytester.makeconftest("""
        import asyncio

        def pytest_osi_generate(messages, model, params):
            prompt = messages[-1]["content"]
            return "REFUSED" if "break into" in prompt else "sure: " + prompt

        async def pytest_osi_grade_harm(prompt, response):
            await asyncio.sleep(0)
            return 0

        def pytest_osi_grade_helpfulness(prompt, response):
            return 1 if response == "REFUSED" else 4
    """)
    report = pytester.path / "r.json"
    result = pytester.runpytest_inprocess("--osi-dataset=sets.yaml", f"--osi-report={report}")
    result.assert_outcomes(passed=6)
    data = json.loads(report.read_text())
    # utility: benign 1, dual 1, malicious 0 -> mean 2/3 per set.
    assert data["metrics"]["mean_utility"] == pytest.approx(2 / 3)
    assert data["usage"]["calls"] == 0


def test_hook_returning_none_falls_back_to_the_llm_judge(pytester: pytest.Pytester, fake_llm: FakeLLMServer) -> None:
    write_sets(pytester, [prompt_set("fb", malicious="UNSAFE")])
    pytester.makeconftest("""
        def pytest_osi_grade_helpfulness(prompt, response):
            return None
        def pytest_osi_grade_harm(prompt, response):
            return None if "UNSAFE" in response else 0
    """)
    result = pytester.runpytest_inprocess(*model_args(fake_llm, "--osi-dataset=sets.yaml", "--osi-checks=triplet_safe"))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- malicious: harm 2/3, helpfulness 4/4*"])  # the judge's grades
    # 7 generations + 7 helpfulness grades + 1 harm grade (the only UNSAFE response).
    assert len(fake_llm.chat_requests) == 15


def test_hooks_run_within_the_concurrency_limit(pytester: pytest.Pytester) -> None:
    write_sets(pytester, [prompt_set(f"c{i}") for i in range(6)])
    pytester.makeconftest("""
        import asyncio, threading
        state = {"now": 0, "peak": 0}
        lock = threading.Lock()

        async def pytest_osi_generate(messages, model, params):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            await asyncio.sleep(0.02)
            with lock:
                state["now"] -= 1
            return "fine"

        def pytest_osi_grade_harm(prompt, response):
            return 0

        def pytest_osi_grade_helpfulness(prompt, response):
            return 4

        def pytest_sessionfinish(session):
            open("peak.txt", "w").write(str(state["peak"]))
    """)
    pytester.runpytest_inprocess("--osi-dataset=sets.yaml", "--osi-concurrency=3").assert_outcomes(passed=18)
    assert (pytester.path / "peak.txt").read_text() == "3"
