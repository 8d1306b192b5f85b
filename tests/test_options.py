"""pytest_osi.options: where relative paths resolve, and which values are usage errors.

Every run is ``--co`` with a model string that is never called: settings are read and
validated at configure time, before anything is collected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_plugin import prompt_set, write_sets

# Prints the resolved settings as a header line, so a test can see where paths went.
SHOW_SETTINGS = """
from pytest_osi.options import read_settings

def pytest_report_header(config):
    s = read_settings(config)
    return [f"osi-settings taxonomy={s.taxonomy} report={s.report} datasets={[str(p) for p in s.datasets]}"]
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
    (["--osi-timeout=nan"], "", "*--osi-timeout must be greater than 0*"),
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


def test_settings_has_no_unused_extras() -> None:
    from pytest_osi.options import Settings

    assert not hasattr(Settings(), "extras")
