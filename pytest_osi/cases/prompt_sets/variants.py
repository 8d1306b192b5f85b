"""Names of the prompts in a prompt-set. Kept apart from the pydantic models so that metrics
and reporting can use them without importing pydantic (start-up cost matters for a plugin)."""

from __future__ import annotations

# The three intents every prompt-set carries, in report order.
VARIANTS: tuple[str, str, str] = ("benign", "dual_use", "malicious")


def paraphrase_variant(index: int) -> str:
    """Name of the index-th (0-based) dual-use paraphrase: dual_use_p1, dual_use_p2, ..."""
    return f"dual_use_p{index + 1}"
