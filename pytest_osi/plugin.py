"""pytest-osi's hooks. Thin on purpose: each hook delegates to the module that owns the concept."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_osi import hookspecs
from pytest_osi.distribution import make_scheduler
from pytest_osi.errors import ConfigError, DatasetError
from pytest_osi.fixtures import RESULTS_ATTR, osi_evaluate, osi_result  # noqa: F401 - registers the fixtures
from pytest_osi.options import add_options, read_settings
from pytest_osi.cases.prompt_sets.result import PromptSetResult
from pytest_osi.run import OSI_KEY, OsiSession, osi_session

if TYPE_CHECKING:
    from pytest_osi.reporting.summary import RunSummary

# Modules that need pydantic, litellm or the pipeline are imported inside the hooks that use
# them, and only once pytest-osi is actually in use: installing the plugin must not slow down
# pytest runs that never touch it (see benchmarks/throughput.py).
SUMMARY_KEY = pytest.StashKey["RunSummary"]()


def _prompt_sets_in_use() -> bool:
    """True once any PromptSet can exist (datasets loaded, or a test module loaded some)."""
    return "pytest_osi.cases.prompt_sets.model" in sys.modules


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _planning_only(config: pytest.Config) -> bool:
    """--setup-plan runs no fixture, so nothing will wait for a result: call nothing."""
    return bool(getattr(config.option, "setupplan", False))


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    try:
        settings = read_settings(config)
        session = OsiSession.start(config, settings)
    except (ConfigError, DatasetError) as exc:
        raise pytest.UsageError(f"pytest-osi: {exc}") from None
    config.stash[OSI_KEY] = session
    config.addinivalue_line("markers", "osi: a pytest-osi prompt-set check")
    # litellm silences this pydantic warning at import, but pytest resets warning filters per
    # test, so it would resurface in every run that calls a model. It is litellm's, not yours.
    config.addinivalue_line("filterwarnings", "ignore:.*`ReadOnly` qualifier:UserWarning")
    # The session object collects graded results from reports (its own or xdist workers').
    config.pluginmanager.register(session, "osi-session")
    if not _is_worker(config):
        session.discard_stale_report()
    _add_datasets_to_args(config, session)


def _add_datasets_to_args(config: pytest.Config, session: OsiSession) -> None:
    """Collect the datasets as test files. Ini datasets join the default run (like testpaths);
    datasets given with --osi-dataset are always collected. Each file is named itself, even
    under a directory that is also an argument: the directory walk may never reach it
    (norecursedirs, hidden or build directories), and a safety suite must not vanish quietly."""
    explicit_args = config.args_source == pytest.Config.ArgsSource.ARGS
    if explicit_args and config.getoption("osi_datasets") is None:
        return
    present = {Path(os.path.abspath(a.split("::")[0])) for a in config.args}
    for path in session.prompt_sets:
        if path not in present:
            config.args.append(str(path))
            session.expected_files.add(path)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    session = osi_session(parent.config)
    path = file_path.resolve()
    # Reached both as a named file and through a directory walk: collect it once.
    if session is not None and path in session.prompt_sets and path not in session.collected_files:
        from pytest_osi.items import PromptSetFile

        session.collected_files.add(path)
        return PromptSetFile.from_parent(parent, path=path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Collect configured datasets pytest's own walk did not reach. (With a directory and a file
    under it both as arguments, pytest 9 drops the file when the directory is in norecursedirs.)
    Runs before -k / -m / --lf deselection, so those apply as usual."""
    osi = osi_session(session.config)
    missing = sorted(osi.expected_files - osi.collected_files) if osi is not None else []
    if not missing:
        return
    from pytest_osi.items import PromptSetFile

    for path in missing:
        osi.collected_files.add(path)
        items.extend(session.genitems(PromptSetFile.from_parent(session, path=path)))


def pytest_itemcollected(item: pytest.Item) -> None:
    osi = osi_session(item.config)
    if osi is not None and osi.prompt_sets:
        from pytest_osi.items import add_keywords

        add_keywords(item)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Schedule every selected prompt-set's calls up front (after -k/-m/--lf deselection).
    # xdist workers schedule what they are handed instead, in pytest_runtest_setup.
    osi = osi_session(session.config)
    if osi is None:
        return
    if session.config.option.collectonly or _planning_only(session.config) or _is_worker(session.config) or not _prompt_sets_in_use():
        return
    from pytest_osi.items import prompt_sets_of

    sets = prompt_sets_of(session.items)
    if sets:
        _start_evaluation(osi)
        osi.schedule(sets)


def _start_evaluation(osi: OsiSession) -> None:
    """Build the pipeline (starting the local model server if asked for); a failure here ends
    the run with one clear message instead of an error per item."""
    from pytest_osi.errors import OsiError

    try:
        osi.evaluator  # noqa: B018 - builds it
    except OsiError as exc:
        pytest.exit(f"pytest-osi: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    osi = osi_session(item.config)
    if osi is not None and _is_worker(item.config) and _prompt_sets_in_use() and not _planning_only(item.config):
        from pytest_osi.items import prompt_sets_of, upcoming_items

        sets = prompt_sets_of(upcoming_items(item.session, item))
        if sets:
            _start_evaluation(osi)
            osi.schedule(sets)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    osi = osi_session(item.config)
    results: list[PromptSetResult] = getattr(item, RESULTS_ATTR, [])
    if report.when == "teardown" and results and osi is not None:
        # Plain JSON on the report: xdist serialises it to the controller unchanged. Each
        # set's result travels once, not once per check.
        unsent = osi.take_unsent(results)
        if unsent:
            report.osi_results = [r.to_dict() for r in unsent]
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, Any, Any]:
    complete = False
    try:
        result = yield
        complete = True
        return result
    finally:
        # Also after -x / --maxfail / Ctrl-C: summarise and report what was graded, marked
        # incomplete, rather than leaving no report (or last run's) behind.
        _summarise(session, complete)


def _summarise(session: pytest.Session, complete: bool) -> None:
    osi = osi_session(session.config)
    # Gates judge what this run graded. A run that graded nothing (`pytest tests/test_unit.py`
    # with datasets and gates in the ini file, or -k selecting no prompt-set) has no verdict.
    if osi is None or _is_worker(session.config) or not osi.results:
        return
    from pytest_osi.reporting.summary import RunSummary

    summary = RunSummary.build(osi.settings.model, osi.settings.judge_model, list(osi.results.values()),
                               osi.settings.gates, osi.elapsed(), osi.judge_note(),
                               configured_sets=osi.configured_set_count, complete=complete)
    session.config.stash[SUMMARY_KEY] = summary
    if summary.failed_gates and complete:
        # Like --cov-fail-under: a failed gate fails the run even when every item passed.
        session.testsfailed += 1


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    osi = osi_session(config)
    set_ids = {s.id for sets in osi.prompt_sets.values() for s in sets} if osi else set()
    # Enough queued items per worker to keep its share of the concurrency busy (3 checks a set).
    lookahead = 3 * osi.settings.concurrency if osi else 48
    return make_scheduler(config, log, set_ids, lookahead)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    summary = config.stash.get(SUMMARY_KEY, None)
    if summary is None:
        return
    from pytest_osi.reporting.summary import summary_lines

    terminalreporter.section("pytest-osi summary")
    for line in summary_lines(summary):
        terminalreporter.write_line(line, red=line.startswith("FAIL"), bold=line.startswith("FAIL"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    osi = osi_session(session.config)
    if osi is None:
        return
    summary = session.config.stash.get(SUMMARY_KEY, None)
    if summary is not None and osi.settings.report is not None:
        from pytest_osi.reporting.summary import write_report

        write_report(osi.settings.report, summary)


def pytest_report_header(config: pytest.Config) -> list[str]:
    osi = osi_session(config)
    if osi is None or not (osi.prompt_sets or osi.settings.model):
        return []
    return osi.header_lines()


def pytest_unconfigure(config: pytest.Config) -> None:
    osi = config.stash.get(OSI_KEY, None)
    if osi is not None:
        osi.close()
