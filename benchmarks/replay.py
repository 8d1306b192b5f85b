"""Call-store benchmarks. Prints seconds, ratios and peak RSS.

1. Replay (default): record the published OpenSafeIntent dataset (700 sets -> 4,900 generations
   + 9,800 judge calls) once against the scripted server (tests/fakeserver.py, no latency,
   ``pytest -n 2``), stop the server, then time, each in a fresh process (median of
   ``--repeat`` runs) with its peak RSS (getrusage of the child):

   - ``pytest --co`` of the same items (pytest's own start-up and collection);
   - ``pytest --osi-record=none`` (every call replayed from the store, nothing listening);
   - the same with pytest-osi's background litellm import switched off (nothing will call a
     model, so the plugin need not import it);
   - the call store and the case pipelines alone (no pytest), for the store's own share.

   Reports the replay's wall time beyond collection (target: under 3 s) and checks that the
   replay reproduces the recording run's metrics, counts and exit code.

2. Store designs (``--backends``): 14,700 synthetic entries shaped like that run (generation
   entries: a ~250-character prompt and a ~1,500-character answer; judge entries: a
   ~2,900-character rubric prompt and a short JSON grade), written one by one, write-through,
   then read back one by one in a new process ("cold": nothing cached in the process):

   - a JSON file per entry (``JsonFileStore`` below: tmp file + os.replace, sharded dirs);
   - SQLite in WAL mode, busy timeout, a commit per entry (``pytest_osi.calls.store.CallStore``,
     the design taken).

Usage: python benchmarks/replay.py [--dataset PATH] [--sets N] [--repeat N] [--backends]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "opensafeintent" / "dataset.json"
sys.path.insert(0, str(ROOT / "tests"))

# Runs a command and prints its exit code, wall time and peak RSS (KiB) as JSON: getrusage of
# *this* wrapper's children is the measured process alone.
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
run = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
wall = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"ret": run.returncode, "wall": wall, "rss_kib": rss, "tail": run.stdout[-2500:]}))
"""


# pytest with pytest-osi's background litellm import switched off.
_NO_PREWARM = """
import sys, pytest, pytest_osi.run
pytest_osi.run.RunState._prewarm = lambda self: None
sys.exit(pytest.main(sys.argv[1:]))
"""


def measure(args: list[str], cwd: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def replay(dataset: Path, sets: int | None, repeat: int) -> None:
    from fakeserver import FakeLLMServer

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if sets is not None:  # a prefix of the dataset, for a quick run
            data = json.loads(dataset.read_text())
            rows = data["prompt_sets"] if isinstance(data, dict) else data
            dataset = tmp / "dataset.json"
            dataset.write_text(json.dumps(rows[:sets]))
        cache = tmp / "store"
        report = tmp / "report.json"
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--osi-dataset={dataset}",
                f"--osi-cache-dir={cache}", "--osi-model=model-under-test", "--osi-judge=judge"]
        with FakeLLMServer() as server:
            api = [f"--osi-model-api-base={server.api_base}", f"--osi-judge-api-base={server.api_base}"]
            started = time.perf_counter()
            recorded = measure([*base, *api, "-n", "2", "--osi-concurrency=16", f"--osi-report={report}"], tmp)
            record_wall = time.perf_counter() - started
            calls = len(server.chat_requests)
            port = server.port
        if not report.exists():
            print(recorded["tail"])
            raise SystemExit("the recording run wrote no report")
        recorded_report = json.loads(report.read_text())
        from pytest_osi.calls.store import CallStore

        store = CallStore.open(cache)
        entries = len(store)
        store.close()
        print(f"record: {calls} calls, {entries} entries stored, exit {recorded['ret']}, {record_wall:.1f} s (pytest -n 2)")

        # The same api base (nothing listens there now): loopback ports are normalised anyway.
        api = [f"--osi-model-api-base=http://127.0.0.1:{port}/v1", f"--osi-judge-api-base=http://127.0.0.1:{port}/v1"]
        collect, replayed, quiet = [], [], []
        for _ in range(repeat):
            collect.append(measure([*base, *api, "--co"], tmp))
            replayed.append(measure([*base, *api, "--osi-record=none", f"--osi-report={report}"], tmp))
            # The same with litellm's background import switched off, as --osi-record=none calls
            # for (nothing will call a model): the import costs seconds of CPU, and the run's end
            # waits for an import under way.
            quiet.append(measure([sys.executable, "-c", _NO_PREWARM, *base[3:], *api, "--osi-record=none"], tmp))
        last = replayed[-1]
        data = json.loads(report.read_text()) if report.exists() else {}
        same = data.get("metrics") == recorded_report["metrics"] and data.get("counts") == recorded_report["counts"]
        co_wall = statistics.median(r["wall"] for r in collect)
        replay_wall = statistics.median(r["wall"] for r in replayed)
        co_rss = max(r["rss_kib"] for r in collect) / 1024
        replay_rss = max(r["rss_kib"] for r in replayed) / 1024
        print(f"replay: exit {last['ret']} (recording run: {recorded['ret']}); metrics and counts identical: {same}; "
              f"model-errors: {data.get('counts', {}).get('model-error')}")
        if not same or last["ret"] != recorded["ret"]:
            print(last["tail"])
        print(f"pytest --co:               {co_wall:6.2f} s  peak RSS {co_rss:6.0f} MiB   (median of {repeat})")
        print(f"pytest --osi-record=none:  {replay_wall:6.2f} s  peak RSS {replay_rss:6.0f} MiB")
        print(f"replay beyond collection:  {replay_wall - co_wall:6.2f} s (target < 3 s); wall ratio "
              f"{replay_wall / co_wall:.2f}; RSS ratio {replay_rss / co_rss:.2f}; "
              f"{entries / max(replay_wall - co_wall, 1e-9):.0f} replayed calls/s")
        quiet_wall = statistics.median(r["wall"] for r in quiet)
        quiet_rss = max(r["rss_kib"] for r in quiet) / 1024
        print(f"same, no litellm prewarm:  {quiet_wall:6.2f} s  peak RSS {quiet_rss:6.0f} MiB; beyond collection "
              f"{quiet_wall - co_wall:.2f} s, wall ratio {quiet_wall / co_wall:.2f}, RSS ratio {quiet_rss / co_rss:.2f} "
              f"(exit {quiet[-1]['ret']})")
        engine = [engine_replay(dataset, cache, port) for _ in range(repeat)]
        print(f"of which the call store and the pipelines (no pytest, a fresh process): "
              f"{statistics.median(e['wall'] for e in engine):.2f} s for {engine[0]['calls']} replayed calls, "
              f"litellm imported: {engine[0]['litellm']}")


# The call store and the case pipelines alone, in a fresh process: every set of the dataset
# evaluated with --osi-record=none, no pytest items, hooks or summary around them.
_ENGINE = """
import json, sys, time
from pathlib import Path
from pytest_osi.cases.prompt_sets import load_prompt_sets
from pytest_osi.options import Settings
from pytest_osi.pipeline import PipelineFactory

class NoImpl:
    name = "none"
    def get_hookimpls(self):
        return []

class NoHooks:
    def __getattr__(self, name):
        return NoImpl()

dataset, cache, port = sys.argv[1], sys.argv[2], sys.argv[3]
api = f"http://127.0.0.1:{port}/v1"
settings = Settings(model="model-under-test", model_api_base=api, judge="judge", judge_api_base=api,
                    record="none", cache_dir=Path(cache))
sets = load_prompt_sets(Path(dataset))
start = time.perf_counter()
factory = PipelineFactory(settings, NoHooks())
evaluator = factory.build()
results = [f.result() for f in [evaluator.schedule(s) for s in sets]]
wall = time.perf_counter() - start
calls = evaluator.ctx.client.stats().replayed
factory.close()
print(json.dumps({"wall": wall, "calls": calls, "litellm": "litellm" in sys.modules}))
"""


def engine_replay(dataset: Path, cache: Path, port: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _ENGINE, str(dataset), str(cache), str(port)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


# -- store designs -------------------------------------------------------------------------------

WORDS = ("the lock network secure answer careful model response harm safety request explain how "
         "what why steps first then finally system device account access policy").split()


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def synthetic_entries(n: int) -> list[Any]:
    from pytest_osi.calls.client import Completion, Endpoint
    from pytest_osi.calls.store import StoredCall, call_key, call_request
    from pytest_osi.cases.base import Usage

    rng = random.Random(7)
    model = Endpoint("model-under-test", "http://127.0.0.1:8000/v1")
    judge = Endpoint("judge", "http://127.0.0.1:8000/v1")
    entries = []
    for i in range(n):
        if i % 3 == 0:
            request = call_request(model, [{"role": "user", "content": f"{i} " + _text(rng, 250)}],
                                   {"temperature": 0.0, "max_tokens": 512})
            answer = _text(rng, 1500)
        else:
            request = call_request(judge, [{"role": "user", "content": f"{i} " + _text(rng, 2900)}],
                                   {"temperature": 0.0, "max_tokens": 128, "response_format": None})
            answer = json.dumps({"score": i % 4})
        key = call_key(request)
        entries.append(StoredCall.record(key, Completion(answer, Usage(1, 700, 300, None), "fake"), request))
    return entries


class JsonFileStore:
    """The design not taken, kept to measure: one JSON file per entry, written to a temp file in
    the store and moved into place with os.replace, sharded by the key's first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._shards: set[str] = set()

    def path_for(self, key: str) -> Path:
        return self.root / "calls" / key[:2] / f"{key}.json"

    def put(self, entry: Any) -> None:
        import os

        shard = entry.key[:2]
        if shard not in self._shards:
            (self.root / "calls" / shard).mkdir(parents=True, exist_ok=True)
            self._shards.add(shard)
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=entry.key[:16] + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(entry.to_json().encode("utf-8"))
        os.replace(tmp, self.path_for(entry.key))

    def get(self, key: str) -> Any:
        from pytest_osi.calls.store import StoredCall

        try:
            return StoredCall.from_json(self.path_for(key).read_bytes(), key)
        except OSError:
            return None


# Read every key back in a new process; prints seconds and how many were found.
_READ = """
import sys, time
sys.path.insert(0, sys.argv[3])
from replay import JsonFileStore
from pytest_osi.calls.store import CallStore
keys = open(sys.argv[2]).read().split()
start = time.perf_counter()
store = JsonFileStore(sys.argv[1]) if sys.argv[4] == "json" else CallStore.open(sys.argv[1])
found = sum(store.get(k) is not None for k in keys)
print(time.perf_counter() - start, found)
"""


def backends(n: int, repeat: int) -> None:
    from pytest_osi.calls.store import CallStore

    entries = synthetic_entries(n)
    keys = [e.key for e in entries]
    random.Random(1).shuffle(keys)  # a run asks in its own order
    size = sum(len(e.to_json()) for e in entries)
    print(f"store designs: {n} entries, {size / n / 1024:.1f} KiB of JSON each on average, median of {repeat}")
    writes: dict[str, list[float]] = {"json": [], "sqlite": []}
    reads: dict[str, list[float]] = {"json": [], "sqlite": []}
    for _ in range(repeat):
        for design in ("json", "sqlite"):
            with tempfile.TemporaryDirectory() as tmp_name:
                tmp = Path(tmp_name)
                key_file = tmp / "keys.txt"
                key_file.write_text("\n".join(keys))
                start = time.perf_counter()
                store: Any = JsonFileStore(tmp / "store") if design == "json" else CallStore.open(tmp / "store")
                for entry in entries:
                    store.put(entry)
                if design == "sqlite":
                    store.close()  # the last connection checkpoints the WAL into the database
                writes[design].append(time.perf_counter() - start)
                out = subprocess.run([sys.executable, "-c", _READ, str(tmp / "store"), str(key_file),
                                      str(Path(__file__).parent), design],
                                     capture_output=True, text=True, check=True).stdout.split()
                assert int(out[1]) == n, out
                reads[design].append(float(out[0]))
    print(f"{'design':52s}{'write':>9s}{'cold read':>11s}   (min-max)")
    for design, label in (("json", "JSON file per entry (tmp file + os.replace, sharded)"),
                          ("sqlite", "SQLite, WAL, busy_timeout, a commit per entry")):
        w, r = writes[design], reads[design]
        print(f"{label:52s}{statistics.median(w):8.2f}s{statistics.median(r):10.2f}s   "
              f"({min(w):.2f}-{max(w):.2f} s / {min(r):.2f}-{max(r):.2f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--sets", type=int, default=None, help="only the first N prompt-sets")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measured side")
    parser.add_argument("--backends", action="store_true", help="compare the store designs instead")
    parser.add_argument("--entries", type=int, default=14_700, help="entries for --backends")
    args = parser.parse_args()
    if args.backends:
        backends(args.entries, args.repeat)
        return 0
    if not args.dataset.exists():
        print(f"skipped: the published dataset is not at {args.dataset} (pass --dataset PATH)")
        return 0
    replay(args.dataset, args.sets, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
