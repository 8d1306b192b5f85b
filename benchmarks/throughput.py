"""Throughput and start-up benchmarks for pytest-osi. Prints measurements and ratios.

1. Grading throughput: every prompt-set of the published OpenSafeIntent dataset (700 sets,
   4,900 prompts -> 4,900 generations + 9,800 judge calls) through the real litellm path
   against the scripted server (tests/fakeserver.py) with 200 ms latency per call, 32 calls in
   flight. Prints wall time, the floor (calls x latency / concurrency) and their ratio.
   Target: ratio <= 1.15. Measured two ways:
   - pytest: the real product path, `pytest --osi-dataset=... -n 2 --osi-concurrency=16`
     (2 workers x 16 = 32 in flight), wall time of the whole pytest process;
   - engine: the evaluation pipeline alone in one process at concurrency 32 -- litellm costs
     ~5 ms of CPU per call, so one process tops out near 190 calls/s, which this shows.
2. Plugin import cost: `pytest --co` of a trivial suite with the plugin vs `-p no:osi`.
   Target: under 30 ms difference (median of several runs).

Usage: python benchmarks/throughput.py [--dataset PATH] [--sets N] [--latency S] [--concurrency N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "opensafeintent" / "dataset.json"


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakeserver.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    return proc, f"http://127.0.0.1:{line[1]}/v1"


def server_stats(api_base: str) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(api_base.removesuffix("/v1") + "/stats") as response:
        return json.loads(response.read())


def throughput_pytest(dataset: Path, latency: float, concurrency: int, workers: int) -> None:
    """The whole product: collection, items, xdist, grading, summary, report."""
    import json

    proc, api_base = start_server(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp, "report.json")
            args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(["-n", str(workers)] if workers else []),
                    f"--osi-dataset={dataset}", "--osi-model=model-under-test", f"--osi-model-api-base={api_base}",
                    "--osi-judge=judge", f"--osi-judge-api-base={api_base}", f"--osi-report={report}",
                    f"--osi-concurrency={concurrency // max(workers, 1)}",
                    "--osi-record=off"]  # live calls every run: this measures throughput, not replay
            started = time.time()
            run = subprocess.run(args, cwd=tmp, capture_output=True, text=True)
            wall = time.time() - started
            stats = server_stats(api_base)
            if not report.exists():
                print(run.stdout[-3000:], run.stderr[-3000:])
                raise SystemExit("pytest run wrote no report")
            data = json.loads(report.read_text())
    finally:
        proc.terminate()
        proc.wait()
    calls = data["usage"]["calls"]
    floor = calls * latency / concurrency
    # From the first call's arrival to the last call's answer: the scheduling itself, without
    # the fixed cost of starting pytest, xdist workers and importing litellm (~4 s here).
    window = stats["last_request"] + latency - stats["first_request"]
    label = f"throughput[pytest -n {workers}]"
    print(f"{label}: {data['counts']['graded']} sets graded, {calls} calls, {concurrency} in flight "
          f"(peak at server {stats['max_concurrency']}), latency {latency * 1000:.0f} ms, exit {run.returncode}")
    print(f"{label}: floor {floor:.1f} s; calls window {window:.1f} s, ratio {window / floor:.3f} (target <= 1.15); "
          f"whole pytest process {wall:.1f} s, ratio {wall / floor:.3f}; first call {stats['first_request'] - started:.1f} s after start")


def run_engine(cases: list[Any], latency: float, concurrency: int, timeout: float = 30.0) -> tuple[list[Any], float, int]:
    """Evaluate ``cases`` through the engine alone (no pytest) against the scripted server:
    the results, the wall time and the peak number of calls in flight. No hook is
    implemented: this measures the LLM path. The judge also plays the user simulator."""
    from pytest_osi.calls.client import Endpoint, LLMClient, RetryPolicy, import_litellm
    from pytest_osi.calls.scheduler import Scheduler
    from pytest_osi.cases.base import kind_of
    from pytest_osi.cases.engine import CallContext, Evaluator
    from pytest_osi.options import Settings

    import_litellm()  # paid once by any real run; not part of the measurement
    proc, api_base = start_server(latency)
    scheduler = Scheduler(concurrency)
    try:
        class NoHooks:
            def __getattr__(self, name: str) -> object:
                return _NoImpl()

        judge = Endpoint("judge", api_base)
        ctx = CallContext(Settings(concurrency=concurrency, timeout=timeout), NoHooks(),
                          LLMClient(RetryPolicy(timeout=timeout)), scheduler, Endpoint("model-under-test", api_base),
                          judge, simulator=judge)
        evaluator = Evaluator(scheduler, ctx, lambda case: kind_of(case).pipeline())
        start = time.perf_counter()
        futures = [evaluator.schedule(case) for case in cases]
        results = [f.result() for f in futures]
        wall = time.perf_counter() - start
    finally:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        scheduler.close(close_litellm_async_clients)
        proc.terminate()
        proc.wait()
    return results, wall, scheduler.limiter.peak


def throughput(dataset: Path, sets: int | None, latency: float, concurrency: int) -> None:
    from pytest_osi.cases.prompt_sets import load_prompt_sets

    prompt_sets = load_prompt_sets(dataset)[:sets]
    results, wall, peak = run_engine(prompt_sets, latency, concurrency)
    calls = sum(r.usage.calls for r in results)
    floor = calls * latency / concurrency
    graded = sum(r.graded for r in results)
    print(f"throughput[engine, 1 process]: {len(prompt_sets)} sets, {calls} calls, graded {graded}, "
          f"latency {latency * 1000:.0f} ms, concurrency {concurrency}")
    print(f"throughput[engine, 1 process]: wall {wall:.1f} s, floor {floor:.1f} s, ratio {wall / floor:.3f}, "
          f"peak in flight {peak}")


class _NoImpl:
    def get_hookimpls(self) -> list[object]:
        return []


def startup(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_trivial.py").write_text("def test_one():\n    pass\n")
        base = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider"]

        def timed(extra: list[str]) -> float:
            start = time.perf_counter()
            subprocess.run(base + extra, cwd=tmp, check=True, capture_output=True)
            return time.perf_counter() - start

        timed([])  # warm the file-system cache
        with_plugin, without = [], []
        for _ in range(runs):  # interleave so drift hits both sides alike
            with_plugin.append(timed([]))
            without.append(timed(["-p", "no:osi"]))
    a, b = statistics.median(with_plugin), statistics.median(without)
    print(f"startup: pytest --co median with plugin {a * 1000:.0f} ms, with -p no:osi {b * 1000:.0f} ms, "
          f"difference {(a - b) * 1000:.0f} ms (target < 30 ms), ratio {a / b:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--sets", type=int, default=None, help="use only the first N sets")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--startup-runs", type=int, default=21, help="runs per side; ~0.5 s each, noisy below ~20")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers for the pytest measurement (0: no xdist)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-engine", action="store_true", help="skip the single-process engine measurement")
    args = parser.parse_args()
    startup(args.startup_runs)
    if not args.skip_throughput:
        if not args.dataset.exists():
            print(f"throughput: skipped, dataset not found at {args.dataset}")
        else:
            throughput_pytest(args.dataset, args.latency, args.concurrency, args.workers)
            if not args.skip_engine:
                throughput(args.dataset, args.sets, args.latency, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
