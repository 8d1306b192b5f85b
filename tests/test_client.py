"""Unit tests for pytest_osi.calls.client, pytest_osi.calls.scheduler and pytest_osi.redaction.

Model calls go through litellm's real HTTP path to the scripted server in fakeserver.py
(fixture ``fake_llm``). Backoff delays are observed through an injected ``sleep``, never timed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import time
from collections.abc import Coroutine
from typing import Any

import pytest
from fakeserver import FakeLLMServer

import pytest_osi.calls.client
from pytest_osi.calls.client import Endpoint, LLMClient, RetryPolicy, import_litellm, retry_after
from pytest_osi.errors import ModelCallError
from pytest_osi.redaction import MASK, redact, register_secret, registered_secrets, secret_scope
from pytest_osi.cases.base import Usage
from pytest_osi.calls.scheduler import PriorityLimiter, Scheduler

POLICY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=2)
MODEL = "model-under-test"
HELLO = [{"role": "user", "content": "hello there"}]


async def close_http_clients() -> None:
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a fresh loop, closing litellm's cached HTTP clients before the loop goes."""
    import_litellm()

    async def main() -> Any:
        try:
            return await coro
        finally:
            await close_http_clients()

    return asyncio.run(main())


class Sleeps(list):
    """The injected ``sleep``: records each backoff delay instead of waiting."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def complete(server: FakeLLMServer, sleeps: Sleeps, policy: RetryPolicy = POLICY, api_key: str | None = None,
             **params: Any) -> Any:
    client = LLMClient(policy, sleep=sleeps)
    return run(client.complete(Endpoint(MODEL, server.api_base, api_key=api_key), HELLO, **params))


def calls(server: FakeLLMServer) -> int:
    return len(server.chat_requests)


# --- completions and retries ---------------------------------------------------------------------


def test_completion_returns_text_and_usage(fake_llm: FakeLLMServer, sleeps: Sleeps) -> None:
    result = complete(fake_llm, sleeps, api_key="osi-key-for-auth-123", max_tokens=7, temperature=None)

    assert result.text == "Here is a careful, helpful answer: hello there"
    # The fake server counts words as tokens: prompt "hello there" = 2, the answer = 8.
    assert result.usage == Usage(calls=1, prompt_tokens=2, completion_tokens=8, cost=None)
    (request,) = fake_llm.chat_requests
    assert request.body["model"] == MODEL  # bare name + api_base -> OpenAI-compatible, prefix stripped
    assert request.body["messages"] == HELLO
    assert request.body["max_tokens"] == 7
    assert "temperature" not in request.body  # None parameters are not sent
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["authorization"] == "Bearer osi-key-for-auth-123"
    assert sleeps == []


@pytest.mark.parametrize("hint, expected", [(2, 2.0), (60, 10.0)], ids=["honoured", "capped-by-max_delay"])
def test_429_retry_after_sets_the_delay(fake_llm: FakeLLMServer, sleeps: Sleeps, hint: int, expected: float) -> None:
    # Jitter ceiling 0.001 s, so any longer delay can only come from the server's Retry-After.
    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=10, timeout=2)
    fake_llm.fail_next(1, 429, retry_after=hint)

    assert complete(fake_llm, sleeps, policy).text.startswith("Here is")
    assert calls(fake_llm) == 2
    assert sleeps == [expected]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_errors_are_retried(fake_llm: FakeLLMServer, sleeps: Sleeps, status: int) -> None:
    fake_llm.fail_next(2, status)
    assert complete(fake_llm, sleeps).text.startswith("Here is")
    assert calls(fake_llm) == 3
    assert len(sleeps) == 2


def test_persistent_failure_raises_naming_model_status_and_attempts(fake_llm: FakeLLMServer, sleeps: Sleeps) -> None:
    fake_llm.fail_next(5, 503)
    with pytest.raises(ModelCallError) as info:
        complete(fake_llm, sleeps)
    message = str(info.value)
    assert message.startswith(f"{MODEL}: ")
    assert "(HTTP 503)" in message and "after 3 attempt(s)" in message
    assert "Injected error 503" in message  # the provider's own words
    assert calls(fake_llm) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(fake_llm: FakeLLMServer, sleeps: Sleeps, status: int) -> None:
    fake_llm.fail_next(3, status)
    with pytest.raises(ModelCallError, match=rf"^{MODEL}: .*\(HTTP {status}\) after 1 attempt\(s\)"):
        complete(fake_llm, sleeps)
    assert calls(fake_llm) == 1
    assert sleeps == []


@pytest.mark.parametrize("hangs", [1, 2], ids=["retried", "raised"])
def test_timeouts_are_retried_then_raised(fake_llm: FakeLLMServer, sleeps: Sleeps, hangs: int) -> None:
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, timeout=0.5)
    fake_llm.hang_next(hangs, 1.5)
    if hangs == 1:
        assert complete(fake_llm, sleeps, policy).text.startswith("Here is")
    else:
        with pytest.raises(ModelCallError, match=rf"^{MODEL}: Timeout.* after 2 attempt\(s\)"):
            complete(fake_llm, sleeps, policy)
    assert calls(fake_llm) == 2
    assert len(sleeps) == 1


class _NoRetryAfterDate(Exception):
    status_code = 429
    litellm_response_headers = {"retry-after": "soon"}  # neither seconds nor an HTTP date


def test_unparseable_retry_after_is_still_retried(fake_llm: FakeLLMServer, sleeps: Sleeps) -> None:
    attempts: list[int] = []

    async def limit(call: Any) -> Any:  # the first attempt is throttled before reaching the server
        attempts.append(1)
        if len(attempts) == 1:
            raise _NoRetryAfterDate("rate limited")
        return await call()

    client = LLMClient(POLICY, sleep=sleeps)
    result = run(client.complete(Endpoint(MODEL, fake_llm.api_base), HELLO, limit=limit))
    assert result.text.startswith("Here is") and len(attempts) == 2


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_ceiling_grows_exponentially_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[float, float]] = []
    monkeypatch.setattr(pytest_osi.calls.client.random, "uniform", lambda a, b: drawn.append((a, b)) or b)
    client = LLMClient(POLICY)  # base 0.01, max 0.05

    delays = [client.backoff(attempt, None) for attempt in range(1, 7)]

    # Full jitter: uniform(0, min(max_delay, base * 2 ** (attempt - 1))).
    assert drawn == [(0, 0.01), (0, 0.02), (0, 0.04), (0, 0.05), (0, 0.05), (0, 0.05)]
    assert delays == [0.01, 0.02, 0.04, 0.05, 0.05, 0.05]


def test_backoff_is_jittered_within_the_ceiling() -> None:
    client = LLMClient(POLICY)
    for attempt, ceiling in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (8, 0.05)]:
        samples = [client.backoff(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in samples)
        assert len(set(samples)) > 1  # jittered, not a fixed delay


def test_retry_loop_sleeps_growing_backoff(fake_llm: FakeLLMServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytest_osi.calls.client.random, "uniform", lambda a, b: b)  # always the ceiling
    fake_llm.fail_next(4, 500)
    policy = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, timeout=2)

    assert complete(fake_llm, sleeps, policy).text.startswith("Here is")
    assert sleeps == [0.01, 0.02, 0.04, 0.05]
    assert calls(fake_llm) == 5


@pytest.mark.parametrize(
    "headers, expected",
    [({"retry-after": "3"}, 3.0), ({"Retry-After": "1.5"}, 1.5), ({"retry-after": "-4"}, 0.0),
     ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({}, None), (None, None)],
)
def test_retry_after_parsing(headers: dict | None, expected: float | None) -> None:
    exc = Exception("throttled")
    exc.litellm_response_headers = headers  # type: ignore[attr-defined]
    assert retry_after(exc) == expected


def test_retry_after_http_date_in_the_future() -> None:
    exc = Exception("throttled")
    exc.litellm_response_headers = {"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)}  # type: ignore[attr-defined]
    assert 25 <= retry_after(exc) <= 30


# --- secrets -----------------------------------------------------------------------------------


def _echoing_401(key: str) -> str:
    """A provider error that echoes the key back, as some providers do."""
    return json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
                                 "code": "invalid_api_key"}})


def test_api_key_is_not_in_endpoint_repr() -> None:
    endpoint = Endpoint(MODEL, "http://127.0.0.1:9/v1", api_key="osi-repr-secret-998877")
    assert "osi-repr-secret-998877" not in repr(endpoint)
    assert "osi-repr-secret-998877" not in str(endpoint)


def test_environment_key_is_masked_in_model_call_errors(fake_llm: FakeLLMServer, sleeps: Sleeps,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    key = "osi-env-secret-0123456789"
    monkeypatch.setenv("OSI_TEST_API_KEY", key)
    assert redact(f"key {key} leaked") == f"key {MASK} leaked"

    fake_llm.fail_next(1, 401, body=_echoing_401(key))
    with pytest.raises(ModelCallError) as info:
        complete(fake_llm, sleeps, api_key=key)
    assert key not in str(info.value)
    assert f"Incorrect API key provided: {MASK}" in str(info.value) and "(HTTP 401)" in str(info.value)


def test_endpoint_key_is_masked_in_model_call_errors(fake_llm: FakeLLMServer, sleeps: Sleeps) -> None:
    key = "osi-endpoint-only-secret-4455"  # not in the environment, not shaped like sk-...
    # Nothing registered it (an Endpoint no longer registers its key anywhere): the error
    # message masks the key of the endpoint it is about by itself.
    assert key not in registered_secrets()
    fake_llm.fail_next(1, 401, body=_echoing_401(key))
    with pytest.raises(ModelCallError) as info:
        complete(fake_llm, sleeps, api_key=key)
    message = str(info.value)
    assert key not in message
    assert f"Incorrect API key provided: {MASK}" in message
    assert message.startswith(f"{MODEL}: ") and "(HTTP 401) after 1 attempt(s)" in message


def test_secret_registered_in_a_scope_is_masked_only_while_the_scope_is_open() -> None:
    # Before the fix, registered keys went into a process-wide set: masked in every later
    # run of the same process (pytester, a long-lived worker), forever.
    key = "osi-scoped-secret-80808080"
    text = f"the provider said {key}"
    with secret_scope():
        register_secret(key)
        assert redact(text) == f"the provider said {MASK}"
    assert redact(text) == text


def test_creating_an_endpoint_registers_no_secret() -> None:
    # Before the fix, Endpoint.__post_init__ registered its api_key process-wide.
    key = "osi-endpoint-ctor-secret-5150"
    with secret_scope() as scope:
        endpoint = Endpoint(MODEL, "http://127.0.0.1:9/v1", api_key=key)
        assert scope == set()
        assert redact(f"echo {key}") == f"echo {key}"
    assert endpoint.litellm_kwargs()["api_key"] == key  # the key is still used, just not registered
    assert key not in registered_secrets()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Authorization: Bearer abcdefgh12345678", f"Authorization: Bearer {MASK}"),
        ("header bearer abcdefgh12345678 sent", f"header bearer {MASK} sent"),
        ("used sk-proj-abcdefgh1234", f"used {MASK}"),
        ('{"api_key": "abcdefgh12345678"}', f'{{"api_key": "{MASK}"}}'),
        ("x-api-key=abcdefgh12345678 rest", f"x-api-key={MASK} rest"),
        ("nothing secret here, sk-short", "nothing secret here, sk-short"),
    ],
)
def test_redact_masks_secret_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("name", [
    "WATSONX_APIKEY", "WATSONX_ZENAPIKEY", "GIGACHAT_CREDENTIALS", "VERTEXAI_CREDENTIALS",  # read by litellm
    "OSI_TEST_API_KEY", "OSI_TEST_APIKEY", "OSI_TEST_SECRET", "OSI_TEST_PASSWD", "OSI_TEST_TOKEN", "OSI_TEST_PAT",
    "OSI_TEST_PRIVATE_KEY", "osi_test_api_key", "OSI_TEST_MASTER_KEY",
])
def test_secret_environment_variables_are_masked(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    value = "Qz7-osi-env-value-31415"  # no secret shape of its own: only its variable name can mask it
    monkeypatch.setenv(name, value)
    assert redact(f"got {value} back") == f"got {MASK} back"


@pytest.mark.parametrize("name, value", [
    ("AUTH_PROVIDER", "google"),  # AUTH is not a secret marker
    ("GIT_AUTHOR_NAME", "Jane Doe"),
    ("OSI_TEST_TOKEN", "bearer of the ring"),  # has whitespace: prose, not a secret
    ("OSI_TEST_API_KEY", "short12"),  # under 8 characters
    ("OSI_TEST_PATH_HINT", "janedoe-home"),  # _PAT only at the end
])
def test_ordinary_environment_values_are_not_masked(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    text = f"the answer mentions {value} in passing"
    assert redact(text) == text


# --- endpoint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint, expected",
    [
        (Endpoint("gpt-4o-mini"), {"model": "gpt-4o-mini"}),
        (Endpoint("local", "http://h/v1"), {"model": "openai/local", "api_base": "http://h/v1", "api_key": "sk-no-key-required"}),
        (Endpoint("ollama/llama3", "http://h"), {"model": "ollama/llama3", "api_base": "http://h"}),
        (Endpoint("local", "http://h/v1", "k-123456"), {"model": "openai/local", "api_base": "http://h/v1", "api_key": "k-123456"}),
    ],
)
def test_endpoint_litellm_kwargs(endpoint: Endpoint, expected: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert endpoint.litellm_kwargs() == expected


# --- concurrency -------------------------------------------------------------------------------


def test_scheduler_limits_concurrent_model_calls(fake_llm: FakeLLMServer) -> None:
    fake_llm.latency = 0.1
    import_litellm()
    scheduler = Scheduler(4)
    client = LLMClient(POLICY)
    endpoint = Endpoint(MODEL, fake_llm.api_base)
    try:
        futures = [
            scheduler.submit(client.complete(endpoint, [{"role": "user", "content": f"question {i}"}],
                                             limit=lambda call, i=i: scheduler.limiter.run(i, call)))
            for i in range(20)
        ]
        texts = [f.result(timeout=60).text for f in futures]
    finally:
        scheduler.close(close_http_clients)

    assert [t.endswith(f"question {i}") for i, t in enumerate(texts)] == [True] * 20
    assert calls(fake_llm) == 20
    assert fake_llm.max_concurrency == 4  # the pipe was full, and never over the limit
    assert scheduler.limiter.peak == 4


def test_priority_limiter_wakes_lowest_priority_first() -> None:
    async def main() -> list[str]:
        limiter = PriorityLimiter(1)
        order: list[str] = []

        async def job(tag: str) -> None:
            order.append(tag)

        await limiter.acquire(0)  # hold the only slot while the others queue
        tasks = [asyncio.create_task(limiter.run(p, lambda t=tag: job(t)))
                 for p, tag in [(5, "p5"), (1, "p1-first"), (3, "p3"), (1, "p1-second"), (2, "p2")]]
        await asyncio.sleep(0)  # a yield (not a delay): let every task reach the queue
        assert order == []
        limiter.release()
        await asyncio.gather(*tasks)
        return order

    # Lowest value first; equal priorities in arrival order.
    assert asyncio.run(main()) == ["p1-first", "p1-second", "p2", "p3", "p5"]


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def main() -> str:
        limiter = PriorityLimiter(1)
        await limiter.acquire(0)
        waiter = asyncio.create_task(limiter.acquire(1))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        limiter.release()

        async def ok() -> str:
            return "ran"

        return await asyncio.wait_for(limiter.run(2, ok), timeout=5)  # a guard, not a timing check

    assert asyncio.run(main()) == "ran"


def test_waiter_woken_and_cancelled_in_the_same_tick_hands_its_slot_on() -> None:
    """A release hands the slot to the best waiter; if that waiter is cancelled before it runs,
    the slot goes on to the next one. Before the fix the cancel path called release(), which
    also took one off in_flight for a slot the cancelled waiter never counted: with another
    holder still running, in_flight went 2 -> 0 (clamped by max(0, ...)), so in_flight and peak
    under-reported what ran. release() now refuses to go below zero instead of hiding it."""

    async def main() -> None:
        limiter = PriorityLimiter(2)
        await limiter.acquire(0)
        await limiter.acquire(0)  # two holders: the limit is reached
        woken = asyncio.create_task(limiter.acquire(1))
        next_in_line = asyncio.create_task(limiter.acquire(2))
        await asyncio.sleep(0)  # a yield (not a delay): both are queued now
        assert not woken.done() and not next_in_line.done() and limiter.in_flight == 2

        limiter.release()  # one holder done: the slot is handed to `woken` ...
        woken.cancel()  # ... which is cancelled in the same tick, before it could run
        await asyncio.gather(woken, return_exceptions=True)
        assert woken.cancelled()
        await asyncio.wait_for(next_in_line, timeout=5)  # a guard, not a timing check

        assert (limiter.in_flight, limiter.peak) == (2, 2)  # the other holder + next_in_line
        limiter.release()
        limiter.release()
        assert limiter.in_flight == 0
        with pytest.raises(RuntimeError, match="without a matching acquire"):
            limiter.release()
        # No slot was lost or made up: exactly two are free again.
        await limiter.acquire(0)
        await limiter.acquire(0)
        third = asyncio.create_task(limiter.acquire(0))
        await asyncio.sleep(0)
        assert not third.done()
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)
        assert limiter.in_flight == 2

    asyncio.run(main())


def test_limit_holds_and_counts_stay_exact_while_waiters_are_cancelled() -> None:
    """A storm of cancellations at every point (queued, woken, running): the number running
    never exceeds the limit, in_flight always equals it, and every slot comes back."""
    import random

    async def main() -> tuple[int, int]:
        limit = 3
        limiter = PriorityLimiter(limit)
        running = 0
        most = 0

        async def work() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                assert limiter.in_flight == running
                await asyncio.sleep(0)  # may be cancelled here, while running
                assert limiter.in_flight == running
            finally:
                running -= 1

        rng = random.Random(7)
        tasks = [asyncio.create_task(limiter.run(rng.randrange(5), work)) for _ in range(300)]
        while not all(t.done() for t in tasks):
            for task in rng.sample(tasks, 12):
                if not task.done() and rng.random() < 0.5:
                    task.cancel()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(t.cancelled() for t in tasks)
        assert 0 < cancelled < len(tasks)  # the storm did hit, and work still got done
        # The invariant checks inside work() failed nowhere.
        assert [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None] == []
        assert limiter.in_flight == 0 and running == 0
        for _ in range(limit):  # every slot came back
            await asyncio.wait_for(limiter.acquire(0), timeout=5)
        return most, limiter.peak

    most, peak = asyncio.run(main())
    assert most == peak == 3


def test_limiter_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PriorityLimiter(0)


def test_scheduler_close_cancels_pending_work_and_is_idempotent() -> None:
    scheduler = Scheduler(1)
    assert scheduler.submit(asyncio.sleep(0, result="done")).result(timeout=5) == "done"
    pending = scheduler.submit(asyncio.sleep(3600))
    scheduler.close(timeout=5)
    concurrent.futures.wait([pending], timeout=5)
    assert pending.cancelled()
    scheduler.close()  # a second close is a no-op


def test_closing_a_scheduler_whose_loop_thread_died_returns_at_once() -> None:
    import time as _time

    from pytest_osi.calls.scheduler import Scheduler

    scheduler = Scheduler(2)
    scheduler._loop.call_soon_threadsafe(scheduler._loop.stop)  # the thread's run_forever returns
    scheduler._thread.join(5)
    assert not scheduler.alive
    started = _time.monotonic()
    scheduler.close(timeout=10.0)
    assert _time.monotonic() - started < 1.0  # not the 10 s it used to wait for a dead loop
