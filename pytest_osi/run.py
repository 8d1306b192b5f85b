"""The state of one pytest-osi run, and the roles a process plays in it.

:class:`RunState` holds what the run knows: the loaded cases per dataset file, the results
collected so far (from this process or from xdist workers' reports), which files were
collected, and the lazily built pipeline. It is created at configure time and stays cheap
until a model is needed.

The *role* says what this process does with it, as pytest-cov's Central / DistMaster /
DistWorker do: a plain run evaluates and summarises (:class:`Central`); under xdist the
controller only summarises what the workers report (:class:`DistController`) and each worker
only evaluates what it is handed (:class:`DistWorker`). The "is this a worker" question is
asked once, in :func:`role_for`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_osi.options import Settings
from pytest_osi.pipeline import PipelineFactory, replay_only, uses_local
from pytest_osi.redaction import secret_scope

if TYPE_CHECKING:
    from pytest_osi.cases.base import Case, CaseResult
    from pytest_osi.baseline import Baseline
    from pytest_osi.cases.engine import Evaluator
    from pytest_osi.storage.snapshots import BaselineTally


@dataclass(frozen=True)
class Role:
    name: str
    evaluates: bool  # this process calls models
    summarises: bool  # this process computes metrics, gates, the summary and the report
    schedules_at_collection: bool  # all selected cases are known at collection (else: per setup)


CENTRAL = Role("central", evaluates=True, summarises=True, schedules_at_collection=True)
DIST_CONTROLLER = Role("dist-controller", evaluates=False, summarises=True, schedules_at_collection=False)
DIST_WORKER = Role("dist-worker", evaluates=True, summarises=False, schedules_at_collection=False)


def role_for(config: pytest.Config) -> Role:
    if hasattr(config, "workerinput"):
        return DIST_WORKER
    if getattr(config.option, "dist", "no") != "no":
        return DIST_CONTROLLER
    return CENTRAL


def _result_key(result: CaseResult) -> tuple[str, str]:
    return (result.kind, result.case_id)


@dataclass(eq=False)
class RunState:
    config: pytest.Config
    settings: Settings
    role: Role
    cases: dict[Path, list[Any]] = field(default_factory=dict)  # Case objects per dataset file
    results: dict[tuple[str, str], CaseResult] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    expected_files: set[Path] = field(default_factory=set)  # datasets we named as test paths
    collected_files: set[Path] = field(default_factory=set)
    _sent: set[tuple[str, str]] = field(default_factory=set)
    scheduled_any: bool = False  # this process scheduled a case's calls
    baseline: BaselineTally = field(default_factory=lambda: _tally())
    baseline_report: Baseline | None = None  # --osi-baseline, loaded at start
    snapshot_baseline: Baseline | None = None  # the verdict snapshots as they were at start
    deselected: int = 0  # items -k / -m / --lf deselected
    _factory: PipelineFactory | None = None
    _evaluator: Evaluator | None = None
    _resources: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def start(cls, config: pytest.Config, settings: Settings) -> RunState:
        state = cls(config, settings, role_for(config))
        from pytest_osi.storage.snapshots import freeze

        freeze(False, config)  # a new run may write snapshots (the flag outlives an in-process run)
        try:
            state._resources.enter_context(secret_scope())  # keys registered by this run die with it
            state._resources.enter_context(sigterm_as_interrupt())
            if uses_local(settings) and not replay_only(settings):
                from pytest_osi.calls.local import check_local_extra

                check_local_extra()  # a clear usage error naming the install command, up front
            state.load_datasets()
            # Two datasets sharing one snapshot directory (sets.yaml + sets.json side by side, or
            # one stem under osi_snapshot_dir) would overwrite and delete each other's snapshots.
            from pytest_osi.errors import ConfigError
            from pytest_osi.storage.snapshots import snapshot_directory

            owners: dict[Path, Path] = {}
            for path in state.cases:
                other = owners.setdefault(snapshot_directory(path, settings.snapshot_dir).resolve(), path)
                if other != path:
                    raise ConfigError(f"datasets {other} and {path} share the verdict snapshot directory "
                                      f"{snapshot_directory(path, settings.snapshot_dir)}: rename one of them "
                                      "(snapshots are stored per file stem)")
            if state.role.summarises and "rewrite" in (settings.record, settings.record_model):
                state._resources.enter_context(_run_id_in_environment())  # xdist workers inherit it
            if settings.baseline is not None and state.role.summarises:
                from pytest_osi.baseline import load_baseline_report

                state.baseline_report = load_baseline_report(settings.baseline)  # a bad file: usage error, now
            elif state.role.summarises:
                from pytest_osi.baseline import baseline_from_snapshots

                # Read now: --snapshot-update rewrites them during the run, and the version diff
                # would then compare the run with itself.
                state.snapshot_baseline = baseline_from_snapshots(state)
        except BaseException:
            state._resources.close()  # no signal handler or secret scope outlives a failed start
            raise
        state._prewarm()
        return state

    # -- datasets ----------------------------------------------------------------------------

    def load_datasets(self) -> None:
        """Load and validate every configured dataset now, before any item or model call.
        A file holds prompt-sets or clarification scenarios (told apart by its content)."""
        if not self.settings.datasets:
            return
        from pytest_osi.cases.prompt_sets.loader import UniqueIds, load_prompt_sets, load_taxonomy
        from pytest_osi.cases.scenarios.conversation import conversations
        from pytest_osi.cases.scenarios.loader import is_scenario_file, load_scenarios

        taxonomy = load_taxonomy(self.settings.taxonomy) if self.settings.taxonomy else None
        ids = UniqueIds()
        for path in self.settings.datasets:
            cases: list[Any]
            if is_scenario_file(path):
                scenarios = load_scenarios(path, harm_domains=taxonomy)
                rows: list[Any] = list(scenarios)
                cases = conversations(scenarios)
            else:
                rows = cases = list(load_prompt_sets(path, min_paraphrases=self.settings.min_paraphrases,
                                                     harm_domains=taxonomy))
            for index, row in enumerate(rows):
                ids.claim(row.id, str(path), index)
            _check_item_ids(path, cases, self.settings.checks)
            self.cases[path] = list(cases)

    def configured_result_ids(self) -> set[tuple[str, str]]:
        """(kind, result id) of every configured case: what a full run must have graded."""
        return {(getattr(type(c), "kind", ""), getattr(c, "result_id", c.id)) for cases in self.cases.values() for c in cases}

    @property
    def configured_count(self) -> int:
        return sum(len(cases) for cases in self.cases.values())

    def configured_ids(self) -> dict[str, str]:
        """Each configured case's item id -> the scope its items share on one xdist worker
        (a prompt-set: itself; a conversation: its scenario, whose flows share calls)."""
        return {case.id: getattr(case, "scope", case.id) for cases in self.cases.values() for case in cases}

    # -- evaluation --------------------------------------------------------------------------

    def _prewarm(self) -> None:
        """Import litellm in the background while pytest collects, in processes that will call
        a model: the import costs seconds, and the first call would otherwise wait for all of it."""
        if not (self.cases and self.settings.model) or not self.role.evaluates or self.config.option.collectonly:
            return
        if replay_only(self.settings):
            return  # --osi-record=none never calls a model: litellm is not even imported
        from pytest_osi.calls.client import import_litellm

        threading.Thread(target=import_litellm, name="pytest-osi-prewarm", daemon=True).start()

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            self._factory = PipelineFactory(self.settings, self.config.hook, rootdir=self.config.rootpath)
            self._evaluator = self._factory.build()
        return self._evaluator

    def schedule(self, cases: list[Case]) -> None:
        self.scheduled_any = self.scheduled_any or bool(cases)
        for case in cases:
            self.evaluator.schedule(case)

    def result_for(self, case: Case) -> CaseResult:
        """``case``'s result. Should its evaluation fail outside the pipeline (the scheduler
        died, the loop is blocked), the case still gets a result -- a model-error -- so it is
        counted in the metrics and gates, never silently dropped."""
        from pytest_osi.cases.base import kind_of
        from pytest_osi.errors import OsiError
        from pytest_osi.text import shown

        try:
            return self.evaluator.result(case)
        except OsiError as exc:
            return kind_of(case).error_result(case, "model-error", shown(str(exc), 2000))

    # -- results -----------------------------------------------------------------------------

    def take_unsent(self, results: list[CaseResult]) -> list[CaseResult]:
        """The results not yet attached to a report by this process (and mark them sent)."""
        unsent = [r for r in results if _result_key(r) not in self._sent]
        self._sent.update(_result_key(r) for r in unsent)
        return unsent

    def record(self, result: CaseResult) -> None:
        self.results.setdefault(_result_key(result), result)

    def record_from_report(self, report: Any) -> None:
        """Keep the results a test report carries (this process's, or an xdist worker's), and
        the outcome of its check against the verdict snapshot."""
        judged = getattr(report, "osi_baseline", None)
        if judged and report.when == "call":
            self.baseline.add(judged[0], report.nodeid, judged[1])
        entries = getattr(report, "osi_results", None) or ()
        if entries:
            from pytest_osi.cases.base import result_from_dict

            for entry in entries:
                self.record(result_from_dict(entry))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        try:
            if self._factory is not None:
                self._factory.close()
        finally:
            self._resources.close()


def _check_item_ids(path: Path, cases: list[Any], checks: tuple[str, ...]) -> None:
    """A dataset's items must be told apart -- by pytest (item ids), by the evaluator and by
    their snapshot files (syrupy drops characters such as '/' and ':' from file names) -- and
    the selected checks must leave it at least one item."""
    from pytest_osi.cases.base import kinds
    from pytest_osi.errors import DatasetError
    from pytest_osi.storage.snapshots import VerdictSnapshotExtension

    seen: dict[str, Any] = {}
    for case in cases:
        for key in {case.id, VerdictSnapshotExtension._sanitize_filename(case.id)}:
            if key in seen and seen[key] is not case:
                raise DatasetError(str(path), f"cases {seen[key].id!r} and {case.id!r} would share the item id or snapshot "
                                              f"file {key!r}: rename one (ids differing only in '/', ':', '\\', '?', "
                                              "'*', '|', '\"', '<', '>' or control characters collide)")
            seen[key] = case
    present = {getattr(type(c), "kind", "") for c in cases}
    for kind in present:
        if not any(check.name in checks for check in kinds()[kind].checks):
            raise DatasetError(str(path), f"none of the selected checks ({', '.join(checks)}) applies to its "
                                          f"{kinds()[kind].label}s; choose from "
                                          f"{', '.join(c.name for c in kinds()[kind].checks)}", field="--osi-checks")


@contextmanager
def _run_id_in_environment() -> Iterator[str]:
    """A --osi-record=rewrite run's id, in the environment every process of the run sees, so
    each records the store keys it used under it and the pruning process knows them all."""
    from pytest_osi.calls.store import RUN_ID_ENV, new_run_id

    previous = os.environ.get(RUN_ID_ENV)
    run_id = os.environ[RUN_ID_ENV] = new_run_id()
    try:
        yield run_id
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous


def prune_note(state: RunState, complete: bool) -> str | None:
    """After a --osi-record=rewrite run: prune the entries it did not use -- only when the run
    was complete, nothing was deselected and every configured case was graded (otherwise an
    entry the run did not reach would be lost) -- and say what happened."""
    from pytest_osi.calls.store import RUN_ID_ENV, prune_run

    run_id = os.environ.get(RUN_ID_ENV)
    if "rewrite" not in (state.settings.record, state.settings.record_model) or run_id is None:
        return None
    graded = {key for key, result in state.results.items() if result.graded}
    wanted = state.configured_result_ids()
    if not complete or state.deselected or not wanted or not wanted <= graded:
        return ("call store: not pruned (--osi-record=rewrite prunes only after a complete run of every configured "
                "case with nothing deselected or ungraded)")
    removed = prune_run(state.settings, state.config.rootpath, run_id)
    return f"call store: pruned {removed} entr{'y' if removed == 1 else 'ies'} this run did not use"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (what CI runners send on cancel or timeout) like Ctrl-C: pytest then stops
    the run, the report is written marked incomplete, gates are not enforced, and the local
    server and other children are stopped by the usual cleanup. Only in the main thread, and
    only where nobody else has claimed the signal."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _tally() -> BaselineTally:
    from pytest_osi.storage.snapshots import BaselineTally

    return BaselineTally()


RUN_KEY = pytest.StashKey[RunState]()


def run_state(config: pytest.Config) -> RunState | None:
    return config.stash.get(RUN_KEY, None)
