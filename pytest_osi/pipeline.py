"""Building the machinery a run calls models with: the scheduler, the client (wrapped by the
call-store seam), the endpoints, the local model server when asked for, the judge's answer
format, and the evaluator. Built lazily, on the first case that needs it, so that runs which
never call a model never import litellm or start a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_osi.options import LOCAL, Settings

if TYPE_CHECKING:
    from pytest_osi.calls.client import Endpoint
    from pytest_osi.calls.local import LocalModelServer
    from pytest_osi.calls.scheduler import Scheduler
    from pytest_osi.cases.engine import Evaluator, JudgeFormat

# The local server answers one request at a time: more in flight only queues calls inside it,
# where they run out their timeouts instead of waiting in our limiter.
LOCAL_CONCURRENCY = 2
REPLAY_LOCAL_BASE = "http://127.0.0.1/v1"


def uses_local(settings: Settings) -> bool:
    return LOCAL in (settings.model, settings.judge_model, settings.simulator_model)


def replay_only(settings: Settings) -> bool:
    """--osi-record=none for every call: nothing is ever sent to a model."""
    return {settings.record, settings.record_model or settings.record} == {"none"}


def concurrency(settings: Settings) -> int:
    return min(settings.concurrency, LOCAL_CONCURRENCY) if uses_local(settings) else settings.concurrency


@dataclass
class PipelineFactory:
    settings: Settings
    hooks: Any  # pytest's hook relay
    rootdir: Path | None = None  # the call store lives in .osi-cache under it (unless --osi-cache-dir)
    scheduler: Scheduler | None = None
    _local: LocalModelServer | None = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def build(self) -> Evaluator:
        from pytest_osi.calls.client import LLMClient, RetryPolicy
        from pytest_osi.calls.scheduler import Scheduler
        from pytest_osi.calls.store import wrap_client
        from pytest_osi.cases.base import kind_of
        from pytest_osi.cases.engine import CallContext, Evaluator

        s = self.settings
        model = self.endpoint(s.model, s.model_api_base)
        judge = self.endpoint(s.judge_model, s.judge_base)
        self.scheduler = Scheduler(concurrency(s))
        client = wrap_client(LLMClient(RetryPolicy(attempts=s.retries + 1, timeout=s.timeout)), s,
                             model_endpoint=model, rootdir=self.rootdir, cleanups=self._cleanups)
        simulator = self.endpoint(s.simulator_model, s.simulator_base)
        ctx = CallContext(s, self.hooks, client, self.scheduler, model, judge, self.judge_format(), simulator)
        return Evaluator(self.scheduler, ctx, lambda case: kind_of(case).pipeline())

    def endpoint(self, name: str | None, api_base: str | None) -> Endpoint | None:
        from pytest_osi.calls.client import Endpoint

        if name is None:
            return None
        if name == LOCAL:
            from pytest_osi.calls.local import LOCAL_API_KEY, model_string  # server machinery: only for local

            # A placeholder key: the user's real OPENAI_API_KEY has no business at a local server.
            # A replay-only run starts no server: the store's keys normalise loopback ports, so
            # any loopback base finds the recorded answers.
            api_base = REPLAY_LOCAL_BASE if replay_only(self.settings) else self.local_server().api_base
            return Endpoint(model_string(), api_base, LOCAL_API_KEY)
        return Endpoint(name, api_base)  # keys come from the environment, which redaction covers

    def local_server(self) -> LocalModelServer:
        """The embedded model's server: started once per process, stopped at session end."""
        from pytest_osi.calls.local import LocalModelServer

        if self._local is None:
            server = LocalModelServer()
            self._cleanups.append(server.stop)  # registered first: stopped even if start fails
            server.start()
            self._local = server
        return self._local

    def judge_format(self) -> JudgeFormat:
        """Constrained decoding for the judge: on by default for the local judge (it uses
        llama.cpp's dialect), opt-in with --osi-judge-json-schema for others."""
        wanted = self.settings.judge_json_schema
        if self.settings.judge_model == LOCAL and wanted is not False:
            from pytest_osi.calls.local import to_local_response_format

            return lambda rubric: to_local_response_format(rubric.response_format())
        if wanted:
            return lambda rubric: rubric.response_format()
        return lambda rubric: None

    def close(self) -> None:
        """Stop the loop (closing litellm's HTTP clients on it) and run the cleanups -- the
        local server's stop among them -- whatever happened before."""
        try:
            if self.scheduler is not None:
                self.scheduler.close(_litellm_cleanup())
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
