"""pytest_osi.reporting.report: what the JSON report holds, that it is written atomically and
redacted string by string, and that ``--osi-report`` only ever replaces a pytest-osi report:
any other file, or a path that cannot be written, stops the run at configure, before any call.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import pytest
from test_plugin import prompt_set, write_sets

from pytest_osi.cases.prompt_sets.result import PromptSetResult, VariantResult
from pytest_osi.gates import parse_gates
from pytest_osi.reporting import report as report_module
from pytest_osi.reporting.report import is_osi_report, report_dict, report_text, write_report
from pytest_osi.reporting.summary import RunSummary, summary_lines

# Model and judge are hooks that log every call: "no call was made" is checked on this file.
HOOKS = """
def pytest_osi_generate(messages, model, params):
    with open("calls.log", "a") as log:
        log.write("generate\\n")
    return "UNSAFE" if "break into" in messages[-1]["content"] else "fine"

def pytest_osi_grade_harm(prompt, response):
    return 2 if response == "UNSAFE" else 0

def pytest_osi_grade_helpfulness(prompt, response):
    return 4
"""


def result(set_id: str, harm: int = 0, error: str | None = None, response: str = "fine") -> PromptSetResult:
    variants = {v: VariantResult.of(v, f"prompt {v}", response, harm if v == "malicious" else 0, 4)
                for v in ("benign", "dual_use", "malicious")}
    return PromptSetResult(set_id, "Cyber Harm", "Explanation", "model-error" if error else "graded",
                           variants, error=error)


def summary(*results: PromptSetResult, gates: tuple[str, ...] = ()) -> RunSummary:
    return RunSummary.build("m", "j", list(results) or [result("a")], parse_gates(gates), 1.0, configured_sets=1)


# -- content -----------------------------------------------------------------------------------


def test_the_report_starts_with_the_generator_marker_and_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_report(path, summary())
    text = path.read_text()
    assert text.startswith('{\n  "generator": "pytest-osi",\n  "version": 1,\n')
    data = json.loads(text)
    assert list(data)[:2] == ["generator", "version"] and data["passed"] is True
    assert is_osi_report(path)


def test_a_floor_and_a_ceiling_on_one_metric_are_both_judged_and_reported() -> None:
    results = [result("a"), result("b", harm=2)]  # mean_utility = (1 + 2/3) / 2 = 0.833
    s = summary(*results, gates=("mean_utility>=0.5", "mean_utility<=0.8"))
    gates = report_dict(s)["gates"]
    assert [(g["gate"], g["passed"]) for g in gates] == [("mean_utility>=0.5", True), ("mean_utility<=0.8", False)]
    assert report_dict(s)["passed"] is False
    lines = summary_lines(s)
    assert sorted(" ".join(line.split()) for line in lines if line.startswith("mean_utility")) == [
        "mean_utility 0.833 <=0.8 FAIL", "mean_utility 0.833 >=0.5 PASS"]
    assert "FAIL Required gate mean_utility<=0.8 not met: mean_utility = 0.833" in lines


def test_secrets_are_masked_in_every_string_before_json_escaping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A quote and a backslash: JSON-escaped, the key would no longer match itself in the encoded text.
    secret = 'Ab"cd\\ef-0123456789-ZYX'
    monkeypatch.setenv("MY_API_KEY", secret)
    results = [result("a", response=f"the key is {secret}"),
               result("b", error="model: APIConnectionError: admin:PW-s3cret@127.0.0.1:1/v1 refused")]
    path = tmp_path / "r.json"
    write_report(path, summary(*results))
    text = path.read_text()
    escaped = json.dumps(secret)[1:-1]
    assert secret not in text and escaped not in text and "0123456789" not in text
    assert "PW-s3cret" not in text
    data = json.loads(text)
    assert data["items"][0]["variants"]["benign"]["response"] == "the key is ***"
    assert data["items"][1]["error"] == "model: APIConnectionError: ***@127.0.0.1:1/v1 refused"


# -- recognising a report ------------------------------------------------------------------------


LEGACY = {"version": 1, "model": "m", "judge": "j", "rubrics": {}, "metrics": {}, "gates": [], "passed": True,
          "complete": True, "sets_configured": 1, "strata": {}, "counts": {}, "usage": {}, "items": []}


@pytest.mark.parametrize(("content", "ours"), [
    ('{"generator": "pytest-osi", "passed": true}', True),
    ('{\n  "generator": "pytest-osi",\n  "version": 1\n}\n', True),
    # Re-written with sorted keys, the marker far from the start: parsed whole.
    (json.dumps({"a": "x" * 10_000, "generator": "pytest-osi", "version": 1}, sort_keys=True), True),
    # Written before the marker existed.
    (json.dumps(LEGACY, indent=2), True),
    ('{"passed": true, "stale": true}', False),
    ('{"generator": "someone-else", "version": 1}', False),
    (json.dumps({**LEGACY, "version": 2}), False),
    ('[{"id": "a", "benign": "..."}]', False),
    ("prompt_sets:\n  - id: a\n", False),
    ("# Notes\n\nthe generator is pytest-osi\n", False),
    ("", False),
    ('{"generator": "pytest-osi"', True),  # a prefix we wrote: ours, even cut short
    ("\x00\xff\xfe garbage", False),
], ids=["compact", "indented", "sorted-keys", "legacy", "bare-passed", "other-generator", "legacy-v2",
        "json-dataset", "yaml-dataset", "notes", "empty", "truncated-ours", "binary"])
def test_is_osi_report(tmp_path: Path, content: str, ours: bool) -> None:
    path = tmp_path / "f"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    assert is_osi_report(path) is ours


def test_a_large_file_without_the_marker_is_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "_PARSE_LIMIT", 1000)
    path = tmp_path / "f"
    path.write_text(json.dumps({"a": "x" * 5000, "generator": "pytest-osi"}, sort_keys=True))
    assert is_osi_report(path) is False


# -- writing atomically ---------------------------------------------------------------------------


def test_an_interrupted_write_leaves_the_previous_report_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.json"
    write_report(path, summary())
    before = path.read_text()

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(path, summary(result("x"), result("y", harm=2)))
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary file left behind


def test_the_report_is_written_with_ordinary_permissions_and_no_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "r.json"
    write_report(path, summary())
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
    json.loads(path.read_text())


# -- the report path, checked at configure ----------------------------------------------------------


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    write_sets(pytester, [prompt_set("a", malicious="x")])
    pytester.makeconftest(HOOKS)
    return pytester


def no_call_made(pytester: pytest.Pytester) -> bool:
    return not (pytester.path / "calls.log").exists()


def test_a_run_writes_the_report_and_the_next_run_replaces_it(suite: pytest.Pytester) -> None:
    report = suite.path / "r.json"
    suite.runpytest_inprocess("--osi-dataset=sets.yaml", f"--osi-report={report}").assert_outcomes(passed=2, failed=1)
    first = json.loads(report.read_text())
    assert first["generator"] == "pytest-osi" and first["passed"] is True
    result = suite.runpytest_inprocess("--osi-dataset=sets.yaml", f"--osi-report={report}",
                                       "--osi-gate=triplet_safety>=1")
    result.assert_outcomes(passed=2, failed=1)
    second = json.loads(report.read_text())
    assert second["passed"] is False and second["gates"][0]["gate"] == "triplet_safety>=1"


def test_the_dataset_given_as_report_path_is_left_alone(suite: pytest.Pytester) -> None:
    dataset = suite.path / "sets.yaml"
    content = dataset.read_bytes()
    result = suite.runpytest_inprocess("--osi-dataset=sets.yaml", "--osi-report=sets.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: --osi-report={dataset}: exists and is not a pytest-osi report;*"])
    assert dataset.read_bytes() == content
    assert no_call_made(suite)


def test_collect_only_leaves_a_notes_file_alone(pytester: pytest.Pytester) -> None:
    notes = pytester.path / "notes.md"
    notes.write_text("# my notes\n")
    result = pytester.runpytest_inprocess("--co", "--osi-report=notes.md")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: --osi-report={notes}: exists and is not a pytest-osi report;"
                                 " the report would replace it, so it is left alone: choose another path, or remove the file"])
    assert notes.read_text() == "# my notes\n"


def test_an_ini_report_path_is_named_as_the_ini_key(pytester: pytest.Pytester) -> None:
    (pytester.path / "notes.md").write_text("keep")
    pytester.makeini("[pytest]\nosi_report = notes.md\n")
    result = pytester.runpytest_inprocess("--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: osi_report={pytester.path / 'notes.md'}: exists and is not*"])
    assert (pytester.path / "notes.md").read_text() == "keep"


@pytest.mark.parametrize("content", ['{"generator": "pytest-osi", "version": 1, "passed": true}', json.dumps(LEGACY)],
                         ids=["marked", "legacy"])
def test_last_runs_report_is_removed_at_start(pytester: pytest.Pytester, content: str) -> None:
    report = pytester.path / "r.json"
    report.write_text(content)
    result = pytester.runpytest_inprocess("--co", f"--osi-report={report}")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert not report.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--osi-dataset=missing.yaml"], "*missing.yaml*"),
    (["--osi-dataset=sets.yaml", "--osi-gate=triplet_safty>=0.8"], "*unknown metric 'triplet_safty'*"),
    (["--osi-dataset=sets.yaml", "--osi-timeout=inf"], "*--osi-timeout must be a finite number*"),
], ids=["bad-dataset", "unknown-gate-metric", "bad-option"])
def test_a_run_stopped_by_a_usage_error_does_not_leave_last_runs_passing_report(
        suite: pytest.Pytester, args: list[str], message: str) -> None:
    report = suite.path / "r.json"
    report.write_text('{"generator": "pytest-osi", "version": 1, "passed": true}')
    result = suite.runpytest_inprocess(f"--osi-report={report}", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not report.exists()


def _under_a_file(root: Path) -> Path:
    (root / "plain.txt").write_text("x")
    return root / "plain.txt" / "sub" / "r.json"


@pytest.mark.parametrize(("where", "reason"), [
    (lambda root: root / "out", "is a directory, not a file"),
    (_under_a_file, "lies under */plain.txt, which is a file, not a directory"),
    (lambda root: Path("/proc/osi-report.json"), "cannot write in /proc (*)"),
], ids=["directory", "under-a-file", "proc"])
def test_an_unusable_report_path_stops_the_run_before_any_call(suite: pytest.Pytester, where, reason: str) -> None:
    (suite.path / "out").mkdir()
    if sys.platform != "linux" and "proc" in reason:
        pytest.skip("/proc is Linux's")
    path = where(suite.path)
    result = suite.runpytest_inprocess("--osi-dataset=sets.yaml", f"--osi-report={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: --osi-report={path}: {reason}"])
    assert no_call_made(suite)


def test_a_read_only_file_system_stops_the_run_before_any_call(suite: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(report_module.tempfile, "mkdtemp", read_only)
    result = suite.runpytest_inprocess("--osi-dataset=sets.yaml", "--osi-report=out/r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: --osi-report={suite.path / 'out' / 'r.json'}: "
                                 f"cannot write in {suite.path} (read-only file system)"])
    assert no_call_made(suite)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes in read-only directories")
def test_a_read_only_directory_stops_the_run(suite: pytest.Pytester) -> None:
    locked = suite.path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = suite.runpytest_inprocess("--osi-dataset=sets.yaml", f"--osi-report={locked / 'r.json'}")
    finally:
        locked.chmod(0o755)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--osi-report={locked / 'r.json'}: cannot write in {locked} (permission denied)"])
    assert no_call_made(suite)


def test_the_probe_leaves_nothing_behind(suite: pytest.Pytester) -> None:
    before = sorted(p.name for p in suite.path.iterdir())
    result = suite.runpytest_inprocess("--co", "--osi-dataset=sets.yaml", "--osi-report=deep/er/r.json")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    after = sorted(p.name for p in suite.path.iterdir() if p.name != "__pycache__")
    assert after == [n for n in before if n != "__pycache__"]  # no probe, no directories made for --co


def test_the_report_may_not_be_the_baseline(pytester: pytest.Pytester) -> None:
    baseline = pytester.path / "r.json"
    baseline.write_text('{"generator": "pytest-osi", "version": 1, "passed": true}')
    result = pytester.runpytest_inprocess("--co", "--osi-report=r.json", "--osi-baseline=r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: --osi-report and --osi-baseline both name {baseline}: "
                                 "the report replaces that file, so the baseline would be lost*"])
    assert baseline.exists()
