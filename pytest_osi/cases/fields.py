"""Field types and validation messages shared by every case kind's data model (pydantic: only
imported once data is loaded)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

from pytest_osi.formats import brief

# Characters that show nothing: format characters (zero-width space U+200B, word joiner U+2060,
# BOM U+FEFF, soft hyphen ...), spaces and separators, control characters, and the few letters
# and symbols that render blank (Hangul fillers, the blank Braille pattern).
_BLANK_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp", "Cc"})
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(text: str) -> str:
    """``text`` if it shows anything; a text of only invisible characters is empty."""
    for char in text:  # a real prompt returns at its first character
        if char not in _BLANK_CHARACTERS and unicodedata.category(char) not in _BLANK_CATEGORIES:
            return text
    found = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '')}".rstrip() for c in sorted(set(text))[:3])
    raise PydanticCustomError("invisible_only", "empty: only invisible characters ({found})", {"found": found})


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_visible)]


def describe_error(error: Mapping[str, Any]) -> str | None:
    """The message for a pydantic error every kind words the same way, or None."""
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind == "string_too_short":
        return "empty"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    if kind == "invisible_only":
        return str(error["msg"])
    return None


def describe_other(error: Mapping[str, Any]) -> str:
    return f"{error['msg']} (got {brief(error.get('input'))})"
