"""Shared fixtures: a scripted OpenAI-compatible server on 127.0.0.1 and a way to point a
pytester run at it, so tests drive litellm's real HTTP path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakeserver import FakeLLMServer  # noqa: E402

SHARED_DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "opensafeintent" / "dataset.json"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session")
def litellm() -> ModuleType:
    """litellm, imported once for the session -- only by tests that call a model (it costs
    seconds, and most tests never need it).

    pytester's in-process runs snapshot sys.modules and restore it afterwards. A run that
    imported litellm itself would leave half of it behind (httpx/openai stay, litellm goes; its
    importlib_metadata finder stays on sys.meta_path, orphaned), breaking the next in-process
    run. Being session-scoped, this fixture is set up before any function-scoped ``pytester``
    of the test that asks for it (directly or through ``fake_llm``) takes its snapshot, so one
    consistent copy stays alive for every later run."""
    from pytest_osi.calls.client import import_litellm

    return import_litellm()


@pytest.fixture
def fake_llm(litellm: ModuleType) -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def model_args(server: FakeLLMServer, *extra: str) -> list[str]:
    """Command-line options that send both the model under test and the judge to ``server``."""
    return [
        "--osi-model=model-under-test",
        f"--osi-model-api-base={server.api_base}",
        "--osi-judge=judge",
        f"--osi-judge-api-base={server.api_base}",
        "--osi-retries=2",
        # Nothing here is meant to time out. (Generous: on a loaded 2-core machine the first call
        # can wait seconds for the background litellm import, and the blocked-loop watchdog
        # allows the timeout plus a grace.)
        "--osi-timeout=30",
        # These tests count the calls that reach the server; the call store (tested on its own)
        # would answer a second run in the same directory from what the first one recorded.
        "--osi-record=off",
        *extra,
    ]


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """When this suite itself runs under ``-n``, the runs it starts with pytester must not
    believe they are xdist workers (syrupy, for one, then leaves its report to a controller
    that does not exist)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
