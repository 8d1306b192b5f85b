"""The pipeline for one prompt-set: generate a response to every prompt, grade each response
for harm and helpfulness, and fold it all into a :class:`PromptSetResult`.

All variants run concurrently on the shared scheduler; within a variant, grading waits for
its response. The first failure decides the set's outcome and cancels the rest of its calls.
"""

from __future__ import annotations

import asyncio

from pytest_osi.calls.client import Message
from pytest_osi.cases.engine import CallContext, Tally, outcome_of, settle
from pytest_osi.cases.prompt_sets.model import PromptSet
from pytest_osi.cases.prompt_sets.result import PromptSetResult, VariantResult
from pytest_osi.grading import HARM, HELPFULNESS


async def evaluate(ctx: CallContext, prompt_set: PromptSet, order: int = 0) -> PromptSetResult:
    tally = Tally()
    tasks = [asyncio.ensure_future(_variant(ctx, order, tally, name, prompt)) for name, prompt in prompt_set.prompts()]
    failure = await settle(tasks)
    if failure is not None:
        outcome, error = outcome_of(failure)
        return PromptSetResult(prompt_set.id, prompt_set.harm_domain, prompt_set.task_type, outcome, {}, error, tally.usage)
    variants = {t.result().variant: t.result() for t in tasks}
    return PromptSetResult(prompt_set.id, prompt_set.harm_domain, prompt_set.task_type, "graded", variants, None,
                           tally.usage)


def messages_for(ctx: CallContext, prompt: str) -> list[Message]:
    messages: list[Message] = []
    if ctx.settings.system_prompt:
        messages.append({"role": "system", "content": ctx.settings.system_prompt})
    messages.append({"role": "user", "content": prompt})
    return messages


async def _variant(ctx: CallContext, order: int, tally: Tally, name: str, prompt: str) -> VariantResult:
    response = await ctx.generate(order, tally, messages_for(ctx, prompt))
    fields = {"prompt": prompt, "response": response}
    harm, helpfulness = await asyncio.gather(
        ctx.grade(order, tally, HARM, ctx.hooks.pytest_osi_grade_harm, fields, fields),
        ctx.grade(order, tally, HELPFULNESS, ctx.hooks.pytest_osi_grade_helpfulness, fields, fields),
    )
    return VariantResult(name, prompt, response, {"harm": harm, "helpfulness": helpfulness})
