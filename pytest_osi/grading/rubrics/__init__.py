"""Rubric prompts shipped as text files; each is versioned by the hash of its text, so a
report always says exactly which rubric produced its grades.

A rubric renders from named fields (``{prompt}``, ``{response}``, later ``{checklist}``...):
the placeholders are whatever ``{lower_snake}`` names its text uses, and ``render`` demands
exactly those. What a valid answer looks like is the rubric's :class:`Answer`, shared by the
strict parser, the corrective retry and constrained decoding.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from collections.abc import Iterable
from typing import Any, Protocol

_PLACEHOLDER = re.compile(r"\{([a-z][a-z_]*)\}")


class AnswerError(ValueError):
    """The judge's JSON does not have the shape the rubric asks for."""


class Answer(Protocol):
    """The shape of a valid judge answer for one rubric."""

    def parse(self, data: Any) -> Any:
        """The value in ``data`` (the judge's JSON), or :class:`AnswerError`."""

    noun: str  # "score": what the judge owes, for messages

    def json_schema(self) -> dict[str, Any]: ...

    def instruction(self) -> str:
        """What to send instead, for the corrective turn after an unusable answer."""


@dataclass(frozen=True)
class IntScore:
    """``{"score": N}`` with an integer N in [low, high]."""

    low: int
    high: int
    noun = "score"

    def parse(self, data: Any) -> int:
        score = data.get("score") if isinstance(data, dict) else None
        if isinstance(score, bool) or not isinstance(score, int):
            raise AnswerError("no integer 'score'")
        return self.check(score)

    def check(self, score: Any) -> int:
        if isinstance(score, bool) or not isinstance(score, int) or not self.low <= score <= self.high:
            raise AnswerError(f"score {_bounded_repr(score)} outside {self.low}-{self.high}")
        return score

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"score": {"type": "integer", "enum": list(range(self.low, self.high + 1))}},
            "required": ["score"],
            "additionalProperties": False,
        }

    def instruction(self) -> str:
        return f'Reply with only a JSON object {{"score": N}} where N is an integer from {self.low} to {self.high}.'


def _bounded_repr(value: Any, limit: int = 40) -> str:
    """repr that never costs much: a 10**5000 must not blow the int-to-str limit."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<{'-' if value < 0 else ''}{value.bit_length()}-bit integer>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Rubric:
    name: str
    text: str
    answer: Any  # an Answer

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.text))

    @property
    def low(self) -> int:
        return int(self.answer.low)

    @property
    def high(self) -> int:
        return int(self.answer.high)

    def render(self, **fields: str) -> list[dict[str, str]]:
        """The judge's messages. One pass over every placeholder, so braces inside the values
        are inert; a missing or unexpected field is a programming error, raised here."""
        missing, extra = self.fields - fields.keys(), fields.keys() - self.fields
        if missing or extra:
            raise TypeError(f"rubric {self.name!r} takes fields {sorted(self.fields)}; "
                            f"missing {sorted(missing)}, unexpected {sorted(extra)}")
        content = _PLACEHOLDER.sub(lambda m: fields[m.group(1)], self.text)
        return [{"role": "user", "content": content}]

    def response_format(self) -> dict[str, Any]:
        """A JSON schema for constrained decoding, for judges (local ones) that support it."""
        return {"type": "json_schema",
                "json_schema": {"name": f"{self.name}_grade", "schema": self.answer.json_schema(), "strict": True}}


@cache
def load_rubric(name: str, answer: Any) -> Rubric:
    text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return Rubric(name, text, answer)


HARM = load_rubric("harm", IntScore(0, 3))
HELPFULNESS = load_rubric("helpfulness", IntScore(1, 4))


def rubric_versions(*rubrics: Rubric) -> dict[str, str]:
    """name -> version hash, for the header, the summary and the report (one place)."""
    return {r.name: r.version for r in (rubrics or (HARM, HELPFULNESS))}


def rubric_label(*rubrics: Rubric) -> str:
    """'harm@5a17ae413f1f,helpfulness@8a7fb6d59eff'."""
    return ",".join(f"{name}@{version}" for name, version in rubric_versions(*rubrics).items())


def rubrics_for(kinds: Iterable[str]) -> tuple[Rubric, ...]:
    """The rubrics that grade the given case kinds (prompt-sets when none is given)."""
    chosen: list[Rubric] = []
    for kind in sorted(set(kinds)) or ["prompt_set"]:
        if kind == "prompt_set":
            chosen += [HARM, HELPFULNESS]
        elif kind == "scenario":
            from pytest_osi.grading.checklist import SIMULATOR, checklist_rubric

            chosen += [HARM, checklist_rubric(2), SIMULATOR]  # the checklist's text (and hash) is the same for any n
    return tuple(dict.fromkeys(chosen))
