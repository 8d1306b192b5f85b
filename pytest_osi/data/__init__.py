"""Data formats: the typed prompt-set model and the loaders for every file layout we read.

Exports resolve lazily: importing the plugin must not pay for pydantic until data is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_osi.data.variants import VARIANTS

if TYPE_CHECKING:
    from pytest_osi.data.loaders import load_prompt_sets, load_taxonomy
    from pytest_osi.data.models import Annotations, PromptSet

__all__ = ["Annotations", "PromptSet", "VARIANTS", "load_prompt_sets", "load_taxonomy"]

_LAZY = {"Annotations": "models", "PromptSet": "models", "load_prompt_sets": "loaders", "load_taxonomy": "loaders"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pytest_osi.data.{_LAZY[name]}"), name)
    raise AttributeError(name)
