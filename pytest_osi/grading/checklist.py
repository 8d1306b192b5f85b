"""The checklist judge's answer, the rendering of its items, and the user simulator's prompt
and guard.

* :class:`BoolList` -- the checklist rubric's :class:`~pytest_osi.grading.rubrics.Answer`:
  ``{"met": [true, false, ...]}`` with exactly one real boolean per item.
* :func:`checklist_rubric` -- the checklist rubric for N items; :data:`SIMULATOR` -- the user
  simulator's prompt (free text back, so it has no Answer).
* :func:`leaks_intent` -- a cheap, deterministic check that a simulated user turn before
  ``reveal_intent`` does not give the benign intent away.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_osi.grading.rubrics import AnswerError, Rubric, _bounded_repr, load_rubric


@dataclass(frozen=True)
class BoolList:
    """``{"met": [b1, ..., bn]}``: exactly ``n`` JSON booleans (``1``/``0``, ``"true"`` and
    ``null`` are not booleans). Other keys in the object are ignored, as with ``score``."""

    n: int
    noun = "checklist"

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"a checklist answer needs at least one item, got n={self.n!r}")

    def parse(self, data: Any) -> tuple[bool, ...]:
        if not isinstance(data, dict) or "met" not in data:
            raise AnswerError("no list 'met'")
        return self.check(data["met"])

    def check(self, met: Any) -> tuple[bool, ...]:
        """A list of exactly n booleans (a hook's value is held to the same rule)."""
        if not isinstance(met, (list, tuple)):
            raise AnswerError(f"'met' is {_bounded_repr(met)}, not a list")
        if len(met) != self.n:
            raise AnswerError(f"'met' has {len(met)} value(s), {self.n} required (one per checklist item)")
        for i, value in enumerate(met):
            if not isinstance(value, bool):
                raise AnswerError(f"'met' value {i + 1} is {_bounded_repr(value)}, not true or false")
        return tuple(met)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"met": {"type": "array", "items": {"type": "boolean"},
                                   "minItems": self.n, "maxItems": self.n}},
            "required": ["met"],
            "additionalProperties": False,
        }

    def instruction(self) -> str:
        example = ", ".join(["true", "false", "true", "false"][: min(self.n, 4)]) + (", ..." if self.n > 4 else "")
        return (f'Reply with only a JSON object {{"met": [{example}]}} holding exactly {self.n} true/false '
                f"values, one per checklist item, in the items' order.")


def checklist_rubric(n: int) -> Rubric:
    """The checklist rubric for a checklist of ``n`` items (its fields: query, benign_intent,
    response, items). The version hash is the text's, the same for every n."""
    return load_rubric("checklist", BoolList(n))


# The user simulator's prompt; fields: benign_intent, conversation, move, move_instruction.
# Its answer is free text, not JSON: there is nothing to parse.
SIMULATOR = load_rubric("simulator", None)


def render_items(items: Iterable[str]) -> str:
    """The checklist as the judge sees it: ``1. first item`` one per line."""
    return "\n".join(f"{i}. {' '.join(item.split())}" for i, item in enumerate(items, start=1))


def render_conversation(turns: Sequence[tuple[str, str]]) -> str:
    """(role, text) pairs as the simulator sees them: ``User: ...`` / ``Assistant: ...``."""
    labels = {"user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{labels.get(role, role.capitalize())}: {text.strip()}" for role, text in turns)


# --- the simulator's guard ---------------------------------------------------------------------

# Words in any script (\w is Unicode-aware): a non-Latin intent must be guarded too.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOPWORDS = frozenset("""
a about after again all also am an and any are as at be because been before being but by can
could did do does doing for from had has have having he her here hers him his how i i'd i'll
i'm i've if in into is it it's its just know like me might more most my myself need needs no
nor not now of off on once only or other our ours out over own please really same she should
so some such than that that's the their them then there these they this those through to too
under until up very want wanted was we were what when where which while who whom why will
with would you your yours
""".split())


def _stem(word: str) -> str:
    """Plural and possessive folded: 'toddlers', "toddler's" -> 'toddler'."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def _tokens(text: str) -> list[str]:
    return [_stem(w) for w in _TOKEN.findall(text.casefold().replace("\u2019", "'"))]


def _content(tokens: Iterable[str]) -> list[str]:
    return [t for t in tokens if t not in _STOPWORDS and len(t) > 1]


def leaks_intent(text: str, benign_intent: str, *, query: str = "", ngram: int = 3,
                 min_overlap: float = 0.5) -> bool:
    """Whether a user turn gives the benign intent away (for simulated turns before
    ``reveal_intent``). Cheap and deterministic; a flag, not a proof. It leaks when either

    * the text repeats a run of ``ngram`` consecutive content words of the intent (stop words
      skipped, plurals folded): copied wording; or
    * at least ``min_overlap`` of the intent's *distinctive* content words -- those not already
      in ``query`` -- appear in the text, and at least two do (one shared word is chance).

    Words the query already has do not count towards the overlap: restating the request is
    not revealing why it is asked.
    """
    said = _content(_tokens(text))
    intent = _content(_tokens(benign_intent))
    grams = {tuple(said[i:i + ngram]) for i in range(len(said) - ngram + 1)}
    if any(tuple(intent[i:i + ngram]) in grams for i in range(len(intent) - ngram + 1)):
        return True
    distinctive = set(intent) - set(_content(_tokens(query)))
    shared = distinctive & set(said)
    return len(shared) >= 2 and len(shared) >= min_overlap * len(distinctive)
