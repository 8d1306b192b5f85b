"""The litellm client: one async completion call with our own retry loop.

litellm is imported lazily (importing it costs seconds and, by default, reaches for the
internet and reads ``.env``), only when a run actually calls a model. Its own retries are
switched off (``max_retries=0``; ``num_retries`` needs tenacity, which litellm does not
install) so that backoff, jitter and Retry-After are ours and observable.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from pytest_osi.errors import ModelCallError
from pytest_osi.redaction import redact
from pytest_osi.text import clip
from pytest_osi.cases.base import Usage

Message = dict[str, str]

# The key sent to servers that need none (local, self-hosted): never the user's real key.
PLACEHOLDER_API_KEY = "sk-no-key-required"
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_import_lock = threading.Lock()
_litellm: ModuleType | None = None


def import_litellm() -> ModuleType:
    """Import litellm once, offline and without touching the user's environment from ``.env``."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            # Use the bundled price map instead of fetching one at import.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            # Never download tokenizers/catalogs at run time (model names containing
            # "llama-3" otherwise stall for 20+ s offline).
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import dotenv

            # litellm calls dotenv.load_dotenv() at import; a test run must not pick up
            # whatever .env sits in the working directory.
            original = dotenv.load_dotenv
            dotenv.load_dotenv = lambda *args, **kwargs: False
            try:
                import litellm
            finally:
                dotenv.load_dotenv = original
            litellm.suppress_debug_info = True
            litellm.drop_params = True
            _litellm = litellm
    return _litellm


def imported_litellm_nowait() -> ModuleType | None:
    """litellm if its import has completed, without waiting for an import under way."""
    return _litellm


def imported_litellm() -> ModuleType | None:
    """litellm if it has been imported completely, else None (waits for an import under way)."""
    with _import_lock:
        return _litellm


@dataclass(frozen=True)
class Endpoint:
    """Where a model lives. ``api_key`` is never shown in repr (and so never in a traceback)."""

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)

    def litellm_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model}
        if self.api_base:
            kwargs["api_base"] = self.api_base
            # A bare name against a custom base URL means "an OpenAI-compatible server".
            if "/" not in self.model:
                kwargs["model"] = f"openai/{self.model}"
            if self.api_key is None and kwargs["model"].startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = PLACEHOLDER_API_KEY
        if self.api_key:
            kwargs["api_key"] = self.api_key
        return kwargs


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries, the first included
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 120.0  # seconds per attempt


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    provider_model: str | None = None  # the model id the provider reported (response.model)
    replayed: bool = False  # answered from the call store, not by the provider
    recorded_at: str | None = None  # when the stored answer was recorded (UTC ISO), if stored


Limit = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


class CompletionClient(Protocol):
    """What the pipelines call: the litellm client, or the call store wrapping it."""

    async def complete(self, endpoint: Endpoint, messages: Sequence[Message], *,
                       limit: Limit | None = None, **params: Any) -> Completion: ...


class LLMClient:
    def __init__(
        self,
        policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self._sleep = sleep

    async def complete(
        self,
        endpoint: Endpoint,
        messages: Sequence[Message],
        *,
        limit: Limit | None = None,
        **params: Any,
    ) -> Completion:
        """One chat completion, retried on transient failures. ``limit`` admits each attempt
        (the scheduler's concurrency limiter); backoff sleeps happen outside it. The timeout
        is a deadline on the whole attempt from admission, not only litellm's wait between
        bytes: a server that trickles its body, or never finishes it, cannot hold a run."""
        # Never import on the loop: the import takes seconds (longer on a busy machine) and
        # would stall every other call, and trip the blocked-loop watchdog.
        litellm = imported_litellm_nowait()
        if litellm is None:
            litellm = await asyncio.to_thread(import_litellm)
        kwargs = {**endpoint.litellm_kwargs(), "messages": list(messages), "timeout": self.policy.timeout,
                  "max_retries": 0, **{k: v for k, v in params.items() if v is not None}}
        for attempt in range(1, self.policy.attempts + 1):
            try:
                call = lambda: _within(litellm.acompletion(**kwargs), self.policy.timeout)  # noqa: E731
                response = await (limit(call) if limit else call())
                return _completion(response, endpoint)
            except Exception as exc:  # noqa: BLE001 - classified right below
                if not is_retryable(exc) or attempt == self.policy.attempts:
                    raise ModelCallError(describe_failure(endpoint, exc, attempt)) from None
                await self._sleep(self.backoff(attempt, retry_after(exc)))
        raise AssertionError("unreachable")

    def backoff(self, attempt: int, server_hint: float | None) -> float:
        """Exponential backoff with full jitter. A server's Retry-After wins when it asks for
        longer, up to ``max_delay`` (a server asking for minutes must not stall a CI run)."""
        ceiling = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)
        if server_hint is not None:
            delay = max(delay, min(server_hint, self.policy.max_delay))
        return delay


async def _within(call: Awaitable[Any], seconds: float) -> Any:
    """``call``, cut off at a deadline of ``seconds`` from now. ``asyncio.timeout`` rather than
    ``wait_for``: no extra task per call (thousands of calls per run)."""
    async with asyncio.timeout(seconds):
        return await call


def _completion(response: Any, endpoint: Endpoint) -> Completion:
    try:
        text = response.choices[0].message.content
    except (AttributeError, IndexError) as exc:
        raise ModelCallError(f"{endpoint.model}: malformed response: {exc}") from None
    usage = getattr(response, "usage", None)
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
    provider_model = getattr(response, "model", None)
    return Completion(
        text=text or "",
        usage=Usage(
            calls=1,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost=float(cost) if isinstance(cost, (int, float)) else None,
        ),
        provider_model=provider_model if isinstance(provider_model, str) else None,
    )


def status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx, timeouts and connection failures are transient; 4xx like 400/401/404 are not."""
    code = status_code(exc)
    if code is not None:
        return code in _RETRY_STATUS
    name = type(exc).__name__
    return any(word in name for word in ("Timeout", "Connection", "ServiceUnavailable", "RateLimit", "InternalServer"))


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or an HTTP date)."""
    headers: Any = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
    except AttributeError:
        return None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # neither seconds nor an HTTP date: fall back to our own backoff
    return max(0.0, parsed.timestamp() - time.time())


def describe_failure(endpoint: Endpoint, exc: BaseException, attempts: int) -> str:
    code = status_code(exc)
    # Redact before shortening (a key cut in half no longer matches its mask); providers
    # sometimes echo a rejected key back, so this endpoint's own key is masked too.
    detail = clip(redact(" ".join(str(exc).split()), extra=(endpoint.api_key,)), 300)
    status = f" (HTTP {code})" if code else ""
    return redact(f"{endpoint.model}: {type(exc).__name__}{status} after {attempts} attempt(s): {detail}",
                  extra=(endpoint.api_key,))
