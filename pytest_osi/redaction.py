"""Keep secrets out of everything pytest-osi writes: reports, summaries, error messages.

Provider errors sometimes echo request details; API keys live in the environment. Anything we
print or persist passes through :func:`redact` first.
"""

from __future__ import annotations

import os
import re

# Environment variables whose value is masked. Covers litellm's provider keys (OPENAI_API_KEY,
# WATSONX_APIKEY, WATSONX_ZENAPIKEY, GIGACHAT_CREDENTIALS, VERTEXAI_CREDENTIALS, HF_TOKEN,
# AWS_SECRET_ACCESS_KEY ...) and ``..._KEY`` names such as LITELLM_MASTER_KEY. Deliberately no
# bare AUTH: AUTH_PROVIDER=google or GIT_AUTHOR_NAME would mask ordinary words in prompts and
# responses.
_SECRET_NAME = re.compile(r"API_?KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|_PAT$|PRIVATE_KEY|_KEY$", re.IGNORECASE)
# ...and only when the value looks like a secret: long enough, one unbroken word.
_SECRET_VALUE = re.compile(r"\S{8,}")
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"),
)
_extra_secrets: set[str] = set()

MASK = "***"


def register_secret(value: str | None) -> None:
    """Also mask ``value`` wherever it appears (e.g. a key given on the command line)."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def _environment_secrets() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and _SECRET_VALUE.fullmatch(v)]


def redact(text: str) -> str:
    for secret in sorted({*_environment_secrets(), *_extra_secrets}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text
