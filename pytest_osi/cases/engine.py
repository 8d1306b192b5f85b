"""Running cases: the call context every kind's pipeline uses, and the evaluator that runs
each case once per process on the shared scheduler.

A kind's pipeline is ``async def evaluate(ctx, case, order) -> result``: it decides which calls
to make in what order, and makes them through :class:`CallContext`, which puts a pipeline
hook first (a conftest may replace generation or a grader) and falls back to the model or
judge through the call client -- both admitted by the same limiter, under the same timeout,
and counted in the case's usage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_osi.calls.client import Completion, CompletionClient, Endpoint, Limit, Message
from pytest_osi.calls.hooks import HookCaller, HookRunner
from pytest_osi.calls.scheduler import Scheduler
from pytest_osi.cases.base import Case, CaseResult, Outcome, Usage
from pytest_osi.errors import JudgeError, ModelCallError, OsiError
from pytest_osi.grading import Grader, Rubric
from pytest_osi.grading.judge import JudgeParseError, check_range
from pytest_osi.options import Settings
from pytest_osi.text import shown

# How long past the call timeout the loop may stand still before the waiting side gives up.
BLOCKED_GRACE = 2.0

# Stage order inside one case: grading a response finishes work, so it goes first.
GRADE, GENERATE = 0, 1

JudgeFormat = Callable[[Rubric], "dict[str, Any] | None"]


@dataclass
class Tally:
    """Usage of one case; only ever touched from the scheduler's loop thread."""

    usage: Usage = field(default_factory=Usage)

    def add(self, completion: Completion) -> str:
        usage = completion.usage
        if completion.replayed:
            usage = usage + Usage(replayed=usage.calls or 1, recorded_from=completion.recorded_at,
                                  recorded_to=completion.recorded_at)
        self.usage = self.usage + usage
        return completion.text


@dataclass
class CallContext:
    """Everything a pipeline needs to make its calls."""

    settings: Settings
    hooks: Any  # pytest's hook relay (config.hook): the pipeline hooks, by name
    client: CompletionClient
    scheduler: Scheduler
    model: Endpoint | None
    judge: Endpoint | None
    judge_format: JudgeFormat = lambda rubric: None  # constrained decoding, in the judge's dialect
    simulator: Endpoint | None = None  # the user simulator of clarification scenarios
    grader: Grader = field(init=False)
    hook_runner: HookRunner = field(init=False)
    _shared: dict[Any, asyncio.Task[Any]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.grader = Grader(self.settings.judge_retries)
        self.hook_runner = HookRunner(self.scheduler.limiter, self.settings.timeout)

    async def once(self, key: Any, factory: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[Any, bool]:
        """The result of work several cases share (a scenario's oracle and first turn, shared
        by its flows), run once per process; and whether this caller started it (and so
        counts its usage). Shielded: one case failing must not cancel its siblings' work."""
        task = self._shared.get(key)
        started = task is None
        if task is None:
            task = self._shared[key] = asyncio.ensure_future(factory())
        return await asyncio.shield(task), started

    def limit(self, order: int, stage: int) -> Limit:
        return lambda fn: self.scheduler.limiter.run((order, stage), fn)

    async def generate(self, order: int, tally: Tally, messages: list[Message]) -> str:
        """The model under test's response to ``messages`` (hook first, then the model)."""
        s = self.settings
        params = {"temperature": s.temperature, "max_tokens": s.max_tokens,
                  "api_base": self.model.api_base if self.model else None}
        hooked = await self.hook_runner.call(self.hooks.pytest_osi_generate, (order, GENERATE), messages=messages,
                                             model=self.model.model if self.model else None, params=params)
        if hooked is not None:
            if not isinstance(hooked, str):
                raise ModelCallError(f"pytest_osi_generate returned {type(hooked).__name__}, expected str")
            return hooked
        if self.model is None:
            raise ModelCallError("no model under test: pass --osi-model=MODEL or set osi_model in the ini file")
        completion = await self.client.complete(self.model, messages, limit=self.limit(order, GENERATE),
                                                temperature=s.temperature, max_tokens=s.max_tokens)
        return tally.add(completion)

    async def grade(self, order: int, tally: Tally, rubric: Rubric, hook: HookCaller,
                    hook_args: Mapping[str, Any], fields: Mapping[str, str]) -> Any:
        """``rubric``'s value for a response: from ``hook`` if one answers (held to the
        rubric's answer shape), else from the judge with strict parsing and corrective retries."""
        hooked = await self.hook_runner.call(hook, (order, GRADE), **hook_args)
        if hooked is not None:
            try:
                return check_range(hooked, rubric)
            except JudgeParseError as exc:
                raise JudgeError(f"hook {hook.name}: {exc}") from None
        judge = self.judge
        if judge is None:
            raise ModelCallError("no judge: pass --osi-judge=MODEL or set osi_judge in the ini file")
        response_format = self.judge_format(rubric)

        async def ask(messages: list[Message]) -> str:
            completion = await self.client.complete(
                judge, messages, limit=self.limit(order, GRADE),
                temperature=0.0, max_tokens=self.settings.judge_max_tokens, response_format=response_format)
            return tally.add(completion)

        return await self.grader.grade(rubric, rubric.render(**fields), ask)


Evaluate = Callable[[CallContext, Any, int], Coroutine[Any, Any, CaseResult]]


def outcome_of(exc: BaseException) -> tuple[Outcome, str]:
    """The outcome a failed case gets. Anything unexpected is a model-error with its type,
    so the case is counted (never silently dropped from the metrics)."""
    if isinstance(exc, JudgeError):
        return "judge-error", shown(str(exc), 2000)
    if isinstance(exc, OsiError):
        return getattr(exc, "outcome", "model-error"), shown(str(exc), 2000)
    if isinstance(exc, JudgeParseError):
        return "judge-error", shown(str(exc), 2000)
    return "model-error", shown(f"unexpected {type(exc).__name__}: {exc}", 2000)


class Evaluator:
    """Runs each case once per process: ``schedule`` is idempotent and returns the same future."""

    def __init__(self, scheduler: Scheduler, ctx: CallContext, pipelines: Callable[[Case], Evaluate]) -> None:
        self._scheduler = scheduler
        self.ctx = ctx
        self._pipeline_for = pipelines
        self._futures: dict[tuple[type, str], concurrent.futures.Future[CaseResult]] = {}
        self._lock = threading.Lock()
        self._order = itertools.count()

    # -- called from pytest's thread ---------------------------------------------------------

    def schedule(self, case: Case) -> concurrent.futures.Future[CaseResult]:
        key = (type(case), case.id)
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                evaluate = self._pipeline_for(case)
                future = self._scheduler.submit(evaluate(self.ctx, case, next(self._order)))
                self._futures[key] = future
            return future

    def result(self, case: Case) -> CaseResult:
        future = self.schedule(case)
        # Wait in slices, watching the loop: should its thread die, or something block it past
        # any timeout, fail loudly instead of hanging.
        grace = self.ctx.settings.timeout + BLOCKED_GRACE
        while True:
            try:
                return future.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                if not self._scheduler.alive:
                    raise ModelCallError("the pytest-osi scheduler stopped unexpectedly") from None
                stalled = self._scheduler.stalled_for()
                if stalled > grace:
                    raise ModelCallError(
                        f"the pytest-osi event loop has been blocked for {stalled:.0f}s (more than the "
                        f"{self.ctx.settings.timeout:g}s timeout): an `async def` hook is probably calling blocking "
                        "code such as time.sleep or requests; make it a plain `def` (it then runs in a thread) "
                        "or await non-blocking calls") from None


async def settle(tasks: list[asyncio.Task[Any]]) -> BaseException | None:
    """Wait for ``tasks``; the first failure decides, the rest are cancelled. Returns that
    failure (None when all succeeded). A task cancelled from inside (a hook raising
    CancelledError) is a failure too: a case must never vanish."""
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # retrieves every exception
    for task in tasks:
        if task.cancelled():
            if task not in pending:
                return ModelCallError("a call was cancelled (a hook or the client raised CancelledError)")
            continue
        if task.exception() is not None:
            return task.exception()
    return None
