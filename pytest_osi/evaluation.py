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

import pytest

from pytest_osi.client import Completion, Endpoint, LLMClient, Message
from pytest_osi.data.models import PromptSet
from pytest_osi.errors import JudgeError, ModelCallError
from pytest_osi.grading import HARM, HELPFULNESS, Grader, Rubric
from pytest_osi.grading.judge import JudgeParseError, check_range
from pytest_osi.options import Settings
from pytest_osi.redaction import redact
from pytest_osi.results import PromptSetResult, Usage, VariantResult
from pytest_osi.scheduler import Scheduler

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
        self._hook_threads = concurrent.futures.ThreadPoolExecutor(settings.concurrency, thread_name_prefix="pytest-osi-hook")

    # -- public, called from pytest's thread -------------------------------------------------

    def schedule(self, prompt_set: PromptSet) -> concurrent.futures.Future[PromptSetResult]:
        with self._lock:
            future = self._futures.get(prompt_set.id)
            if future is None:
                future = self._scheduler.submit(self.evaluate(prompt_set, next(self._order)))
                self._futures[prompt_set.id] = future
            return future

    def result(self, prompt_set: PromptSet) -> PromptSetResult:
        return self.schedule(prompt_set).result()

    def close(self) -> None:
        self._hook_threads.shutdown(wait=False, cancel_futures=True)

    # -- on the scheduler's loop -------------------------------------------------------------

    async def evaluate(self, prompt_set: PromptSet, order: int = 0) -> PromptSetResult:
        tally = _Tally()
        tasks = [asyncio.ensure_future(self._variant(order, tally, name, prompt)) for name, prompt in prompt_set.prompts()]
        outcome, error = "graded", None
        try:
            # The first failure decides the set's outcome; the rest of its calls are cancelled.
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        except JudgeError as exc:
            outcome, error = "judge-error", redact(str(exc))
        except ModelCallError as exc:
            outcome, error = "model-error", redact(str(exc))
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
        hooked = await self._call_hook(self._hook.pytest_osi_generate, messages=messages,
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
        hooked = await self._call_hook(hook, prompt=prompt, response=response)
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

    async def _call_hook(self, hook: Any, **kwargs: Any) -> Any:
        if not hook.get_hookimpls():
            return None  # nothing registered: skip the thread hop entirely
        loop = asyncio.get_running_loop()
        try:
            value = await loop.run_in_executor(self._hook_threads, lambda: hook(**kwargs))
            if inspect.isawaitable(value):
                value = await value
        except (JudgeError, ModelCallError):
            raise
        except pytest.UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken hook is a failed call, reported per set
            raise ModelCallError(redact(f"hook {hook.name} raised {type(exc).__name__}: {exc}")) from None
        return value
