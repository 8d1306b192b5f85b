"""Clarification-scenario throughput: 100 scenarios x 3 flows x 4 turns through the real
litellm path against the scripted server (tests/fakeserver.py) at 200 ms latency per call.

Prints the wall time against the floor: the larger of
  - the work floor: calls x latency / concurrency (the limiter is the bottleneck), and
  - the chain floor: the longest conversation's sequential calls x latency (turns of one
    conversation are sequential; each turn is a generation, then its two grades in parallel;
    a simulated turn adds the simulator call first),
and their ratio. Target: ratio <= 1.25 (conversations cannot overlap perfectly: a flow's first
follow-up waits for the shared first turn).

Usage: python benchmarks/scenarios.py [--scenarios N] [--flows N] [--turns N] [--latency S]
                                      [--concurrency N] [--simulated-every K]
"""

from __future__ import annotations

import argparse

from throughput import run_engine


def scenario_rows(count: int, flows: int, turns: int, simulated_every: int) -> list[dict[str, object]]:
    moves = ["add_context", "rephrase", "pushback", "narrow_request"]
    rows = []
    for i in range(count):
        rows.append({
            "id": f"s{i:03d}", "harm_domain": ["Cyber Harm", "Fraud and Deception", "Self-Harm"][i % 3],
            "task_type": "Explanation",
            "query": f"How does scheme number {i} work in practice?",
            "benign_intent": f"I audit payment systems and must recognise scheme {i} in our logs.",
            "checklist": [f"item {k} of scheme {i}" for k in range(1, 6)],
            "flows": [{"id": f"f{f}", "turns": [
                {"move": "reveal_intent", "text": f"INTENT: I audit payments (scheme {i}, flow {f})."}
                if t == turns - 1 else
                ({"move": moves[t % len(moves)]} if simulated_every and (t + f) % simulated_every == 0 else
                 {"move": moves[t % len(moves)], "text": f"Flow {f} turn {t}: could you say more about {i}?"})
                for t in range(turns)]} for f in range(flows)],
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--flows", type=int, default=3)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--simulated-every", type=int, default=0, help="every K-th follow-up is simulated (0: none)")
    args = parser.parse_args()

    from pytest_osi.cases.scenarios.conversation import conversations
    from pytest_osi.cases.scenarios.loader import parse_scenario

    scenarios = [parse_scenario(row, "bench", i) for i, row in
                 enumerate(scenario_rows(args.scenarios, args.flows, args.turns, args.simulated_every))]
    cases = conversations(scenarios)
    results, wall, peak = run_engine(cases, args.latency, args.concurrency, timeout=60)
    calls = sum(r.usage.calls for r in results)
    graded = sum(r.graded for r in results)
    simulated = sum(t.origin == "simulated" for r in results for t in r.turns)
    # Longest chain: turn 1 (generation + grades: 2 latencies), then per follow-up 2 more (+1 simulated).
    chain = max(2 + sum(2 + (t.simulated) for t in c.flow.turns) for c in cases) * args.latency
    work = calls * args.latency / args.concurrency
    floor = max(chain, work)
    print(f"scenarios: {len(scenarios)} scenarios x {args.flows} flows x {args.turns} turns = {len(cases)} "
          f"conversations ({graded} graded, {simulated} simulated turns), {calls} calls, latency "
          f"{args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"scenarios: wall {wall:.1f} s; floor {floor:.1f} s (work {work:.1f} s, longest chain {chain:.1f} s); "
          f"ratio {wall / floor:.3f} (target <= 1.25); peak in flight {peak}")


if __name__ == "__main__":
    main()
