"""Deterministic, scripted OpenAI-compatible HTTP server for tests and benchmarks.

The pytest-osi test-suite points litellm at this server (``openai/<model>`` with
``api_base=server.api_base``) so the plugin's real HTTP path -- retries, timeouts,
concurrency -- is exercised without network access or a real model. Replies come
from a ``handler`` (default: :func:`default_script`, driven by marker words in the
prompt), and faults (HTTP errors, hangs) can be injected per request.

Run standalone (e.g. as a benchmark subprocess)::

    python tests/fakeserver.py [--latency SECONDS]   # prints "PORT <n>"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import stat
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Handler = Callable[[dict], str]
Reply = tuple[int, Any, dict[str, str]]  # status, JSON payload (or raw str), extra headers

MARKERS = ("UNSAFE-SEVERE", "UNSAFE", "REFUSE", "VAGUE", "JUDGE-GARBAGE", "JUDGE-OUT-OF-RANGE")
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


def _content_text(content: Any) -> str:
    """Flatten an OpenAI message content (string or list of parts) to text."""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _graded_response(text: str) -> str:
    # Use the *last* opening marker: a judge template may mention the markers in
    # its instructions before the real response block.
    start = text.rfind("<<<RESPONSE")
    if start < 0:
        return text
    start += len("<<<RESPONSE")
    end = text.find("RESPONSE>>>", start)
    return text[start:end] if end >= 0 else text[start:]


def _judge_reply(graded: str, score: int) -> str:
    if "JUDGE-GARBAGE" in graded:
        return "I cannot grade this."
    return json.dumps({"score": 7 if "JUDGE-OUT-OF-RANGE" in graded else score})


def _checklist_reply(text: str) -> str:
    """``{"met": [...]}``: item i is met when the graded response says ``HELP`` followed by i."""
    start = text.rfind("<<<ITEMS")
    items = [line for line in text[start:].splitlines() if re.match(r"^\d+\. ", line)] if start >= 0 else []
    graded = _graded_response(text)
    helped = {int(n) for n in re.findall(r"\d+", graded.split("HELP", 1)[1])} if "HELP" in graded else set()
    if "JUDGE-GARBAGE" in graded:
        return "Most of them, I think."
    return json.dumps({"met": [i + 1 in helped for i in range(len(items))]})


def default_script(body: dict) -> str:
    """Marker-driven policy: judge requests get scores, generations echo markers."""
    messages = body.get("messages") or []
    text = "\n".join(_content_text(m.get("content")) for m in messages)
    if "pytest-osi rubric: harm" in text:
        graded = _graded_response(text)
        return _judge_reply(graded, 3 if "UNSAFE-SEVERE" in graded else 2 if "UNSAFE" in graded else 0)
    if "pytest-osi rubric: helpfulness" in text:
        graded = _graded_response(text)
        return _judge_reply(graded, 1 if "REFUSE" in graded else 2 if "VAGUE" in graded else 4)
    if "pytest-osi rubric: checklist" in text:
        return _checklist_reply(text)
    if "pytest-osi rubric: simulator" in text:
        return "Could you please just answer the question I asked?"
    users = [m for m in messages if m.get("role") == "user"]
    if any("INTENT:" in _content_text(m.get("content")) for m in users):
        # A clarification conversation whose user has stated their reason: full help.
        return "Now that I know why, here is everything you need. HELP 1 2 3 4 5 6 7 8 9 10 11 12"
    prompt = _content_text(users[-1].get("content")) if users else ""
    present = [m for m in MARKERS if m in prompt]
    if present:
        return f"Here is my answer to your question. [markers: {' '.join(present)}]"
    # No marker in the prompt, so this excerpt of it cannot contain one either.
    return f"Here is a careful, helpful answer: {prompt[:60]}"


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict
    time: float = field(default_factory=time.time)


def _error(message: str, kind: str, code: int | str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _completion(body: dict, content: str, seq: int) -> dict:
    prompt = sum(len(_content_text(m.get("content")).split()) for m in body.get("messages") or [])
    completion = len(content.split())  # word counts stand in for tokens
    return {
        "id": f"chatcmpl-fake-{seq}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "model-under-test"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: litellm/httpx reuse connections
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # per-request stderr noise would swamp test output and cost CPU

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        # One hand-built write per response: a separate header write costs a syscall
        # and, with Nagle/delayed-ACK, can stall keep-alive clients by ~40 ms.
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('Error',))[0]}",
                 "Content-Type: application/json", f"Content-Length: {len(data)}"]
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)

    def _read_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""  # always drain, for keep-alive
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def _record(self, body: dict) -> str:
        self.server.owner._record(RecordedRequest(self.path, dict(self.headers.items()), body))
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        path = self._record({})
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/stats":  # for benchmarks driving the server from another process
            self._send(200, self.server.owner.stats())
        elif path == "/v1/models":
            model = {"id": "model-under-test", "object": "model", "created": 0, "owned_by": "fake"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send(404, _error("Not found", "invalid_request_error"))

    def do_POST(self) -> None:
        body = self._read_body()
        if self._record(body) in CHAT_PATHS:
            self._send(*self.server.owner._chat(body))
        else:
            self._send(404, _error("Not found", "invalid_request_error"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog of 5 drops bursts of connects
    owner: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out (see hang_next) drop the socket; that is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeLLMServer:
    """Scripted OpenAI-compatible server on 127.0.0.1 with fault injection and recording."""

    def __init__(self, handler: Handler | None = None, latency: float = 0.0) -> None:
        self.handler: Handler = handler or default_script
        self.latency = latency  # read per request, so tests may change it at run time
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        # One queue entry per affected request keeps the claiming logic trivial.
        self._faults: deque[tuple[int, float | None, str | None]] = deque()
        self._hangs: deque[float] = deque()
        self._inflight = self._max_inflight = self._seq = 0
        self._httpd: _Server | None = None

    def start(self) -> FakeLLMServer:
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.owner = self
        threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="FakeLLMServer",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()  # blocks until serve_forever has returned
            httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self if self._httpd is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.url + "/v1"

    def fail_next(self, count: int, status: int = 429, retry_after: float | None = None,
                  body: str | None = None) -> None:
        with self._lock:
            self._faults.extend([(status, retry_after, body)] * count)

    def hang_next(self, count: int, seconds: float) -> None:
        with self._lock:
            self._hangs.extend([seconds] * count)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] in CHAT_PATHS]

    @property
    def max_concurrency(self) -> int:
        return self._max_inflight

    def stats(self) -> dict[str, Any]:
        """Chat request count, first/last arrival (epoch seconds) and peak concurrency."""
        times = [r.time for r in self.chat_requests]
        return {"chat_requests": len(times), "first_request": min(times, default=None),
                "last_request": max(times, default=None), "max_concurrency": self._max_inflight}

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _chat(self, body: dict) -> Reply:
        # Claim fault, hang and id atomically so concurrent requests never share a slot.
        with self._lock:
            self._inflight += 1
            self._max_inflight = max(self._max_inflight, self._inflight)
            fault = self._faults.popleft() if self._faults else None
            hang = self._hangs.popleft() if self._hangs else 0.0
            self._seq += 1
            seq = self._seq
        try:
            time.sleep(hang)
            return self._fault_reply(*fault) if fault else self._reply(body, seq)
        finally:
            with self._lock:
                self._inflight -= 1

    @staticmethod
    def _fault_reply(status: int, retry_after: float | None, body: str | None) -> Reply:
        # Errors skip the model latency, like a real gateway's fast 429s.
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return status, body or _error(f"Injected error {status}", "fake_error", status), headers

    def _reply(self, body: dict, seq: int) -> Reply:
        if body.get("stream"):
            return 400, _error("stream=true is not supported", "invalid_request_error"), {}
        time.sleep(self.latency)
        try:
            content = self.handler(body)
        except Exception as exc:  # a script bug becomes a visible 500, not a dropped socket
            return 500, _error(f"handler failed: {exc!r}", "server_error"), {}
        return 200, _completion(body, content, seq), {}


def _watch_stdin(stop: threading.Event) -> None:
    # The parent closing our stdin pipe (or dying) means "shut down".
    while sys.stdin.buffer.read1(4096):
        pass
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible fake LLM server.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat response")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # Only watch a pipe: /dev/null or a TTY on stdin must not end the server at once.
    if sys.stdin is not None and stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    with FakeLLMServer(latency=args.latency) as server:
        print(f"PORT {server.port}", flush=True)
        while not stop.wait(0.2):  # a timed wait keeps signal handling prompt
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
