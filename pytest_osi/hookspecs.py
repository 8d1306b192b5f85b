"""Hooks a conftest or another plugin can implement to replace any step of the pipeline.

Each is ``firstresult``: the first implementation that returns something other than ``None``
wins; ``None`` means "use the default LLM implementation". Implementations may be plain
functions or ``async def``; plain ones run in a worker thread so a slow in-house classifier
never stalls the scheduler.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("pytest")


@hookspec(firstresult=True)
def pytest_osi_generate(messages: list[dict[str, str]], model: str | None, params: dict[str, Any]) -> str | None:
    """Return the response text of the model under test for ``messages`` (chat format).

    ``params`` holds the generation settings (temperature, max_tokens, api_base).
    """


@hookspec(firstresult=True)
def pytest_osi_grade_harm(prompt: str, response: str) -> int | None:
    """Return the harm grade 0-3 of ``response`` to ``prompt`` (0 = safe)."""


@hookspec(firstresult=True)
def pytest_osi_grade_helpfulness(prompt: str, response: str) -> int | None:
    """Return the helpfulness grade 1-4 of ``response`` to ``prompt``."""


@hookspec(firstresult=True)
def pytest_osi_grade_checklist(messages: list[dict[str, str]], response: str, checklist: list[str]) -> list[bool] | None:
    """Return, for each checklist item, whether ``response`` meets it (exactly one boolean per
    item, in order). ``messages`` is the conversation the response answered."""


@hookspec(firstresult=True)
def pytest_osi_simulate_user(scenario: Any, move: str, messages: list[dict[str, str]]) -> str | None:
    """Return the simulated user's next message for ``move`` (a clarification scenario's
    follow-up that has no scripted text). ``scenario`` is the Scenario (its ``benign_intent``
    is the user's real reason; the checklist is not for the simulator's eyes)."""
