"""pytest_osi.redaction and pytest_osi.text: secrets are masked before text is shortened, in
every form they reach an error message or a report in (environment keys, keys registered by the
run, URL userinfo, key-shaped patterns)."""

from __future__ import annotations

import time

import pytest

from pytest_osi.redaction import MASK, redact, redactor, register_secret, registered_secrets, secret_scope
from pytest_osi.text import clip, shown

# 35 characters, no "sk-" prefix: only the environment lookup can find it.
KEY = "Zq7XbL2mN9vR4tY8pW1kD6hF3jS5gA0cE2u"
assert len(KEY) == 35


def fragments(secret: str, size: int = 8) -> list[str]:
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def leaked(text: str, secret: str) -> list[str]:
    return [f for f in fragments(secret) if f in text]


# The key starts between 263 and 289: at least 8 of its characters before the cut (297 + "...").
@pytest.mark.parametrize("start", range(262, 289, 2))
def test_an_environment_key_straddling_the_cut_leaves_no_fragment(monkeypatch: pytest.MonkeyPatch, start: int) -> None:
    monkeypatch.setenv("MY_API_KEY", KEY)
    message = "x" * start + " " + KEY + " was rejected by the provider; check your configuration"
    # The premise: the key straddles position 300, so shortening first would keep part of it,
    # which no longer matches the key and would escape the mask.
    assert start + 1 + 8 <= 297 < start + 1 + len(KEY)
    assert leaked(redact(clip(message, 300)), KEY)

    out = shown(message, 300)
    assert len(out) <= 300
    assert leaked(out, KEY) == []
    assert MASK in out or out.endswith("...")


def test_shown_redacts_before_folding_and_clipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_KEY", KEY)
    text = "error:\n" + "y " * 140 + KEY + "\nmore"
    out = shown(text, 300, one_line=True)
    assert "\n" not in out and leaked(out, KEY) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("http://user:pass@host/v1", "http://***@host/v1"),
    ("https://admin:s3cr3t-PW@api.example.com:8443/v1/chat", "https://***@api.example.com:8443/v1/chat"),
    ("https://ghp_tokenOnly123@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("http://u:p@ss@host:80/", "http://***@host:80/"),  # an unescaped '@' in the password
    ("http://a:b@[::1]:8000/v1", "http://***@[::1]:8000/v1"),
    # A malformed api base without a scheme, as the user wrote it and as errors echo it.
    ("admin:PW@127.0.0.1:1/v1", "***@127.0.0.1:1/v1"),
    ("Invalid URL 'admin:PW@127.0.0.1:1/v1/chat/completions': No scheme supplied",
     "Invalid URL '***@127.0.0.1:1/v1/chat/completions': No scheme supplied"),
    ("api_base=admin:PW@localhost:8000", "api_base=***@localhost:8000"),
    ('{"api_base": "root:hunter2@10.0.0.1"}', '{"api_base": "***@10.0.0.1"}'),
    ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
])
def test_url_userinfo_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "write to john@example.com", "mailto:john@example.com", "https://example.com/users/a@b",
    "http://127.0.0.1:8000/v1", "meet at 10:30 in room 4", "a basic understanding of locks",
    "ratio 3:2 @ 5 fps",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_userinfo_is_masked_through_shown_even_at_the_cut() -> None:
    text = "x" * 285 + " http://admin:Sup3rS3cretPassw0rd@db.internal:5432/x"
    out = shown(text, 300)
    assert "Sup3rS3c" not in out and "admin:" not in out


@pytest.fixture
def no_open_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    """As outside any run (this test session is itself a pytest-osi run, with its scope open)."""
    from pytest_osi import redaction

    monkeypatch.setattr(redaction, "_scopes", [])


@pytest.mark.usefixtures("no_open_scope")
def test_registered_secrets_are_scoped_to_the_run() -> None:
    secret = "registered-Secret-9f8e7d"
    with secret_scope():
        register_secret(secret)
        assert secret in registered_secrets()
        assert redact(f"key {secret} here") == f"key {MASK} here"
        with secret_scope():  # an inner run (a pytester run inside a test) sees the outer one's
            assert redact(secret) == MASK
    assert secret not in registered_secrets()
    assert redact(f"key {secret} here") == f"key {secret} here"
    register_secret(secret)  # outside any scope: nowhere to keep it, and it must not leak into later runs
    assert redact(secret) == secret


@pytest.mark.usefixtures("no_open_scope")
def test_closing_a_scope_closes_that_scope_even_when_another_is_equal() -> None:
    with secret_scope() as outer:
        with secret_scope() as inner:  # both empty: equal sets, different scopes
            assert inner == outer and inner is not outer
        register_secret("outer-secret-123")
        assert "outer-secret-123" in outer
    assert registered_secrets() == set()


def test_environment_secrets_only_for_secret_names_and_secret_looking_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_KEY", KEY)
    monkeypatch.setenv("SERVICE_PASSWORD", "short")  # under 8 characters: would mask ordinary words
    monkeypatch.setenv("GREETING", "HelloWorldThisIsLong")  # not a secret's name
    assert redact(f"{KEY} short HelloWorldThisIsLong") == f"{MASK} short HelloWorldThisIsLong"


def test_a_longer_secret_is_masked_before_a_shorter_one_inside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_KEY", KEY)
    longer = KEY + "-suffix-part"
    assert redact(f"a {longer} b", extra=[longer]) == f"a {MASK} b"


def test_extra_secrets_and_key_patterns() -> None:
    assert redact("the key abcdef123456 failed", extra=["abcdef123456", None, "tiny"]) == f"the key {MASK} failed"
    assert redact("Bearer abcdefghijk and sk-abcdefghijkl") == f"Bearer {MASK} and {MASK}"
    assert redact('{"api_key": "abcdefghijkl"}') == '{"api_key": "***"}'


def test_redactor_masks_like_redact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_KEY", KEY)
    mask = redactor(extra=["extra-secret-1"])
    text = f"{KEY} http://u:p@h extra-secret-1"
    assert mask(text) == redact(text, extra=["extra-secret-1"]) == f"{MASK} http://***@h {MASK}"


@pytest.mark.parametrize("text", ["a=" * 100_000, "a:b," * 60_000, "http://" * 40_000, "x:" + "y" * 200_000 + "@"])
def test_redaction_stays_linear_on_long_unbroken_text(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 2.0


def test_environment_secrets_survive_keys_deleted_while_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest sets and deletes PYTEST_CURRENT_TEST in its thread while the scheduler's thread
    redacts; a key vanishing mid-read must not crash redaction (nor drop the masks)."""
    import os

    from pytest_osi import redaction

    monkeypatch.setenv("MY_API_KEY", "zq8Wx3Lp9Rt2Vb6Nm4Kd")
    real = os.environ.items
    calls = {"n": 0}

    def flaky() -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("PYTEST_CURRENT_TEST")
        return real()

    monkeypatch.setattr(os.environ, "items", flaky)
    assert redaction.redact("key zq8Wx3Lp9Rt2Vb6Nm4Kd here") == "key *** here"
    assert calls["n"] == 2
