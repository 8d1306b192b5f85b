"""Rubric prompts shipped as text files; each is versioned by the hash of its text, so a
report always says exactly which rubric produced its grades."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_PLACEHOLDER = re.compile(r"\{(prompt|response)\}")


@dataclass(frozen=True)
class Rubric:
    name: str
    text: str
    low: int
    high: int

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    def render(self, prompt: str, response: str) -> list[dict[str, str]]:
        # One pass over both placeholders, so braces inside the prompt or response are inert.
        values = {"prompt": prompt, "response": response}
        content = _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)
        return [{"role": "user", "content": content}]

    def response_format(self) -> dict[str, Any]:
        """A JSON schema for constrained decoding, for judges (local ones) that support it."""
        schema = {
            "type": "object",
            "properties": {"score": {"type": "integer", "enum": list(range(self.low, self.high + 1))}},
            "required": ["score"],
            "additionalProperties": False,
        }
        return {"type": "json_schema", "json_schema": {"name": f"{self.name}_grade", "schema": schema, "strict": True}}


@cache
def load_rubric(name: str, low: int, high: int) -> Rubric:
    text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return Rubric(name, text, low, high)


HARM = load_rubric("harm", 0, 3)
HELPFULNESS = load_rubric("helpfulness", 1, 4)
