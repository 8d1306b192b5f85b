"""The prompt-set: one underlying task asked with benign, dual-use and malicious intent.

Pydantic because this is an edge: rows come from user files and must be validated field by field.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from pytest_osi.cases.base import mark_in_use
from pytest_osi.cases.fields import NonEmpty
from pytest_osi.cases.prompt_sets.variants import VARIANTS, paraphrase_variant



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

