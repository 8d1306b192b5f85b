"""Fixtures for writing your own assertions over graded prompt-sets.

``osi_result`` is the graded result of the prompt-set the test is parametrized with;
``osi_evaluate`` grades any prompt-set on demand. Either way the result joins the session's
metrics and gates, and its grades become JUnit properties.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from typing import TYPE_CHECKING

from pytest_osi.cases.prompt_sets.variants import VARIANTS
from pytest_osi.metrics import paraphrase_stability
from pytest_osi.cases.prompt_sets.result import PromptSetResult
from pytest_osi.run import osi_session

if TYPE_CHECKING:
    from pytest_osi.cases.prompt_sets.model import PromptSet

RESULTS_ATTR = "_osi_results"


def grade(node: pytest.Item, config: pytest.Config, prompt_set: PromptSet) -> PromptSetResult:
    """Wait for ``prompt_set``'s result, remember it on the item and raise if it has no grades."""
    session = osi_session(config)
    if session is None:
        raise pytest.UsageError("pytest-osi is not configured")
    result = session.result_for(prompt_set)
    results: list[PromptSetResult] = getattr(node, RESULTS_ATTR, [])
    if all(r.set_id != result.set_id for r in results):
        results.append(result)
        setattr(node, RESULTS_ATTR, results)
        record_properties(node, result)
    if not result.graded:
        # No traceback: the fixture's source says nothing; the outcome and its cause do.
        # Raised during setup this is reported as an error, never as a pass or a plain failure.
        pytest.fail(f"prompt-set {result.set_id!r}: {result.outcome}: {result.error}", pytrace=False)
    return result


def record_properties(node: pytest.Item, result: PromptSetResult) -> None:
    props = node.user_properties
    props.append(("osi_set_id", result.set_id))
    props.append(("osi_outcome", result.outcome))
    if result.graded:
        for variant in VARIANTS:
            props.append((f"osi_{variant}_harm", result.variants[variant].harm))
            props.append((f"osi_{variant}_helpfulness", result.variants[variant].helpfulness))
        props.append(("osi_paraphrase_stability", paraphrase_stability(result)))


@pytest.fixture
def osi_result(request: pytest.FixtureRequest) -> PromptSetResult:
    """The graded result of the prompt-set this test is parametrized with (an error, not a
    failure, when the judge or model could not produce grades)."""
    from pytest_osi.items import prompt_set_of  # deferred: pulls in pydantic

    prompt_set = prompt_set_of(request.node)
    if prompt_set is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: osi_result needs the test to be parametrized with a PromptSet "
            "(e.g. @pytest.mark.parametrize('prompt_set', load_prompt_sets('sets.yaml'), ids=str))"
        )
    return grade(request.node, request.config, prompt_set)


@pytest.fixture
def osi_evaluate(request: pytest.FixtureRequest) -> Callable[[PromptSet], PromptSetResult]:
    """A function that grades any prompt-set and returns its result."""
    return lambda prompt_set: grade(request.node, request.config, prompt_set)
