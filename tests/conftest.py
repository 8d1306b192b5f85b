"""Shared fixtures: a scripted OpenAI-compatible server on 127.0.0.1 and a way to point a
pytester run at it, so tests drive litellm's real HTTP path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pytest_osi.calls.client import import_litellm  # noqa: E402

# pytester's in-process runs snapshot sys.modules and restore it afterwards. A run that
# imported litellm would leave half of it behind (httpx/openai stay, litellm goes; its
# importlib_metadata finder stays on sys.meta_path, orphaned), breaking the next in-process
# run. Importing litellm once, here, before any snapshot, keeps one consistent copy alive.
import_litellm()

from fakeserver import FakeLLMServer  # noqa: E402

SHARED_DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "opensafeintent" / "dataset.json"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
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
        "--osi-timeout=10",
        *extra,
    ]
