"""The per-run state of pytest-osi, created at configure time, cheap until a model is needed.

It owns the loaded prompt-sets, builds the scheduler, client and evaluator lazily (so runs that
never call a model never import litellm), and collects graded results as reports arrive --
in-process or from xdist workers alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
import threading
from typing import TYPE_CHECKING, Any

import pytest

from pytest_osi.options import LOCAL, Settings
from pytest_osi.cases.prompt_sets.result import PromptSetResult

if TYPE_CHECKING:
    from pytest_osi.cases.prompt_sets.model import PromptSet
    from pytest_osi.cases.prompt_sets.pipeline import Evaluator
    from pytest_osi.calls.scheduler import Scheduler

LOCAL_CONCURRENCY = 2

# Heavy modules (pydantic models, the evaluation pipeline) are imported inside the methods that
# need them: this object exists in every pytest run that has the plugin installed.


@dataclass(eq=False)  # identity-hashable: it is registered as a plugin
class OsiSession:
    config: pytest.Config
    settings: Settings
    prompt_sets: dict[Path, list[PromptSet]] = field(default_factory=dict)
    results: dict[str, PromptSetResult] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _evaluator: Evaluator | None = None
    _scheduler: Scheduler | None = None
    _cleanups: list[Any] = field(default_factory=list)
    _local: Any = None
    expected_files: set[Path] = field(default_factory=set)  # datasets we named as test paths
    collected_files: set[Path] = field(default_factory=set)
    _sent: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, config: pytest.Config, settings: Settings) -> OsiSession:
        session = cls(config, settings)
        if session.uses_local:
            from pytest_osi.calls.local import check_local_extra

            check_local_extra()  # a clear usage error naming the install command, up front
        session.load_datasets()
        session._prewarm()
        return session

    def _prewarm(self) -> None:
        """Import litellm in the background while pytest collects, in processes that will call
        a model: the import costs seconds, and the first call would otherwise wait for all of it.
        (The xdist controller calls nothing, and a collect-only run never calls anything.)"""
        config = self.config
        controller = getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")
        if not (self.prompt_sets and self.settings.model) or controller or config.option.collectonly:
            return
        from pytest_osi.calls.client import import_litellm

        threading.Thread(target=import_litellm, name="pytest-osi-prewarm", daemon=True).start()

    def load_datasets(self) -> None:
        """Load and validate every configured dataset now, before any item or model call."""
        if not self.settings.datasets:
            return
        from pytest_osi.cases.prompt_sets.loader import load_prompt_sets, load_taxonomy
        from pytest_osi.errors import DatasetError

        taxonomy = load_taxonomy(self.settings.taxonomy) if self.settings.taxonomy else None
        seen: dict[str, Path] = {}
        for path in self.settings.datasets:
            sets = load_prompt_sets(path, min_paraphrases=self.settings.min_paraphrases, harm_domains=taxonomy)
            for index, prompt_set in enumerate(sets):
                if prompt_set.id in seen:
                    raise DatasetError(str(path), f"id {prompt_set.id!r} is also used in {seen[prompt_set.id]}: "
                                       "ids must be unique across datasets", row=index, row_id=prompt_set.id, field="id")
                seen[prompt_set.id] = path
            self.prompt_sets[path] = sets

    # -- evaluation ------------------------------------------------------------------------

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = self._build_evaluator()
        return self._evaluator

    def _build_evaluator(self) -> Evaluator:
        from pytest_osi.calls.client import LLMClient, RetryPolicy
        from pytest_osi.cases.prompt_sets.pipeline import Evaluator
        from pytest_osi.calls.scheduler import Scheduler

        s = self.settings
        model = self._endpoint(s.model, s.model_api_base)
        judge = self._endpoint(s.judge_model, s.judge_base)
        self._scheduler = Scheduler(self.concurrency)
        client = LLMClient(RetryPolicy(attempts=s.retries + 1, timeout=s.timeout))
        return Evaluator(s, self.config.hook, self._scheduler, client, model, judge, self._judge_format())

    @property
    def uses_local(self) -> bool:
        return LOCAL in (self.settings.model, self.settings.judge_model)

    @property
    def concurrency(self) -> int:
        # The local server answers one request at a time: more in flight only queues calls
        # inside it, where they run out their timeouts instead of waiting in our limiter.
        return min(self.settings.concurrency, LOCAL_CONCURRENCY) if self.uses_local else self.settings.concurrency

    def _endpoint(self, name: str | None, api_base: str | None) -> Any:
        from pytest_osi.calls.client import Endpoint

        if name is None:
            return None
        if name == LOCAL:
            from pytest_osi.calls.local import LOCAL_API_KEY, model_string  # server machinery: only for local

            # A placeholder key: the user's real OPENAI_API_KEY has no business at a local server.
            return Endpoint(model_string(), self.local_server().api_base, LOCAL_API_KEY)
        return Endpoint(name, api_base)

    def local_server(self) -> Any:
        """The embedded model's server: started once per process, stopped at session end."""
        from pytest_osi.calls.local import LocalModelServer

        if self._local is None:
            server = LocalModelServer()
            self._cleanups.append(server.stop)  # registered first: stopped even if start fails
            server.start()
            self._local = server
        return self._local

    def _judge_format(self) -> Any:
        """Constrained decoding for the judge: on by default for the local judge (it uses
        llama.cpp's dialect), opt-in with --osi-judge-json-schema for others."""
        from pytest_osi.calls.local import to_local_response_format

        wanted = self.settings.judge_json_schema
        if self.settings.judge_model == LOCAL and wanted is not False:
            return lambda rubric: to_local_response_format(rubric.response_format())
        if wanted:
            return lambda rubric: rubric.response_format()
        return lambda rubric: None

    def schedule(self, prompt_sets: list[PromptSet]) -> None:
        for prompt_set in prompt_sets:
            self.evaluator.schedule(prompt_set)

    def result_for(self, prompt_set: PromptSet) -> PromptSetResult:
        return self.evaluator.result(prompt_set)

    @property
    def configured_set_count(self) -> int:
        return sum(len(sets) for sets in self.prompt_sets.values())

    def discard_stale_report(self) -> None:
        """Remove last run's report, so that a run which writes none can't pass for it."""
        if self.settings.report is not None:
            self.settings.report.unlink(missing_ok=True)

    def take_unsent(self, results: list[PromptSetResult]) -> list[PromptSetResult]:
        """The results not yet attached to a report by this process (and mark them sent)."""
        unsent = [r for r in results if r.set_id not in self._sent]
        self._sent.update(r.set_id for r in unsent)
        return unsent

    def record(self, result: PromptSetResult) -> None:
        self.results.setdefault(result.set_id, result)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Hook (this object is registered as a plugin): keep results that reports carry."""
        for entry in getattr(report, "osi_results", None) or ():
            self.record(PromptSetResult.from_dict(entry))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def judge_note(self) -> str | None:
        s = self.settings
        if s.judge_model == LOCAL:
            return ("the local judge (SmolLM2-135M) is a demonstration judge, not a trustworthy one: "
                    "for real verdicts point it at a capable model, e.g. --osi-judge=openai/gpt-4o")
        if s.judge is None and s.model is not None:
            return f"the judge is the model under test ({s.model}); set --osi-judge to grade with an independent model"
        return None

    def header_lines(self) -> list[str]:
        from pytest_osi.grading import HARM, HELPFULNESS

        s = self.settings
        sets = sum(len(v) for v in self.prompt_sets.values())
        lines = [f"osi: model={s.model or '(hook)'} judge={s.judge_model or '(hook)'} "
                 f"rubrics=harm@{HARM.version},helpfulness@{HELPFULNESS.version} concurrency={self.concurrency}"]
        if self.prompt_sets:
            lines.append(f"osi: {sets} prompt-set(s) from {len(self.prompt_sets)} dataset(s)")
        note = self.judge_note()
        if note:
            lines.append(f"osi: NOTE: {note}")
        return lines

    def close(self) -> None:
        """Stop the loop (closing litellm's HTTP clients on it) and run the cleanups -- the
        local server's stop among them -- whatever happened before."""
        try:
            if self._scheduler is not None:
                self._scheduler.close(_litellm_cleanup())
        finally:
            for callback in reversed(self._cleanups):
                callback()
            self._cleanups.clear()


def _litellm_cleanup() -> Any:
    """litellm's client cleanup, if litellm was imported (fully: a background prewarm import
    may still be under way, so ask the client module under its import lock)."""
    from pytest_osi.calls.client import imported_litellm

    litellm = imported_litellm()
    if litellm is None:
        return None
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    return close_litellm_async_clients


OSI_KEY = pytest.StashKey[OsiSession]()


def osi_session(config: pytest.Config) -> OsiSession | None:
    return config.stash.get(OSI_KEY, None)
