"""What a run says about the call store: the header line, replayed vs live counts (and when
the replayed answers were recorded) in the summary and report, and a rewrite run's prune."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import model_args
from fakeserver import FakeLLMServer
from test_plugin import prompt_set, write_sets

SETS = [prompt_set("alpha"), prompt_set("beta")]
CALLS = 2 * 21  # 7 generations + 14 grades per set


def osi(server: FakeLLMServer, *extra: str) -> list[str]:
    return model_args(server, "--osi-dataset=sets.yaml", "--osi-cache-dir=cache", "--osi-record=new",
                      "-p", "no:cacheprovider", *extra)


def entries(pytester: pytest.Pytester) -> int:
    with sqlite3.connect(pytester.path / "cache" / "calls.sqlite3") as db:
        return int(db.execute("select count(*) from calls").fetchone()[0])


def test_the_header_and_summary_say_what_was_replayed_and_when(pytester: pytest.Pytester,
                                                              fake_llm: FakeLLMServer) -> None:
    write_sets(pytester, SETS)
    first = pytester.runpytest_inprocess(*osi(fake_llm, "--osi-report=r1.json"))
    first.stdout.fnmatch_lines(["osi: call store: */cache (record new)*", f"calls: {CALLS} ({CALLS} live, 0 replayed)*"])
    assert "were replayed from the call store" not in first.stdout.str()
    second = pytester.runpytest_inprocess(*osi(fake_llm, "--osi-report=r2.json"))
    second.stdout.fnmatch_lines([
        f"calls: {CALLS} (0 live, {CALLS} replayed)*",
        f"NOTE: {CALLS} of {CALLS} calls were replayed from the call store, recorded 20* UTC .. 20* UTC;*",
    ])
    usage = json.loads((pytester.path / "r2.json").read_text())["usage"]
    assert (usage["replayed"], usage["live"]) == (CALLS, 0) and usage["recorded_from"] <= usage["recorded_to"]


def test_replayed_counts_travel_from_xdist_workers(pytester: pytest.Pytester, fake_llm: FakeLLMServer) -> None:
    write_sets(pytester, SETS)
    pytester.runpytest_inprocess(*osi(fake_llm))
    result = pytester.runpytest_inprocess("-n", "2", *osi(fake_llm))  # the workers are processes all the same
    result.stdout.fnmatch_lines([f"calls: {CALLS} (0 live, {CALLS} replayed)*"])
    assert len(fake_llm.chat_requests) == CALLS


def test_rewrite_prunes_entries_the_run_did_not_use_only_after_a_full_run(pytester: pytest.Pytester,
                                                                          fake_llm: FakeLLMServer) -> None:
    write_sets(pytester, [*SETS, prompt_set("gamma")])
    pytester.runpytest_inprocess(*osi(fake_llm))
    assert entries(pytester) == 3 * 21
    write_sets(pytester, SETS)  # gamma is gone from the dataset
    partial = pytester.runpytest_inprocess(*osi(fake_llm, "--osi-record=rewrite", "-k", "alpha"))
    partial.stdout.fnmatch_lines(["call store: not pruned*"])
    assert entries(pytester) == 3 * 21
    # Under xdist the controller sees no deselection itself: the ids it got results for decide.
    spread = pytester.runpytest_inprocess("-n", "2", *osi(fake_llm, "--osi-record=rewrite", "-k", "alpha"))
    spread.stdout.fnmatch_lines(["call store: not pruned*"])
    assert entries(pytester) == 3 * 21
    full = pytester.runpytest_inprocess(*osi(fake_llm, "--osi-record=rewrite"))
    full.stdout.fnmatch_lines(["call store: pruned 21 entries this run did not use"])
    assert entries(pytester) == 2 * 21


def test_off_says_so_in_the_header(pytester: pytest.Pytester, fake_llm: FakeLLMServer) -> None:
    write_sets(pytester, SETS)
    result = pytester.runpytest_inprocess(*osi(fake_llm, "--osi-record=off", "--co"))
    result.stdout.fnmatch_lines(["osi: call store: off (every call is live, nothing is recorded)"])
    assert not (pytester.path / "cache").exists()


def test_replay_only_imports_no_litellm_and_starts_no_local_server(pytester: pytest.Pytester) -> None:
    """--osi-record=none: no call is ever made, so neither litellm (seconds to import, reaches
    for the network) nor the embedded model's server is needed -- CI needs neither."""
    write_sets(pytester, SETS)
    pytester.makeconftest("""
        import sys, pathlib
        from pytest_osi.calls import local

        def _refuse(self):
            raise AssertionError("the local server was started in a replay-only run")

        local.LocalModelServer.start = _refuse

        def pytest_unconfigure(config):
            pathlib.Path("imported.txt").write_text(str("litellm" in sys.modules))
    """)
    result = pytester.runpytest_subprocess("--osi-dataset=sets.yaml", "--osi-model=local", "--osi-judge=local",
                                           "--osi-record=none", "--osi-cache-dir=cache", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=6)  # nothing recorded yet: every set is a model-error naming the call
    result.stdout.fnmatch_lines(["*--osi-record=new*"])
    assert "started in a replay-only run" not in result.stdout.str()
    assert (pytester.path / "imported.txt").read_text() == "False"
