"""pytest-osi's hooks. Thin on purpose: each hook delegates to the object that owns the concept
(the run state, its role, the items module, the reporting package).

Modules that need pydantic, litellm or the pipeline are imported inside the hooks that use
them, and only once pytest-osi is actually in use: installing the plugin must not slow down
pytest runs that never touch it (see benchmarks/throughput.py).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_osi import hookspecs
from pytest_osi.errors import OsiError
from pytest_osi.fixtures import RESULTS_ATTR, osi_evaluate, osi_result, osi_snapshot  # noqa: F401 - registers the fixtures
from pytest_osi.options import add_options, read_settings
from pytest_osi.run import RUN_KEY, RunState, run_state

if TYPE_CHECKING:
    from pytest_osi.reporting.summary import RunSummary

SUMMARY_KEY = pytest.StashKey["RunSummary"]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    from pytest_osi.run import role_for

    try:
        if role_for(config).summarises:
            from pytest_osi.reporting.report import prepare_report

            prepare_report(config)  # first: refuse an unusable path, remove last run's report
        settings = read_settings(config)
        state = RunState.start(config, settings)
    except OsiError as exc:  # a bad option, dataset or baseline: a usage error, before any call
        raise pytest.UsageError(f"pytest-osi: {exc}") from None
    config.stash[RUN_KEY] = state
    config.addinivalue_line("markers", "osi: a pytest-osi check")
    # litellm silences this pydantic warning at import, but pytest resets warning filters per
    # test, so it would resurface in every run that calls a model. It is litellm's, not yours.
    config.addinivalue_line("filterwarnings", "ignore:.*`ReadOnly` qualifier:UserWarning")
    config.pluginmanager.register(OsiPlugin(state), "osi-run")
    _add_datasets_to_args(config, state)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(RUN_KEY, None)
    if state is not None:
        state.close()


def _add_datasets_to_args(config: pytest.Config, state: RunState) -> None:
    """Collect the datasets as test files. Ini datasets join the default run (like testpaths);
    datasets given with --osi-dataset are always collected. Each file is named itself, even
    under a directory that is also an argument: the directory walk may never reach it
    (norecursedirs, hidden or build directories), and a safety suite must not vanish quietly."""
    explicit_args = config.args_source == pytest.Config.ArgsSource.ARGS
    if explicit_args and config.getoption("osi_datasets") is None:
        return
    present = {Path(os.path.abspath(a.split("::")[0])) for a in config.args}
    for path in state.cases:
        if path not in present:
            config.args.append(str(path))
            state.expected_files.add(path)


def _planning_only(config: pytest.Config) -> bool:
    """--setup-plan runs no fixture, so nothing will wait for a result: call nothing."""
    return bool(getattr(config.option, "setupplan", False))


class OsiPlugin:
    """The hooks that need the run state, registered once per run."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        path = file_path.resolve()
        # Reached both as a named file and through a directory walk: collect it once.
        if path in self.state.cases and path not in self.state.collected_files:
            from pytest_osi.items import DatasetFile

            self.state.collected_files.add(path)
            return DatasetFile.from_parent(parent, path=path)
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        """Collect configured datasets pytest's own walk did not reach. (With a directory and a
        file under it both as arguments, pytest 9 drops the file when the directory is in
        norecursedirs.) Runs before -k / -m / --lf deselection, so those apply as usual."""
        missing = sorted(self.state.expected_files - self.state.collected_files)
        if not missing:
            return
        from pytest_osi.items import DatasetFile

        for path in missing:
            self.state.collected_files.add(path)
            items.extend(session.genitems(DatasetFile.from_parent(session, path=path)))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.state.deselected += len(items)

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        if self.state.cases:
            from pytest_osi.items import add_keywords

            add_keywords(item)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Schedule every selected case's calls up front (after -k/-m/--lf deselection).
        # xdist workers schedule what they are handed instead, in pytest_runtest_setup.
        config = session.config
        if not self.state.role.schedules_at_collection or config.option.collectonly or _planning_only(config):
            return
        self._schedule(session.items)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.state.role.schedules_at_collection or _planning_only(item.config):
            return
        from pytest_osi.distribution import upcoming_items

        self._schedule(upcoming_items(item.session, item))

    def _schedule(self, items: list[Any]) -> None:
        from pytest_osi.cases.base import in_use

        if not in_use():  # no case object exists in this process: nothing to look for
            return
        from pytest_osi.items import cases_of

        cases = cases_of(items)
        if cases:
            self._start_evaluation()
            self.state.schedule(cases)

    def _start_evaluation(self) -> None:
        """Build the pipeline (starting the local model server if asked for); a failure here
        ends the run with one clear message instead of an error per item."""
        from pytest_osi.errors import OsiError

        try:
            self.state.evaluator  # noqa: B018 - builds it
        except OsiError as exc:
            pytest.exit(f"pytest-osi: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if report.when == "call":
            from pytest_osi.storage.snapshots import JUDGED_ATTR

            judged = getattr(item, JUDGED_ATTR, None)
            if judged is not None:
                report.osi_baseline = list(judged)  # (check, status): travels under xdist too
        results = getattr(item, RESULTS_ATTR, [])
        if report.when == "teardown" and results:
            # Plain JSON on the report: xdist serialises it to the controller unchanged. Each
            # case's result travels once, not once per check.
            unsent = self.state.take_unsent(results)
            if unsent:
                report.osi_results = [r.to_dict() for r in unsent]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.state.record_from_report(report)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, Any]:
        complete = False
        try:
            result = yield
            complete = True
            return result
        finally:
            if not complete or session.shouldstop or session.shouldfail:
                from pytest_osi.storage.snapshots import freeze

                freeze()  # an incomplete run never rewrites or deletes a verdict snapshot
            # Also after -x / --maxfail / Ctrl-C: summarise and report what was graded, marked
            # incomplete, rather than leaving no report (or last run's) behind.
            self._summarise(session, complete and not (session.shouldstop or session.shouldfail))

    def _summarise(self, session: pytest.Session, complete: bool) -> None:
        # Gates judge what this run graded. A run that graded nothing (`pytest tests/test_unit.py`
        # with datasets and gates in the ini file, or -k selecting no case) has no verdict.
        # An interrupted run that had started grading still reports (marked incomplete), even
        # if nothing finished: "no report" must not look like "nothing was asked".
        started = self.state.scheduled_any or (self.state.role.name == "dist-controller" and bool(self.state.cases))
        if not self.state.role.summarises or not (self.state.results or (started and not complete)):
            return
        from pytest_osi.reporting.summary import RunSummary

        from dataclasses import replace

        from pytest_osi.run import prune_note

        summary = replace(RunSummary.from_run(self.state, complete), store_note=prune_note(self.state, complete))
        session.config.stash[SUMMARY_KEY] = summary
        if (summary.failed_gates or summary.drop_failures) and complete:
            # Like --cov-fail-under: a failed gate (or a drop beyond --osi-fail-on-drop) fails
            # the run even when every item passed.
            session.testsfailed += 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from pytest_osi.distribution import make_scheduler

        # Enough queued items per worker to keep its share of the concurrency busy (3 checks a set).
        return make_scheduler(config, log, self.state.configured_ids(), 3 * self.state.settings.concurrency)

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        summary = config.stash.get(SUMMARY_KEY, None)
        if summary is None:
            return
        from pytest_osi.reporting.summary import summary_lines

        terminalreporter.section("pytest-osi summary")
        for line in summary_lines(summary):
            terminalreporter.write_line(line, red=line.startswith("FAIL"), bold=line.startswith("FAIL"))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        summary = session.config.stash.get(SUMMARY_KEY, None)
        if summary is not None and self.state.settings.report is not None:
            from pytest_osi.reporting.report import write_report

            write_report(self.state.settings.report, summary)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        if not (self.state.cases or self.state.settings.model):
            return []
        from pytest_osi.reporting.summary import header_lines

        return header_lines(self.state)
