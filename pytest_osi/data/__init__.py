"""Data formats: the typed prompt-set model and the loaders for every file layout we read."""

from pytest_osi.data.loaders import load_prompt_sets, load_taxonomy
from pytest_osi.data.models import Annotations, PromptSet, VARIANTS

__all__ = ["Annotations", "PromptSet", "VARIANTS", "load_prompt_sets", "load_taxonomy"]
