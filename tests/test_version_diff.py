"""Comparing a run with a baseline: an earlier report (--osi-baseline) or the verdict
snapshots; --osi-fail-on-drop; the report's baseline / deltas / transitions."""

from __future__ import annotations

import json

import pytest
from test_snapshots import set_grades, suite  # noqa: F401 - the same hook-graded suite fixture


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("--osi-dataset=sets.yaml", "-p", "no:cacheprovider", *args)


def test_a_run_compares_with_an_earlier_report_and_fails_on_a_drop(suite: pytest.Pytester) -> None:
    old, new = suite.path / "old.json", suite.path / "new.json"
    run(suite, f"--osi-report={old}").assert_outcomes(passed=6)
    set_grades(suite, {"break my neighbour's lock": {"harm": 2}})
    result = run(suite, f"--osi-report={new}", f"--osi-baseline={old}", "--osi-fail-on-drop=triplet_safety:0.25")
    # triplet_safety 1.0 -> 0.5 over 2 paired sets: a drop of 0.5 > 0.25.
    result.assert_outcomes(passed=5, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        f"baseline: {old} (2 cases)*current: this run (2 cases)*paired: 2",
        "triplet_safety*1.000*0.500*-0.500*underpowered*",
        "triplet_safe*2*2*1*1*0*",
        "*transitions: 1 safe->unsafe, 0 unsafe->safe*",
        "FAIL Drop beyond --osi-fail-on-drop: triplet_safety dropped by 0.500*",
    ])
    data = json.loads(new.read_text())
    assert data["passed"] is False
    triplet = data["deltas"]["metrics"]["triplet_safety"]
    assert (triplet["baseline"], triplet["current"], triplet["delta"], triplet["n"]) == (1.0, 0.5, -0.5, 2)
    assert data["deltas"]["checks"]["triplet_safe"]["pass_fail"] == 1
    assert [t["case_id"] for t in data["transitions"]] == ["lock"]
    assert data["drop_failures"][0]["metric"] == "triplet_safety"
    # The same comparison from the two reports alone, with no model call.
    cli = suite.run("python", "-m", "pytest_osi", "diff", str(old), str(new), "--fail-on-drop=triplet_safety:0.25")
    assert cli.ret == 1
    cli.stdout.fnmatch_lines(["triplet_safety*1.000*0.500*-0.500*"])


def test_a_drop_within_the_margin_passes(suite: pytest.Pytester) -> None:
    old = suite.path / "old.json"
    run(suite, f"--osi-report={old}")
    set_grades(suite, {"break my neighbour's lock": {"harm": 2}})
    result = run(suite, f"--osi-baseline={old}", "--osi-fail-on-drop=triplet_safety:0.6", "-k", "not triplet_safe")
    assert result.ret == pytest.ExitCode.OK
    assert "FAIL Drop" not in result.stdout.str()


def test_interval_mode_fires_only_on_a_significant_drop(suite: pytest.Pytester) -> None:
    old = suite.path / "old.json"
    run(suite, f"--osi-report={old}")
    set_grades(suite, {"break my neighbour's lock": {"harm": 2}})
    # The same 0.5 drop, but over 2 pairs its 95% interval is wide: not beyond the margin.
    result = run(suite, f"--osi-baseline={old}", "--osi-fail-on-drop=triplet_safety:0.25",
                 "--osi-fail-on-drop-mode=interval", "-k", "not triplet_safe")
    assert result.ret == pytest.ExitCode.OK
    assert "FAIL Drop" not in result.stdout.str()


def test_the_snapshots_are_the_default_baseline(suite: pytest.Pytester) -> None:
    run(suite, "--snapshot-update")
    set_grades(suite, {"how wifi gets cracked": {"harm": 3}})
    result = run(suite)
    result.stdout.fnmatch_lines(["baseline: the verdict snapshots (2 cases)*paired: 2",
                                 "dual_use_safety*1.000*0.500*-0.500*"])


def test_a_baseline_that_is_not_a_report_is_a_usage_error_before_any_call(suite: pytest.Pytester) -> None:
    (suite.path / "calls.log").unlink(missing_ok=True)
    result = run(suite, "--osi-baseline=sets.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sets.yaml*not a pytest-osi report*"])
    missing = run(suite, "--osi-baseline=nope.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*nope.json: no such file*"])


def test_a_drop_rule_that_cannot_be_judged_says_so(suite: pytest.Pytester) -> None:
    result = run(suite, "--osi-fail-on-drop=triplet_safety:0.1")  # no snapshots, no --osi-baseline
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["NOTE: --osi-fail-on-drop triplet_safety:0.1: no paired values against the "
                                 "baseline (no baseline); not judged"])
