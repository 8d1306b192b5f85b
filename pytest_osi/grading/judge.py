"""Turning a judge's text into a value, strictly, with corrective retries -- for every rubric.

A value is accepted only from a JSON object of the shape the rubric's :class:`Answer` asks for
(an in-range integer ``score``; later one boolean per checklist item). Anything else is asked
again a bounded number of times and then raised as :class:`JudgeError`: a case the judge
could not grade is reported as such, never given a default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pytest_osi.errors import JudgeError
from pytest_osi.grading.rubrics import AnswerError, Rubric
from pytest_osi.text import shown

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)

Message = dict[str, str]
AskJudge = Callable[[list[Message]], Awaitable[str]]


class JudgeParseError(ValueError):
    pass


def _excerpt(text: str) -> str:
    return shown(text, 120, one_line=True)


def parse_answer(text: str, rubric: Rubric) -> Any:
    """The value of the judge's ``text`` under ``rubric``, or :class:`JudgeParseError`."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise JudgeParseError(f"no JSON object in judge output {_excerpt(text)!r}")
    try:
        data: Any = json.loads(body[start : end + 1])
    except (json.JSONDecodeError, RecursionError, ValueError):
        raise JudgeParseError(f"invalid JSON in judge output {_excerpt(text)!r}") from None
    try:
        return rubric.answer.parse(data)
    except AnswerError as exc:
        raise JudgeParseError(f"{rubric.name} {exc} in judge output {_excerpt(text)!r}") from None


def parse_score(text: str, rubric: Rubric) -> int:
    return int(parse_answer(text, rubric))


def check_range(value: Any, rubric: Rubric) -> Any:
    """A hook's value, held to the rubric's answer shape (a score's range, a checklist's
    booleans): the check a judge's parsed answer gets, for a value that skipped the parser."""
    try:
        return rubric.answer.check(value)
    except AnswerError as exc:
        raise JudgeParseError(f"{rubric.name} {exc}") from None


class Grader:
    """Asks the judge and parses its answer, retrying unparseable output ``retries`` times.

    Judges run at temperature 0, so asking the same question again mostly gets the same wrong
    answer. A retry therefore continues the conversation: the judge's bad answer as an assistant
    turn, then a user turn saying what was wrong with it and what to send instead.
    """

    def __init__(self, retries: int) -> None:
        self.retries = retries

    async def grade(self, rubric: Rubric, messages: list[Message], ask: AskJudge) -> Any:
        problems: list[str] = []
        for _ in range(self.retries + 1):
            text = await ask(messages)
            try:
                return parse_answer(text, rubric)
            except JudgeParseError as exc:
                problems.append(str(exc))
                # A new list each time: ``ask`` may keep the one it was given.
                messages = [*messages, *correction(text, str(exc), rubric)]
        raise JudgeError(f"{rubric.name} judge gave no valid {rubric.answer.noun} in {len(problems)} attempt(s); last: {problems[-1]}")


def correction(answer: str, problem: str, rubric: Rubric) -> list[Message]:
    """The turns appended after an unusable answer: the answer itself, then what to fix."""
    return [
        # Some providers reject an empty assistant turn.
        {"role": "assistant", "content": answer if answer.strip() else "(empty answer)"},
        {"role": "user", "content": f"Your answer could not be used: {problem}. {rubric.answer.instruction()}"},
    ]
