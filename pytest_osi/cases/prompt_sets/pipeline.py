"""The pipeline for one prompt-set: generate a response to every prompt, grade each response for
harm and helpfulness, and fold it all into a :class:`PromptSetResult`.

Every call goes through a pluggy hook first (a conftest may replace generation or either
grader) and falls back to litellm through the shared scheduler. A prompt-set is evaluated at
most once per process: ``schedule`` is idempotent and returns the same future.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_osi.calls.client import Completion, Endpoint, LLMClient, Message
from pytest_osi.cases.prompt_sets.model import PromptSet
from pytest_osi.errors import JudgeError, ModelCallError
from pytest_osi.grading import HARM, HELPFULNESS, Grader, Rubric
from pytest_osi.grading.judge import JudgeParseError, check_range
from pytest_osi.options import Settings
from pytest_osi.redaction import redact
from pytest_osi.cases.prompt_sets.result import PromptSetResult, Usage, VariantResult
from pytest_osi.calls.scheduler import Scheduler

# Stage order inside one prompt-set: grading a response finishes work, so it goes first.
_GRADE, _GENERATE = 0, 1


@dataclass
class _Tally:
    """Usage of one prompt-set; only ever touched from the scheduler's loop thread."""

    usage: Usage = field(default_factory=Usage)

    def add(self, completion: Completion) -> str:
        self.usage = self.usage + completion.usage
        return completion.text


class Evaluator:
    def __init__(self, settings: Settings, hook: Any, scheduler: Scheduler, client: LLMClient,
                 model: Endpoint | None, judge: Endpoint | None,
                 judge_format: Callable[[Rubric], dict[str, Any] | None] = lambda rubric: None) -> None:
        self.settings = settings
        self._hook = hook
        self._scheduler = scheduler
        self._client = client
        self._model = model
        self._judge = judge
        self._judge_format = judge_format  # constrained-decoding request, in the judge's dialect
        self._grader = Grader(settings.judge_retries)
        self._futures: dict[str, concurrent.futures.Future[PromptSetResult]] = {}
        self._lock = threading.Lock()
        self._order = itertools.count()

    # -- public, called from pytest's thread -------------------------------------------------

    def schedule(self, prompt_set: PromptSet) -> concurrent.futures.Future[PromptSetResult]:
        with self._lock:
            future = self._futures.get(prompt_set.id)
            if future is None:
                future = self._scheduler.submit(self.evaluate(prompt_set, next(self._order)))
                self._futures[prompt_set.id] = future
            return future

    def result(self, prompt_set: PromptSet) -> PromptSetResult:
        future = self.schedule(prompt_set)
        # Wait in slices: should the loop thread ever die, fail loudly instead of hanging.
        while True:
            try:
                return future.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if not self._scheduler.alive:
                    raise ModelCallError("the pytest-osi scheduler stopped unexpectedly") from None

    # -- on the scheduler's loop -------------------------------------------------------------

    async def evaluate(self, prompt_set: PromptSet, order: int = 0) -> PromptSetResult:
        tally = _Tally()
        tasks = [asyncio.ensure_future(self._variant(order, tally, name, prompt)) for name, prompt in prompt_set.prompts()]
        try:
            # The first failure decides the set's outcome; the rest of its calls are cancelled.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # retrieves every exception
        failures = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
        outcome, error = _outcome(failures[0]) if failures else ("graded", None)
        variants = {t.result().variant: t.result() for t in tasks if outcome == "graded"}
        return PromptSetResult(prompt_set.id, prompt_set.harm_domain, prompt_set.task_type,
                               outcome, variants, error, tally.usage)  # type: ignore[arg-type]

    async def _variant(self, order: int, tally: _Tally, name: str, prompt: str) -> VariantResult:
        response = await self._generate(order, tally, prompt)
        harm, helpfulness = await asyncio.gather(
            self._grade(order, tally, HARM, prompt, response, self._hook.pytest_osi_grade_harm),
            self._grade(order, tally, HELPFULNESS, prompt, response, self._hook.pytest_osi_grade_helpfulness),
        )
        return VariantResult(name, prompt, response, harm, helpfulness)

    async def _generate(self, order: int, tally: _Tally, prompt: str) -> str:
        messages: list[Message] = []
        if self.settings.system_prompt:
            messages.append({"role": "system", "content": self.settings.system_prompt})
        messages.append({"role": "user", "content": prompt})
        params = {"temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens,
                  "api_base": self._model.api_base if self._model else None}
        hooked = await self._call_hook(order, _GENERATE, self._hook.pytest_osi_generate, messages=messages,
                                       model=self._model.model if self._model else None, params=params)
        if hooked is not None:
            if not isinstance(hooked, str):
                raise ModelCallError(f"pytest_osi_generate returned {type(hooked).__name__}, expected str")
            return hooked
        if self._model is None:
            raise ModelCallError("no model under test: pass --osi-model=MODEL or set osi_model in the ini file")
        completion = await self._client.complete(
            self._model, messages, limit=self._limit(order, _GENERATE),
            temperature=self.settings.temperature, max_tokens=self.settings.max_tokens)
        return tally.add(completion)

    async def _grade(self, order: int, tally: _Tally, rubric: Rubric, prompt: str, response: str,
                     hook: Any) -> int:
        hooked = await self._call_hook(order, _GRADE, hook, prompt=prompt, response=response)
        if hooked is not None:
            try:
                return check_range(hooked, rubric)
            except JudgeParseError as exc:
                raise JudgeError(f"hook {hook.name}: {exc}") from None
        judge = self._judge
        if judge is None:
            raise ModelCallError("no judge: pass --osi-judge=MODEL or set osi_judge in the ini file")
        response_format = self._judge_format(rubric)

        async def ask(messages: list[Message]) -> str:
            completion = await self._client.complete(
                judge, messages, limit=self._limit(order, _GRADE),
                temperature=0.0, max_tokens=self.settings.judge_max_tokens, response_format=response_format)
            return tally.add(completion)

        return await self._grader.grade(rubric, prompt, response, ask)

    def _limit(self, order: int, stage: int) -> Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]:
        return lambda fn: self._scheduler.limiter.run((order, stage), fn)

    async def _call_hook(self, order: int, stage: int, hook: Any, **kwargs: Any) -> Any:
        """Call a pipeline hook like a model call: within the concurrency limit and the timeout.
        Plain implementations run in a daemon thread, so a stuck one neither stalls the loop
        nor keeps the process alive after Ctrl-C."""
        if not hook.get_hookimpls():
            return None  # nothing registered: skip the thread hop entirely

        async def call() -> Any:
            try:
                value = await _in_daemon_thread(lambda: hook(**kwargs))
                return await value if inspect.isawaitable(value) else value
            except (JudgeError, ModelCallError, asyncio.CancelledError):
                raise
            except BaseException as exc:  # noqa: BLE001 - even SystemExit: a broken hook fails its set
                # (Converted here, inside the task: a SystemExit escaping a task stops the loop.)
                raise ModelCallError(redact(f"hook {hook.name} raised {type(exc).__name__}: {exc}")) from None

        try:
            return await asyncio.wait_for(self._scheduler.limiter.run((order, stage), call), self.settings.timeout)
        except asyncio.TimeoutError:
            raise ModelCallError(f"hook {hook.name} did not return within {self.settings.timeout:g}s") from None


def _outcome(exc: BaseException) -> tuple[str, str]:
    """The outcome a failed prompt-set gets. Anything unexpected is a model-error with its
    type, so the set is counted (never silently dropped from the metrics)."""
    if isinstance(exc, JudgeError):
        return "judge-error", redact(str(exc))
    if isinstance(exc, ModelCallError):
        return "model-error", redact(str(exc))
    return "model-error", redact(f"unexpected {type(exc).__name__}: {exc}")


async def _in_daemon_thread(fn: Callable[[], Any]) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(value)

    def target() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            value, error = None, exc
        loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name="pytest-osi-hook", daemon=True).start()
    return await future
