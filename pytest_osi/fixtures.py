"""Fixtures for writing your own assertions over graded cases.

``osi_result`` is the graded result of the case (prompt-set) the test is parametrized with;
``osi_evaluate`` grades any case on demand. Either way the result joins the session's
metrics and gates, and its grades become JUnit properties.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_osi.run import run_state

RESULTS_ATTR = "_osi_results"


def grade(node: pytest.Item, config: pytest.Config, case: Any) -> Any:
    """Wait for ``case``'s result, remember it on the item and raise if it has no grades."""
    state = run_state(config)
    if state is None:
        raise pytest.UsageError("pytest-osi is not configured")
    result = state.result_for(case)
    results: list[Any] = getattr(node, RESULTS_ATTR, [])
    if all((r.kind, r.case_id) != (result.kind, result.case_id) for r in results):
        results.append(result)
        setattr(node, RESULTS_ATTR, results)
        record_properties(node, result)
    if not result.graded:
        from pytest_osi.cases.base import kinds

        # No traceback: the fixture's source says nothing; the outcome and its cause do.
        # Raised during setup this is reported as an error, never as a pass or a plain failure.
        label = kinds()[result.kind].label
        pytest.fail(f"{label} {result.case_id!r}: {result.outcome}: {result.error}", pytrace=False)
    return result


def record_properties(node: pytest.Item, result: Any) -> None:
    from pytest_osi.cases.base import kinds

    props = node.user_properties
    props.append(("osi_set_id" if result.kind == "prompt_set" else "osi_case_id", result.case_id))
    props.append(("osi_outcome", result.outcome))
    if result.graded:
        properties = kinds()[result.kind].extra.get("junit_properties")
        if properties is not None:
            props.extend(properties(result))


@pytest.fixture
def osi_result(request: pytest.FixtureRequest) -> Any:
    """The graded result of the case this test is parametrized with (an error, not a
    failure, when the judge or model could not produce grades)."""
    from pytest_osi.items import case_of  # deferred: pulls in the case kinds

    case = case_of(request.node)
    if case is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: osi_result needs the test to be parametrized with a PromptSet "
            "(e.g. @pytest.mark.parametrize('prompt_set', load_prompt_sets('sets.yaml'), ids=str))"
        )
    return grade(request.node, request.config, case)


@pytest.fixture
def osi_evaluate(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    """A function that grades any case and returns its result."""
    return lambda case: grade(request.node, request.config, case)


@pytest.fixture
def osi_snapshot(request: pytest.FixtureRequest) -> Any:
    """The verdict snapshot of a pytest-osi check item (None when syrupy is disabled with
    ``-p no:syrupy``). Requested first by every check, so that the stored snapshot of an item
    whose case errored is kept, not reported unused or deleted."""
    if not request.config.pluginmanager.has_plugin("syrupy"):
        return None
    from pytest_osi.storage.snapshots import SnapshotKeeper, extension_for, snapshot_directory

    state = run_state(request.config)
    settings = state.settings if state else None
    root = settings.snapshot_dir if settings else None
    if not getattr(request.config.option, "update_snapshots", False) and not snapshot_directory(request.node.path, root).is_dir():
        # No baseline for this dataset and none being recorded: the checks are absolute, and
        # syrupy (whose lookup costs more than the check) is not asked about each item.
        return None
    from syrupy.assertion import SnapshotAssertion
    from syrupy.location import PyTestLocation

    # Built directly rather than from syrupy's ``snapshot`` fixture: that one also registers an
    # assertion with the default (amber) extension, whose discovery walks the whole
    # ``__snapshots__/`` tree and takes every other dataset's verdict files for unknown, unused
    # snapshots -- deleted under --snapshot-update.
    snapshot = SnapshotAssertion(
        update_snapshots=request.config.option.update_snapshots,
        update_new_snapshots_only=getattr(request.config.option, "update_new_snapshots_only", False),
        extension_class=extension_for(root),
        test_location=PyTestLocation(request.node),
        session=request.config._syrupy,  # type: ignore[attr-defined]
    )
    keeper = SnapshotKeeper(snapshot, strict=bool(settings and settings.strict))
    request.addfinalizer(keeper.keep)
    return keeper
