"""pytest-osi: LLM safety regression testing as a pytest plugin.

OpenSafeIntent prompt-sets become pytest items; responses are graded by an LLM judge for harm
(0-3) and helpfulness (1-4); session-level gates turn the metrics into a CI verdict.
"""

from pytest_osi.data import Annotations, PromptSet, load_prompt_sets, load_taxonomy
from pytest_osi.errors import ConfigError, DatasetError, JudgeError, ModelCallError, OsiError
from pytest_osi.results import PromptSetResult, Usage, VariantResult

__version__ = "0.1.0"

__all__ = [
    "Annotations",
    "ConfigError",
    "DatasetError",
    "JudgeError",
    "ModelCallError",
    "OsiError",
    "PromptSet",
    "PromptSetResult",
    "Usage",
    "VariantResult",
    "load_prompt_sets",
    "load_taxonomy",
]
