"""The prompt-set: one underlying task asked with benign, dual-use and malicious intent.

Pydantic because this is an edge: rows come from user files and must be validated field by field.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic_core import PydanticCustomError

from pytest_osi.cases.base import mark_in_use
from pytest_osi.cases.prompt_sets.variants import VARIANTS, paraphrase_variant

# Characters that show nothing: format characters (zero-width space U+200B, word joiner U+2060,
# BOM U+FEFF, soft hyphen ...), spaces and separators, control characters, and the few letters
# and symbols that render blank (Hangul fillers, the blank Braille pattern).
_BLANK_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp", "Cc"})
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(text: str) -> str:
    """``text`` if it shows anything; a prompt of only invisible characters is empty."""
    for char in text:  # a real prompt returns at its first character
        if char not in _BLANK_CHARACTERS and unicodedata.category(char) not in _BLANK_CATEGORIES:
            return text
    found = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '')}".rstrip() for c in sorted(set(text))[:3])
    raise PydanticCustomError("invisible_only", "empty: only invisible characters ({found})", {"found": found})


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_visible)]


class Annotations(BaseModel):
    """Optional human notes from the dataset authors; carried into reports, never graded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benign_plausible_benign_use: str | None = None
    dual_use_plausible_benign_use: str | None = None
    dual_use_misuse_risk: str | None = None
    malicious_misuse_risk: str | None = None


class PromptSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = "prompt_set"

    id: NonEmpty
    harm_domain: NonEmpty
    task_type: NonEmpty
    underlying_task: str = ""
    benign: NonEmpty
    dual_use: NonEmpty
    malicious: NonEmpty
    dual_use_paraphrases: tuple[NonEmpty, ...] = ()
    annotations: Annotations = Annotations()

    def model_post_init(self, context: Any) -> None:
        # The explicit "prompt-sets exist in this process" flag the plugin checks before
        # looking for them among the collected items.
        mark_in_use(self.kind)

    def __str__(self) -> str:
        # So ``parametrize(..., ids=str)`` gives readable, stable test ids.
        return self.id

    def prompts(self) -> list[tuple[str, str]]:
        """(variant, prompt) for every prompt sent to the model: the triplet, then each paraphrase."""
        pairs = [(variant, getattr(self, variant)) for variant in VARIANTS]
        pairs += [(paraphrase_variant(i), p) for i, p in enumerate(self.dual_use_paraphrases)]
        return pairs

