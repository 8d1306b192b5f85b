"""The call store: a write-through record of every model, judge (and later simulator) call.

Every pipeline reaches a model through :func:`wrap_client`: whatever it returns is the client
the whole run uses, so the :class:`RecordingClient` installed here sees every call -- the model
under test, the judge, the local server, and any later caller -- without any pipeline knowing
about it. Each completed call is stored the moment it returns; a rerun replays it instead of
paying for it again (in the spirit of vcrpy / pytest-recording cassettes).

**Key.** sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of what determines
the answer: the model string, the API base with loopback hosts normalised (the local server's
port changes every run), the messages, the generation parameters (temperature, max_tokens,
response_format, ...) and a sample index (0 unless a caller draws several samples). Never the
API key, timeouts, retry settings or headers.

**Layout** (``.osi-cache/`` under the rootdir, or ``--osi-cache-dir``)::

    CACHEDIR.TAG          the standard cache tag: backup tools skip the directory
    calls.sqlite3         the entries (table ``calls``: key, recorded_at, and the answer and the
                          redacted request as JSON text -- a replay reads only the answer)
                          and the keys each --osi-record=rewrite run used (``runs``, ``used``)
    calls.sqlite3-wal     SQLite's write-ahead log (folded into the database when the last
                          connection closes; what a killed writer leaves is recovered on open)

**Why SQLite and not a JSON file per entry.** Measured by ``python benchmarks/replay.py
--backends`` (14,700 entries shaped like the published 700-set run -- 4,900 generations with
~1.5 KB answers, 9,800 grades with ~3 KB prompts -- written one at a time, then read back one
at a time by a new process), on the shared 2-core development machine, median of 3 (range):

    design                                                write 14,700       cold read 14,700
    JSON file per entry (tmp file + os.replace, sharded)  4.23 s (2.8-4.5)   0.41 s (0.40-0.42)
    SQLite, WAL, busy_timeout, a commit per entry         1.29 s (1.3-1.4)   0.21 s (0.19-0.22)

(Earlier single runs: 1.7 s / 0.37 s against 1.5 s / 0.24 s on a quiet machine; 18.1 s /
1.59 s against 5.5 s / 0.91 s while other processes loaded the disk.) SQLite is faster on both
sides and far steadier: a file per entry costs a create and a rename -- two journaled metadata
operations -- per call, which is what stalls when other processes load the file system, and it
is paid on the event loop between calls. Crash safety and concurrency come with SQLite: each
entry is its own transaction (SIGKILL at any moment leaves no torn entry; WAL recovery drops an
unfinished commit), and writers from several processes queue on its lock with a busy timeout.
``synchronous=NORMAL``: a killed *process* loses nothing committed; a power loss may lose the
last commits, never the database. The costs: a binary file (the entries inside are JSON text:
``sqlite3 .osi-cache/calls.sqlite3 'select answer, request from calls'``), and WAL needs a local
file system (not NFS) -- the rootdir's ``.osi-cache``, or a restored CI cache, is one. Replaying
the whole 700-set run through this store and the case pipelines takes 1.2 s
(``benchmarks/replay.py``).

Data only (JSON text in SQLite), never pickle. Provider errors are not stored: a rerun calls again.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pytest_osi.errors import ModelCallError
from pytest_osi.redaction import MASK

if TYPE_CHECKING:
    from pytest_osi.calls.client import Completion, CompletionClient, Endpoint, Limit, Message
    from pytest_osi.options import Settings

MODES = ("new", "none", "all", "rewrite", "off")
CACHE_DIR_NAME = ".osi-cache"
# Set by the controller (or a plain run) before xdist workers start: every process of one run
# marks the keys it used under the same id, so that ``prune_unused`` sees their union.
RUN_ID_ENV = "PYTEST_OSI_RUN_ID"
ENTRY_FORMAT = 1  # part of every key: a new format never replays an old entry
DB_NAME = "calls.sqlite3"
SCHEMA_VERSION = 1  # PRAGMA user_version of the database
BUSY_TIMEOUT = 60.0  # seconds a writer waits for another process's write to finish
STALE_TMP_SECONDS = 60.0
STALE_RUN_SECONDS = 24 * 3600.0
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pytest-osi (its call store).\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
# Never part of the key nor of the stored request: secrets, and settings that change how a
# call is made but not what it answers.
_NOT_IN_KEY = frozenset({"api_key", "timeout", "request_timeout", "max_retries", "num_retries",
                         "extra_headers", "headers", "limit"})
_RUN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,80}")


# -- keys ------------------------------------------------------------------------------------

def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=64)
def normalise_api_base(api_base: str | None) -> str | None:
    """``api_base`` as part of a key: loopback hosts on any port become ``loopback`` (the local
    server's port changes every run), user:password@ and a trailing slash are dropped."""
    if not api_base:
        return None
    try:
        parts = urlsplit(api_base.strip())
        host = parts.hostname
    except ValueError:  # not a URL litellm could use either: keep it as given
        return api_base.strip().rstrip("/")
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    if host and _is_loopback(host):
        netloc = "loopback"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))


def _param(value: Any) -> Any:
    # 0 and 0.0 ask for the same thing.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def call_request(endpoint: Endpoint, messages: Sequence[Message], params: Mapping[str, Any],
                 sample: int = 0) -> dict[str, Any]:
    """What determines a call's answer: the key is a hash of exactly this."""
    kwargs = endpoint.litellm_kwargs()  # the model string litellm is given (openai/<name> ...)
    return {
        "model": kwargs["model"],
        "api_base": normalise_api_base(kwargs.get("api_base")),
        "messages": [dict(m) for m in messages],
        "params": {k: _param(v) for k, v in params.items() if v is not None and k not in _NOT_IN_KEY},
        "sample": sample,
    }


def call_key(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"format": ENTRY_FORMAT, **request}).encode("utf-8")).hexdigest()


# -- entries ---------------------------------------------------------------------------------

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_T = TypeVar("_T")


def _environ_safe(read: Callable[[], _T]) -> _T:
    """``read()``, which iterates ``os.environ``, run on the event loop's thread while pytest's
    thread sets and deletes PYTEST_CURRENT_TEST: iterating then fails now and then (KeyError,
    or "dictionary changed size during iteration"). Try again: the next pass sees a settled
    environment."""
    for _ in range(99):
        try:
            return read()
        except (KeyError, RuntimeError):
            continue
    return read()


def _known_secrets(extra: Sequence[str | None] = ()) -> list[str]:
    from pytest_osi.redaction import _environment_secrets, registered_secrets  # the exact secrets only

    found = {*_environ_safe(_environment_secrets), *registered_secrets(), *(e for e in extra if e and len(e) >= 6)}
    return sorted(found, key=len, reverse=True)


def _redacted_request(request: Mapping[str, Any], api_key: str | None) -> Any:
    """The request as it may be written: no api_key field, secrets masked in its JSON text."""
    from pytest_osi.redaction import redact

    raw = canonical_json({k: v for k, v in request.items() if k != "api_key"})
    text = _environ_safe(lambda: redact(raw, extra=(api_key,)))
    try:
        return json.loads(text)
    except ValueError:  # a mask landed inside an escape sequence: keep the masked text
        return text


@dataclass(frozen=True)
class StoredCall:
    """One stored call: the answer, what it cost, and (redacted) what was asked."""

    key: str
    text: str
    usage: dict[str, Any]  # calls, prompt_tokens, completion_tokens, cost
    provider_model: str | None
    recorded_at: str
    version: str
    request: Any

    @classmethod
    def record(cls, key: str, completion: Completion, request: Mapping[str, Any],
               api_key: str | None = None) -> StoredCall:
        from pytest_osi import __version__

        text = completion.text
        # A response is replayed byte for byte, so only the user's own secrets (an environment
        # key, the endpoint's key) are masked in it -- never key-shaped text a model wrote.
        for secret in _known_secrets((api_key,)):
            if secret in text:
                text = text.replace(secret, MASK)
        u = completion.usage
        return cls(key, text,
                   {"calls": u.calls, "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                    "cost": u.cost},
                   completion.provider_model, _now(), __version__, _redacted_request(request, api_key))

    def answer(self) -> dict[str, Any]:
        """Everything but the request: what a replay reads."""
        return {"format": ENTRY_FORMAT, "key": self.key, "text": self.text, "usage": self.usage,
                "provider_model": self.provider_model, "recorded_at": self.recorded_at, "pytest_osi": self.version}

    def answer_json(self) -> str:
        return json.dumps(self.answer(), ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def request_json(self) -> str:
        return json.dumps(self.request, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    def to_json(self) -> str:
        """The whole entry as one JSON document."""
        return json.dumps({**self.answer(), "request": self.request}, ensure_ascii=False, separators=(",", ":"),
                          sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes, key: str) -> StoredCall | None:
        """The entry (``to_json`` or ``answer_json``: the request may be absent), or None if it
        is not a complete entry for ``key``."""
        try:
            raw = json.loads(data)
            if raw["format"] != ENTRY_FORMAT or raw["key"] != key or not isinstance(raw["text"], str):
                return None
            usage = raw["usage"]
            if not isinstance(usage, dict):
                return None
            return cls(key, raw["text"], usage, raw.get("provider_model"), str(raw["recorded_at"]),
                       str(raw.get("pytest_osi")), raw.get("request"))
        except (ValueError, KeyError, TypeError):
            return None

    def completion(self, *, replayed: bool) -> Completion:
        from pytest_osi.calls.client import Completion
        from pytest_osi.cases.base import Usage

        u = self.usage
        cost = u.get("cost")
        return Completion(
            text=self.text,
            usage=Usage(int(u.get("calls", 1)), int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)),
                        float(cost) if isinstance(cost, (int, float)) else None),
            provider_model=self.provider_model, replayed=replayed, recorded_at=self.recorded_at)


# -- the store -------------------------------------------------------------------------------

class CallStore:
    """The entries, in one SQLite database in WAL mode (see the module docstring for why).

    Each entry is written in its own transaction the moment its call returns, so a process
    killed at any moment leaves every earlier entry intact and no torn one (SQLite's WAL
    recovery discards an unfinished commit). Any number of processes (xdist workers) may write
    at once: writers queue on SQLite's lock for up to ``BUSY_TIMEOUT`` seconds, each holding it
    for one short INSERT. Every method is safe to call from any thread of the process."""

    def __init__(self, root: Path, connection: sqlite3.Connection, *, writable: bool = True) -> None:
        self.root = Path(root)
        self.writable = writable
        self._db = connection
        self._lock = threading.Lock()
        self._run_id: str | None = None
        self._marked: set[str] = set()
        self._closer = weakref.finalize(self, connection.close)

    @classmethod
    def open(cls, root: Path) -> CallStore:
        """The store at ``root``, created if need be (with its CACHEDIR.TAG); abandoned run
        records and stray temp files removed. A read-only copy (say, a CI cache mounted
        read-only) opens too, for replaying."""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            _clean_tmp(root)
            tag = root / "CACHEDIR.TAG"
            if not tag.exists():
                _write_atomic(tag, CACHEDIR_TAG.encode())
        except OSError:
            pass
        path = root / DB_NAME
        try:
            store = cls(root, _connect(path))
        except sqlite3.Error as exc:
            if not path.exists():
                raise ModelCallError(f"cannot create the call store {path}: {exc}") from None
            try:
                db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                     isolation_level=None, check_same_thread=False)
                _check_schema(db, path)
            except sqlite3.Error as ro_exc:
                raise ModelCallError(f"cannot open the call store {path}: {exc}; read-only: {ro_exc}") from None
            return cls(root, db, writable=False)
        store.clean_stale()
        return store

    def close(self) -> None:
        with self._lock:
            self._closer()

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def clean_stale(self, now: float | None = None) -> int:
        """Forget run records (of --osi-record=rewrite runs that never pruned: killed, or
        incomplete) older than a day. Returns how many runs were forgotten."""
        cutoff = (time.time() if now is None else now) - STALE_RUN_SECONDS
        try:
            with self._lock:
                stale = [r[0] for r in self._db.execute("SELECT run_id FROM runs WHERE started < ?", (cutoff,))]
                for run_id in stale:
                    self._forget_run(run_id)
        except sqlite3.Error:
            return 0
        return len(stale)

    def get(self, key: str) -> StoredCall | None:
        rows = self._query("SELECT answer FROM calls WHERE key = ?", (key,))
        return StoredCall.from_json(rows[0][0], key) if rows else None

    def request(self, key: str) -> Any:
        """The (redacted) request stored with ``key``'s entry, or None."""
        rows = self._query("SELECT request FROM calls WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def put(self, entry: StoredCall) -> None:
        self._execute("INSERT OR REPLACE INTO calls (key, recorded_at, answer, request) VALUES (?, ?, ?, ?)",
                      (entry.key, entry.recorded_at, entry.answer_json(), entry.request_json()))

    def keys(self) -> list[str]:
        return [row[0] for row in self._query("SELECT key FROM calls")]

    def __len__(self) -> int:
        return int(self._query("SELECT count(*) FROM calls")[0][0])

    # -- runs: which keys a run used, for --osi-record=rewrite -------------------------------

    def begin_run(self, run_id: str) -> None:
        """Record the keys this process uses (``mark_used``) under ``run_id``. Every process of
        one run (xdist workers) begins the same id; their marks add up."""
        if not _RUN_ID_RE.fullmatch(run_id):
            raise ValueError(f"invalid run id {run_id!r}")
        self._execute("INSERT OR IGNORE INTO runs (run_id, started) VALUES (?, ?)", (run_id, time.time()))
        self._run_id = run_id
        self._marked = set()

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def mark_used(self, key: str) -> None:
        """Note that this run used ``key`` -- committed at once, so a worker's marks are stored
        before its results reach the controller. A no-op unless ``begin_run`` was called."""
        if self._run_id is None or key in self._marked:
            return
        self._execute("INSERT OR IGNORE INTO used (run_id, key) VALUES (?, ?)", (self._run_id, key))
        self._marked.add(key)

    def used_keys(self, run_id: str) -> set[str] | None:
        """The keys every process of ``run_id`` marked; None if no process began that run."""
        if not self._query("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)):
            return None
        return {row[0] for row in self._query("SELECT key FROM used WHERE run_id = ?", (run_id,))}

    def prune_unused(self, run_id: str) -> int:
        """Remove every entry no process of ``run_id`` used, then the run's records. Call it
        only after a complete run that selected everything (else it removes what the run merely
        did not get to). A run id no process began prunes nothing. Returns how many entries
        were removed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                    removed = 0
                else:
                    removed = self._db.execute(
                        "DELETE FROM calls WHERE key NOT IN (SELECT key FROM used WHERE run_id = ?)", (run_id,)).rowcount
                    self._forget_run(run_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if self._run_id == run_id:
            self._run_id = None
        return removed

    def end_run(self, run_id: str) -> None:
        """Forget ``run_id``'s records without pruning (a run that stopped early)."""
        with self._lock:
            self._forget_run(run_id)
        if self._run_id == run_id:
            self._run_id = None

    def _forget_run(self, run_id: str) -> None:  # with the lock held
        self._db.execute("DELETE FROM used WHERE run_id = ?", (run_id,))
        self._db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, recorded_at TEXT NOT NULL, answer TEXT NOT NULL,
                                  request TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS used (run_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (run_id, key));
"""


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: every statement commits at once unless we BEGIN ourselves.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            _retry_busy(lambda: db.execute("PRAGMA journal_mode = WAL"))
        # In WAL mode, NORMAL syncs at checkpoints, not per commit: a killed process loses
        # nothing committed; a power loss may lose the last commits but never corrupts.
        db.execute("PRAGMA synchronous = NORMAL")
        _check_schema(db, path)
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            db.execute("BEGIN IMMEDIATE")  # several workers may create the store at once
            try:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    except BaseException:
        db.close()
        raise
    return db


def _retry_busy(action: Callable[[], Any]) -> Any:
    """Switching to WAL takes an exclusive lock without waiting on the busy handler: several
    workers creating the store at once retry for a while."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ModelCallError(f"the call store {path} was written by a newer pytest-osi (schema {version}); "
                             "upgrade pytest-osi, or use another --osi-cache-dir")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _clean_tmp(root: Path, now: float | None = None) -> None:
    """Remove temp files a killed writer left behind (older than a minute)."""
    cutoff = (time.time() if now is None else now) - STALE_TMP_SECONDS
    for path in root.glob("*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


# -- the recording client --------------------------------------------------------------------

@dataclass
class StoreStats:
    """What the store did for one process (or, merged with ``+``, for a whole xdist run)."""

    replayed: int = 0  # answered from the store
    live: int = 0  # called (and stored)
    missing: int = 0  # --osi-record=none calls with no entry (each a model-error)
    write_errors: int = 0  # calls made but not stored (the disk refused); a rerun pays again
    oldest: str | None = None  # recorded_at range of the replayed entries (UTC ISO)
    newest: str | None = None
    first_write_error: str | None = None

    def replay(self, recorded_at: str) -> None:
        self.replayed += 1
        self.oldest = recorded_at if self.oldest is None else min(self.oldest, recorded_at)
        self.newest = recorded_at if self.newest is None else max(self.newest, recorded_at)

    def __add__(self, other: StoreStats) -> StoreStats:
        return StoreStats(
            self.replayed + other.replayed, self.live + other.live, self.missing + other.missing,
            self.write_errors + other.write_errors,
            min(filter(None, (self.oldest, other.oldest)), default=None),
            max(filter(None, (self.newest, other.newest)), default=None),
            self.first_write_error or other.first_write_error)

    def to_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "live": self.live, "missing": self.missing,
                "write_errors": self.write_errors, "oldest": self.oldest, "newest": self.newest,
                "first_write_error": self.first_write_error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreStats:
        return cls(**{k: data[k] for k in cls().to_dict() if k in data})


@dataclass
class RecordingClient:
    """A :class:`CompletionClient` that replays stored calls and stores live ones, per the
    record mode of the endpoint called: ``record_model`` for the model under test (the
    endpoint object ``model_endpoint``, compared by identity, so a judge that is the same model
    at the same URL still counts as the judge), ``record`` for every other endpoint.

    - new: replay what is stored, call and store what is missing;
    - none: never call (litellm is never imported): a missing entry is a ModelCallError;
    - all / rewrite: call everything again and overwrite (rewrite also marks used keys so that
      the run can ``prune_unused`` afterwards);
    - off: call through, store nothing.
    """

    inner: CompletionClient
    store: CallStore
    record: str = "new"
    record_model: str | None = None
    model_endpoint: Endpoint | None = None
    _stats: StoreStats = field(default_factory=StoreStats)

    def __post_init__(self) -> None:
        for mode in (self.record, self.record_model):
            if mode is not None and mode not in MODES:
                raise ValueError(f"unknown record mode {mode!r}; one of {', '.join(MODES)}")

    def is_model(self, endpoint: Endpoint) -> bool:
        return self.model_endpoint is not None and endpoint is self.model_endpoint

    def mode_for(self, endpoint: Endpoint) -> str:
        if self.record_model is not None and self.is_model(endpoint):
            return self.record_model
        return self.record

    def close(self) -> None:
        self.store.close()

    def stats(self) -> StoreStats:
        s = self._stats
        return StoreStats(s.replayed, s.live, s.missing, s.write_errors, s.oldest, s.newest, s.first_write_error)

    async def complete(self, endpoint: Endpoint, messages: Sequence[Message], *, limit: Limit | None = None,
                       sample: int = 0, **params: Any) -> Completion:
        mode = self.mode_for(endpoint)
        if mode == "off":
            return await self.inner.complete(endpoint, messages, limit=limit, **params)
        request = call_request(endpoint, messages, params, sample)
        key = call_key(request)
        try:
            self.store.mark_used(key)
            stored = self.store.get(key) if mode in ("new", "none") else None
        except sqlite3.Error as exc:
            raise ModelCallError(f"call store {self.store.root}: {type(exc).__name__}: {exc}") from None
        if mode in ("new", "none"):
            if stored is not None:
                self._stats.replay(stored.recorded_at)
                return stored.completion(replayed=True)
            if mode == "none":
                self._stats.missing += 1
                raise ModelCallError(self.missing_message(endpoint, messages, key))
        completion = await self.inner.complete(endpoint, messages, limit=limit, **params)
        self._stats.live += 1
        entry = StoredCall.record(key, completion, request, endpoint.api_key)
        try:
            self.store.put(entry)
        except (OSError, sqlite3.Error) as exc:  # the call is paid for: answer it, say it was not kept
            self._stats.write_errors += 1
            self._stats.first_write_error = self._stats.first_write_error or f"{type(exc).__name__}: {exc}"
        return entry.completion(replayed=False)

    def missing_message(self, endpoint: Endpoint, messages: Sequence[Message], key: str) -> str:
        from pytest_osi.text import shown

        is_model = self.is_model(endpoint)
        # Any other endpoint is the judge's or the user simulator's (which may be the same model).
        who = "the model under test" if is_model else "the judge or user simulator" if self.model_endpoint is not None else "model"
        users = [m for m in messages if m.get("role") == "user"]
        last = str(users[-1].get("content", "")) if users else ""
        head = _environ_safe(lambda: shown(last, 80, one_line=True)) if users else "(no user message)"
        option = "--osi-record-model" if is_model and self.record_model is not None else "--osi-record"
        return (f"no stored call for {who} {endpoint.model!r} (call {key[:12]}, last user message: {head!r}) "
                f"in {self.store.root}, and {option}=none never calls a model; "
                f"record it with: pytest {option}=new ...")


def store_dir(settings: Settings, rootdir: Path | None) -> Path | None:
    """Where the store lives: ``--osi-cache-dir``, else ``.osi-cache`` under the rootdir."""
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    return Path(rootdir) / CACHE_DIR_NAME if rootdir is not None else None


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"


def wrap_client(client: CompletionClient, settings: Settings, *, model_endpoint: Endpoint | None = None,
                rootdir: Path | None = None, run_id: str | None = None,
                cleanups: list[Callable[[], None]] | None = None) -> CompletionClient:
    """The client the run calls through: ``client`` wrapped in a :class:`RecordingClient`
    unless every record mode is ``off`` (or no store location is known: neither
    ``--osi-cache-dir`` nor a rootdir). ``model_endpoint`` is the model under test's endpoint
    object (``--osi-record-model`` applies to calls to exactly that object). With ``rewrite``
    in play, the store records the keys this process uses under ``run_id`` (default:
    $PYTEST_OSI_RUN_ID, else a new id). The store's close is appended to ``cleanups``."""
    record_model = settings.record_model
    modes = {settings.record, record_model or settings.record}
    root = store_dir(settings, rootdir)
    if modes == {"off"} or root is None:
        return client
    store = CallStore.open(root)
    if cleanups is not None:
        cleanups.append(store.close)
    recording = RecordingClient(client, store, settings.record, record_model, model_endpoint)
    if "rewrite" in modes:
        store.begin_run(run_id or os.environ.get(RUN_ID_ENV) or new_run_id())
    return recording


def recording_client(client: CompletionClient) -> RecordingClient | None:
    """``client`` if it is the call store's client (for ``stats()``), else None."""
    return client if isinstance(client, RecordingClient) else None


def prune_run(settings: Settings, rootdir: Path | None, run_id: str) -> int:
    """For the process that ends a --osi-record=rewrite run (a plain run, or the xdist
    controller, which never built a client): remove every entry the run's processes did not
    use. Returns how many were removed (0 when there is no store or no process began the run)."""
    root = store_dir(settings, rootdir)
    if root is None or not (root / DB_NAME).exists():
        return 0
    store = CallStore.open(root)
    try:
        return store.prune_unused(run_id)
    finally:
        store.close()
