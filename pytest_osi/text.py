"""Text that leaves the process: secrets masked first, then shortened.

Masking must come first: shortening first can cut a key in half, and half a key no longer
matches its mask (a key straddling the cut would escape).
"""

from __future__ import annotations

from pytest_osi.redaction import redact


def clip(text: str, limit: int = 160, *, one_line: bool = False) -> str:
    """``text`` stripped (and folded onto one line if asked), at most ``limit`` characters."""
    text = " ".join(text.split()) if one_line else text.strip()
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def shown(text: str, limit: int = 160, *, one_line: bool = False) -> str:
    """``text`` as it may be shown or written: redacted, then clipped."""
    return clip(redact(text), limit, one_line=one_line)
