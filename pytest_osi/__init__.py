"""pytest-osi: LLM safety regression testing as a pytest plugin.

OpenSafeIntent prompt-sets become pytest items; responses are graded by an LLM judge for harm
(0-3) and helpfulness (1-4); session-level gates turn the metrics into a CI verdict.

Exports resolve lazily, so that merely having the plugin installed costs pytest runs almost
nothing at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_osi.cases.prompt_sets import Annotations, PromptSet, load_prompt_sets, load_taxonomy
    from pytest_osi.errors import ConfigError, DatasetError, JudgeError, ModelCallError, OsiError
    from pytest_osi.cases.base import Usage
    from pytest_osi.cases.prompt_sets.result import PromptSetResult, VariantResult

__version__ = "0.1.0"

_EXPORTS = {
    "Annotations": "pytest_osi.cases.prompt_sets",
    "PromptSet": "pytest_osi.cases.prompt_sets",
    "load_prompt_sets": "pytest_osi.cases.prompt_sets",
    "load_taxonomy": "pytest_osi.cases.prompt_sets",
    "ConfigError": "pytest_osi.errors",
    "DatasetError": "pytest_osi.errors",
    "JudgeError": "pytest_osi.errors",
    "ModelCallError": "pytest_osi.errors",
    "OsiError": "pytest_osi.errors",
    "PromptSetResult": "pytest_osi.cases.prompt_sets.result",
    "Usage": "pytest_osi.cases.base",
    "VariantResult": "pytest_osi.cases.prompt_sets.result",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pytest_osi' has no attribute {name!r}")
