"""Keep secrets out of everything pytest-osi writes: reports, summaries, error messages.

Provider errors sometimes echo request details; API keys live in the environment. Anything we
print or persist passes through :func:`redact` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

# Environment variables whose value is masked. Covers litellm's provider keys (OPENAI_API_KEY,
# WATSONX_APIKEY, WATSONX_ZENAPIKEY, GIGACHAT_CREDENTIALS, VERTEXAI_CREDENTIALS, HF_TOKEN,
# AWS_SECRET_ACCESS_KEY ...) and ``..._KEY`` names such as LITELLM_MASTER_KEY. Deliberately no
# bare AUTH: AUTH_PROVIDER=google or GIT_AUTHOR_NAME would mask ordinary words in prompts and
# responses.
_SECRET_NAME = re.compile(r"API_?KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|_PAT$|PRIVATE_KEY|_KEY$", re.IGNORECASE)
# ...and only when the value looks like a secret: long enough, one unbroken word.
_SECRET_VALUE = re.compile(r"\S{8,}")
# What ends a URL's authority, or the token it sits in (quotes: JSON, Python reprs).
_NA = r"""\s/?#"'<>`"""
# Each pattern masks what it matches, except the named group ``keep`` (the text before the secret).
_PATTERNS = (
    re.compile(r"(?i)(?P<keep>bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(?P<keep>(?:api[_-]?key|authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"),
    # "Authorization: Basic dXNlcjpwYXNz", "Authorization: Token abc": what follows the scheme word.
    re.compile(r"(?i)(?P<keep>authorization[\"']?\s*[:=]\s*[\"']?(?:basic|token)\s+)[^\s\"',}]{4,}"),
    # URL userinfo, the scheme and host left readable: http://user:pass@host, https://token@host.
    # Greedy up to the last '@' of the authority: a password may hold an unescaped '@'.
    re.compile(rf"(?i)(?P<keep>\b[a-z][a-z0-9+.-]{{0,30}}://)[^{_NA}]{{1,512}}(?=@)"),
    # ...and without a scheme, as a malformed api base is written: admin:PW@127.0.0.1:1/v1. Only
    # the user:password form (a bare name@host is an e-mail address), at the start of a token.
    # Bounded repeats keep this linear on long unbroken text.
    re.compile(rf"""(?i)(?:(?<=[\s"'(<\[=,;])|^)(?!mailto:)[^{_NA}:@=,;(\[]{{1,128}}:[^{_NA}]{{1,512}}(?=@[\w\[])"""),
)
# Secrets registered by the run under way (keys given for an endpoint...). Scoped, never
# process-wide: a key registered by one run (or test) must not live on in every later redact().
_scopes: list[set[str]] = []

MASK = "***"


@contextmanager
def secret_scope() -> Iterator[set[str]]:
    """The secrets registered while this is open are masked until it closes."""
    scope: set[str] = set()
    _scopes.append(scope)
    try:
        yield scope
    finally:
        # By identity: list.remove compares sets by value, and two scopes holding the same
        # secrets (two empty ones, say) are equal: it would close the wrong one.
        for index in range(len(_scopes) - 1, -1, -1):
            if _scopes[index] is scope:
                del _scopes[index]
                break


def register_secret(value: str | None) -> None:
    """Also mask ``value`` wherever it appears, for the rest of the innermost open scope.
    Outside any scope there is nothing to keep it in: pass it to ``redact(extra=...)``."""
    if value and len(value) >= 6 and _scopes:
        _scopes[-1].add(value)


def registered_secrets() -> set[str]:
    return set().union(*_scopes) if _scopes else set()


def _environment_secrets() -> list[str]:
    return [v for k, v in _environment() if _SECRET_NAME.search(k) and _SECRET_VALUE.fullmatch(v)]


def _environment() -> list[tuple[str, str]]:
    """os.environ's items, read safely from any thread: pytest sets and deletes
    PYTEST_CURRENT_TEST in the main thread while the scheduler's thread redacts, and a key
    deleted mid-iteration raises KeyError. Retry; the last resort is a copy of the raw data."""
    for _ in range(5):
        try:
            return list(os.environ.items())
        except (KeyError, RuntimeError):
            continue
    raw = dict(getattr(os.environ, "_data", {}))  # a dict copy of a dict: atomic under the GIL
    return [(os.fsdecode(k), os.fsdecode(v)) for k, v in raw.items()]


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret masked: secret-looking environment values, secrets
    registered by the run, ``extra`` (e.g. the key of the endpoint an error is about), and
    key-shaped patterns (Bearer tokens, ``sk-...``, ``api_key=...``, URL userinfo).

    Redact whole text, *then* shorten it (:func:`pytest_osi.text.shown`): a secret cut in half
    no longer matches its mask."""
    return redactor(extra)(text)


def redactor(extra: Iterable[str | None] = ()) -> Callable[[str], str]:
    """:func:`redact` with the known secrets looked up once, for masking many strings."""
    known = {*_environment_secrets(), *registered_secrets(), *(e for e in extra if e and len(e) >= 6)}
    secrets = sorted(known, key=len, reverse=True)  # a longer secret before any secret inside it

    def mask(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(_masked, text)
        return text

    return mask


def _masked(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep")
    return (keep or "") + MASK
