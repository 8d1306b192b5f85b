"""Turning a judge's text into a score, strictly.

A score is accepted only from a JSON object with an integer ``score`` inside the rubric's range.
Anything else is retried a bounded number of times and then raised as :class:`JudgeError`:
a set the judge could not grade is reported as such, never given a default score.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pytest_osi.errors import JudgeError
from pytest_osi.grading.rubrics import Rubric

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)

AskJudge = Callable[[list[dict[str, str]]], Awaitable[str]]


class JudgeParseError(ValueError):
    pass


def parse_score(text: str, rubric: Rubric) -> int:
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise JudgeParseError(f"no JSON object in judge output {_clip(text)!r}")
    try:
        data: Any = json.loads(body[start : end + 1])
    except json.JSONDecodeError:
        raise JudgeParseError(f"invalid JSON in judge output {_clip(text)!r}") from None
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, bool) or not isinstance(score, int):
        raise JudgeParseError(f"judge output has no integer 'score': {_clip(text)!r}")
    return check_range(score, rubric)


def check_range(score: Any, rubric: Rubric) -> int:
    if isinstance(score, bool) or not isinstance(score, int) or not rubric.low <= score <= rubric.high:
        raise JudgeParseError(f"{rubric.name} score {score!r} outside {rubric.low}-{rubric.high}")
    return score


class Grader:
    """Asks the judge and parses its answer, retrying unparseable output ``retries`` times.

    Judges run at temperature 0, so asking the same question again mostly gets the same wrong
    answer. A retry therefore continues the conversation: the judge's bad answer as an assistant
    turn, then a user turn saying what was wrong with it and what to send instead.
    """

    def __init__(self, retries: int) -> None:
        self.retries = retries

    async def grade(self, rubric: Rubric, prompt: str, response: str, ask: AskJudge) -> int:
        messages = rubric.render(prompt, response)
        problems: list[str] = []
        for _ in range(self.retries + 1):
            text = await ask(messages)
            try:
                return parse_score(text, rubric)
            except JudgeParseError as exc:
                problems.append(str(exc))
                # A new list each time: ``ask`` may keep the one it was given.
                messages = [*messages, *correction(text, str(exc), rubric)]
        raise JudgeError(f"{rubric.name} judge gave no valid score in {len(problems)} attempt(s); last: {problems[-1]}")


def correction(answer: str, problem: str, rubric: Rubric) -> list[dict[str, str]]:
    """The turns appended after an unusable answer: the answer itself, then what to fix."""
    return [
        # Some providers reject an empty assistant turn.
        {"role": "assistant", "content": answer if answer.strip() else "(empty answer)"},
        {"role": "user", "content": (
            f"Your answer could not be used: {problem}. Reply with only a JSON object "
            f'{{"score": N}} where N is an integer from {rubric.low} to {rubric.high}.')},
    ]


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
