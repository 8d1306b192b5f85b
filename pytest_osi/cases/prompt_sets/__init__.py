"""The prompt-set case kind (OpenSafeIntent): one underlying task asked with benign, dual-use
and malicious intent, plus paraphrases of the dual-use prompt.

Exports resolve lazily: importing the plugin must not pay for pydantic until data is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_osi.cases.prompt_sets.variants import VARIANTS

if TYPE_CHECKING:
    from pytest_osi.cases.prompt_sets.loader import load_prompt_sets, load_taxonomy
    from pytest_osi.cases.prompt_sets.model import Annotations, PromptSet

__all__ = ["Annotations", "PromptSet", "VARIANTS", "load_prompt_sets", "load_taxonomy"]

_LAZY = {"Annotations": "model", "PromptSet": "model", "load_prompt_sets": "loader", "load_taxonomy": "loader"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pytest_osi.cases.prompt_sets.{_LAZY[name]}"), name)
    raise AttributeError(name)
