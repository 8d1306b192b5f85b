"""pytest_osi.options: where relative paths resolve, and which values are usage errors.

Every run is ``--co`` with a model string that is never called: settings are read and
validated at configure time, before anything is collected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_plugin import prompt_set, write_sets

from pytest_osi.options import OPTIONS, _Option

# Prints the resolved settings as a header line, so a test can see where paths went.
SHOW_SETTINGS = """
from pytest_osi.options import read_settings

def pytest_report_header(config):
    s = read_settings(config)
    return [f"osi-settings taxonomy={s.taxonomy} report={s.report} datasets={[str(p) for p in s.datasets]} "
            f"strict={s.strict} judge_json_schema={s.judge_json_schema} temperature={s.temperature} "
            f"timeout={s.timeout} concurrency={s.concurrency} fail_on_drop={[str(r) for r in s.fail_on_drop]} "
            f"gates={[str(g) for g in s.gates]} end"]
"""

COLLECT = ("--co", "--osi-model=never-called")
SHOW = ("-p", "show_osi_settings")  # a plugin, not a conftest: conftests above the rootdir are not loaded


def show_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(show_osi_settings=SHOW_SETTINGS)
    pytester.syspathinsert()


def settings_line(result: pytest.RunResult) -> str:
    (line,) = [line for line in result.stdout.lines if line.startswith("osi-settings ")]
    return line


@pytest.fixture
def sub_ini(pytester: pytest.Pytester) -> Path:
    """sub/pytest.ini naming a taxonomy, a report and a dataset, all relative to sub/."""
    show_settings(pytester)
    sub = pytester.mkdir("sub")
    (sub / "tax.json").write_text(json.dumps(["Cyber Harm"]))
    write_sets(pytester, [prompt_set("a")], name="sub/sets.yaml")
    (sub / "pytest.ini").write_text(
        "[pytest]\nosi_taxonomy = tax.json\nosi_report = out/report.json\nosi_datasets = sets.yaml\n")
    return sub


def test_ini_paths_resolve_against_the_ini_files_directory(pytester: pytest.Pytester, sub_ini: Path) -> None:
    result = pytester.runpytest_inprocess("-c", "sub/pytest.ini", "--rootdir=.", *SHOW, *COLLECT)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    line = settings_line(result)
    assert f"taxonomy={sub_ini / 'tax.json'} " in line
    assert f"report={sub_ini / 'out' / 'report.json'} " in line
    assert f"datasets={[str(sub_ini / 'sets.yaml')]}" in line  # pytest's own `paths` type: the same base
    result.stdout.fnmatch_lines(["*3 tests collected*"])  # the taxonomy was found and allows the set


def test_command_line_paths_resolve_against_the_invocation_directory(pytester: pytest.Pytester, sub_ini: Path) -> None:
    result = pytester.runpytest_inprocess("-c", "sub/pytest.ini", "--rootdir=.", *SHOW, *COLLECT,
                                          "--osi-taxonomy=sub/tax.json", "--osi-report=r.json")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    line = settings_line(result)
    assert f"taxonomy={sub_ini / 'tax.json'} " in line
    assert f"report={pytester.path / 'r.json'} " in line


def test_override_without_an_ini_file_resolves_like_datasets(pytester: pytest.Pytester) -> None:
    show_settings(pytester)
    pytester.mkdir("elsewhere")
    write_sets(pytester, [prompt_set("a")], name="d.yaml")
    result = pytester.runpytest_inprocess("--rootdir=elsewhere", "-o", "osi_report=r.json",
                                          "-o", "osi_datasets=d.yaml", *SHOW, *COLLECT)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    line = settings_line(result)
    assert f"report={pytester.path / 'r.json'} " in line
    assert f"datasets={[str(pytester.path / 'd.yaml')]}" in line


@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--osi-checks="], "", "*--osi-checks: no checks selected; choose from triplet_safe, paraphrase_stable, benign_helpful*"),
    ([], "osi_checks =\n", "*osi_checks: no checks selected; choose from triplet_safe*"),
    (["--osi-checks=,"], "", "*--osi-checks: no checks selected*"),
    (["--osi-timeout=0"], "", "*--osi-timeout must be greater than 0*got 0.0*"),
    (["--osi-timeout=-5"], "", "*--osi-timeout must be greater than 0*"),
    (["--osi-timeout=nan"], "", "*--osi-timeout must be a finite number, got 'nan'*"),
    ([], "osi_timeout = 0\n", "*osi_timeout must be greater than 0*"),
    (["--osi-temperature=-0.1"], "", "*--osi-temperature must not be negative, got -0.1*"),
    ([], "osi_temperature = -1\n", "*osi_temperature must not be negative*"),
    (["--osi-concurrency=0"], "", "*--osi-concurrency must be at least 1, got 0*"),
], ids=["empty-checks", "empty-ini-checks", "only-commas", "zero-timeout", "negative-timeout", "nan-timeout",
        "ini-timeout", "negative-temperature", "ini-temperature", "zero-concurrency"])
def test_invalid_values_are_usage_errors_naming_the_option(pytester: pytest.Pytester, args: list[str], ini: str,
                                                           message: str) -> None:
    write_sets(pytester, [prompt_set("a")])
    pytester.makeini("[pytest]\n" + ini)
    result = pytester.runpytest_inprocess(*COLLECT, "--osi-dataset=sets.yaml", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize("args", [["--osi-temperature=0"], ["--osi-timeout=0.5"], ["--osi-checks=benign_helpful"]])
def test_boundary_values_are_accepted(pytester: pytest.Pytester, args: list[str]) -> None:
    write_sets(pytester, [prompt_set("a")])
    result = pytester.runpytest_inprocess(*COLLECT, "--osi-dataset=sets.yaml", *args)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()




def collect_ok(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A --co run over one prompt-set that must succeed, showing the settings."""
    write_sets(pytester, [prompt_set("a")])
    result = pytester.runpytest_inprocess(*SHOW, *COLLECT, "--osi-dataset=sets.yaml", *args)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    return result


FLOAT_OPTIONS = [opt for opt in OPTIONS if opt.kind == "float"]
INT_OPTIONS = [opt for opt in OPTIONS if opt.kind == "int"]


def test_there_are_numeric_options_to_check() -> None:
    assert {o.name for o in FLOAT_OPTIONS} >= {"timeout", "temperature"}
    assert {o.name for o in INT_OPTIONS} >= {"concurrency", "max-tokens", "retries"}


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e400"])
@pytest.mark.parametrize("opt", FLOAT_OPTIONS, ids=lambda o: o.name)
def test_a_float_option_must_be_finite(pytester: pytest.Pytester, opt: _Option, value: str) -> None:
    result = pytester.runpytest_inprocess(*COLLECT, f"{opt.flag}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: {opt.flag} must be a finite number, got '{value}'"])


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1.5"])
@pytest.mark.parametrize("opt", INT_OPTIONS, ids=lambda o: o.name)
def test_an_int_option_must_be_a_whole_number(pytester: pytest.Pytester, opt: _Option, value: str) -> None:
    result = pytester.runpytest_inprocess(*COLLECT, f"{opt.flag}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: {opt.flag}: expected a whole number, got '{value}'"])


@pytest.mark.parametrize(("ini", "message"), [
    ("osi_temperature = inf", "osi_temperature must be a finite number, got 'inf'"),
    ("osi_timeout = -inf", "osi_timeout must be a finite number, got '-inf'"),
    ("osi_concurrency = nan", "osi_concurrency: expected a whole number, got 'nan'"),
])
def test_non_finite_ini_values_name_the_key(pytester: pytest.Pytester, ini: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_inprocess(*COLLECT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: {message}"])


@pytest.mark.parametrize("key", ["osi_judge_json_schema", "osi_strict"])
@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_an_unreadable_ini_boolean_names_the_key_and_the_spellings(pytester: pytest.Pytester, key: str, value: str) -> None:
    pytester.makeini(f"[pytest]\n{key} = {value}\n")
    result = pytester.runpytest_inprocess(*COLLECT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: {key}: expected a boolean "
                                 f"(true/false, yes/no, 1/0, on/off), got '{value}'"])


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("True", True), ("yes", True), ("ON", True), ("1", True), ("y", True),
    ("false", False), ("No", False), ("off", False), ("0", False), ("f", False), ("", None),
])
def test_ini_booleans_accept_the_usual_spellings(pytester: pytest.Pytester, value: str, expected: bool | None) -> None:
    show_settings(pytester)
    pytester.makeini(f"[pytest]\nosi_strict = {value}\nosi_judge_json_schema = {value}\n")
    result = collect_ok(pytester)
    assert f" strict={expected} judge_json_schema={expected} " in settings_line(result)


def test_a_command_line_boolean_wins_over_the_ini_value(pytester: pytest.Pytester) -> None:
    show_settings(pytester)
    pytester.makeini("[pytest]\nosi_strict = maybe\nosi_judge_json_schema = yes\n")
    result = collect_ok(pytester, "--osi-strict", "--osi-no-judge-json-schema")
    assert " strict=True judge_json_schema=False " in settings_line(result)


@pytest.mark.skipif(pytest.version_tuple < (9, 2), reason="native TOML values for plugin ini keys need pytest 9.2")
def test_native_toml_values_are_read_and_checked(pytester: pytest.Pytester) -> None:
    show_settings(pytester)
    pytester.makepyprojecttoml("[tool.pytest]\nosi_strict = true\nosi_judge_json_schema = false\n"
                               "osi_temperature = 0.5\nosi_timeout = 30\nosi_concurrency = 3\n")
    result = collect_ok(pytester)
    assert " strict=True judge_json_schema=False temperature=0.5 timeout=30.0 concurrency=3 " in settings_line(result)

    pytester.makepyprojecttoml("[tool.pytest]\nosi_timeout = inf\n")  # TOML has an inf literal
    result = pytester.runpytest_inprocess(*COLLECT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-osi: osi_timeout must be a finite number, got inf"])


def test_ini_options_in_pyproject_toml_read_as_text(pytester: pytest.Pytester) -> None:
    show_settings(pytester)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nosi_strict = true\nosi_judge_json_schema = "maybe"\n')
    result = pytester.runpytest_inprocess(*SHOW, *COLLECT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-osi: osi_judge_json_schema: expected a boolean*got 'maybe'"])


def test_fail_on_drop_entries_are_parsed_into_rules(pytester: pytest.Pytester) -> None:
    show_settings(pytester)
    pytester.makeini("[pytest]\nosi_fail_on_drop =\n    triplet_safety:0.05\n    flip_rate : 0\n")
    result = collect_ok(pytester)
    assert " fail_on_drop=['triplet_safety:0.05', 'flip_rate:0'] " in settings_line(result)
    result = collect_ok(pytester, "--osi-fail-on-drop=mean_utility:0.1")
    assert " fail_on_drop=['mean_utility:0.1'] " in settings_line(result)  # the command line replaces the ini list


@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--osi-fail-on-drop=triplet_safty:0.05"], "",
     "*--osi-fail-on-drop: drop rule 'triplet_safty:0.05' names unknown metric 'triplet_safty'; known metrics: *"),
    (["--osi-fail-on-drop=triplet_safety:-0.1"], "",
     "*--osi-fail-on-drop: drop rule 'triplet_safety:-0.1': the margin must be a finite number >= 0*"),
    (["--osi-fail-on-drop=triplet_safety:nan"], "", "*--osi-fail-on-drop: drop rule*margin must be a finite number*"),
    (["--osi-fail-on-drop=triplet_safety:inf"], "", "*--osi-fail-on-drop: drop rule*margin must be a finite number*"),
    (["--osi-fail-on-drop=triplet_safety"], "", "*--osi-fail-on-drop: malformed drop rule 'triplet_safety': expected METRIC:MARGIN*"),
    ([], "osi_fail_on_drop = flip_rate:lots\n", "*osi_fail_on_drop: drop rule 'flip_rate:lots': the margin must be a number*"),
], ids=["unknown-metric", "negative", "nan", "inf", "no-margin", "ini"])
def test_a_bad_fail_on_drop_entry_is_a_usage_error_naming_the_option(pytester: pytest.Pytester, args: list[str],
                                                                      ini: str, message: str) -> None:
    pytester.makeini("[pytest]\n" + ini)
    result = pytester.runpytest_inprocess(*COLLECT, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize("gate", ["triplet_safety>=2", "flip_rate<0", "mean_safety>1.5"])
def test_a_gate_that_can_never_pass_stops_the_run(pytester: pytest.Pytester, gate: str) -> None:
    result = pytester.runpytest_inprocess(*COLLECT, f"--osi-gate={gate}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    metric = gate.split("<")[0].split(">")[0]
    result.stderr.fnmatch_lines([f"ERROR: pytest-osi: gate '{gate}' can never pass: {metric} ranges from 0 to 1"])


def test_a_floor_and_a_ceiling_on_one_metric_are_both_kept(pytester: pytest.Pytester) -> None:
    show_settings(pytester)
    pytester.makeini("[pytest]\nosi_gates =\n    mean_utility>=0.4\n    mean_utility<=0.9\n")
    result = collect_ok(pytester)
    assert " gates=['mean_utility>=0.4', 'mean_utility<=0.9'] " in settings_line(result)


def test_defaults_are_written_once_in_options() -> None:
    from pytest_osi.options import Settings

    settings = Settings()
    for opt in OPTIONS:
        if opt.kind not in ("list", "paths"):
            assert getattr(settings, opt.key) == opt.default, opt.name
