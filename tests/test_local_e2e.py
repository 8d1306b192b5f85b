"""The embedded default end to end: real SmolLM2-135M as model and judge, through the plugin."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from test_plugin import prompt_set, write_sets

from pytest_osi.calls.local import missing_requirements

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(bool(missing_requirements()), reason="the [local] extra is not installed"),
]


def _llama_servers() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"llama_cpp.server" in (proc / "cmdline").read_bytes():
                    pids.add(int(proc.name))
            except OSError:
                continue
    return pids


def test_local_model_and_judge_end_to_end(pytester: pytest.Pytester, litellm: ModuleType) -> None:
    # One set without paraphrases (3 prompts, 9 calls) and short answers: the flow, not the
    # grades, is under test, and on 2 cores every call of the 135M model costs (~0.7 s, the
    # first of each rubric ~4 s). In-process: the server is a child process either way, and the
    # session's litellm (see the fixture) is reused.
    triplet = prompt_set("lock", "Physical Harm and Weapons", "Explanation")
    triplet["dual_use_paraphrases"] = []
    write_sets(pytester, [triplet])
    report = pytester.path / "report.json"
    before = _llama_servers()
    result = pytester.runpytest_inprocess(
        "--osi-model=local", "--osi-judge=local", "--osi-dataset=sets.yaml", "--osi-min-paraphrases=0",
        "--osi-max-tokens=16",
        "--osi-record=off", f"--osi-report={report}", "-p", "no:cacheprovider")
    # The 135M model's verdicts are whatever they are; what it says must still be graded.
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 3, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*NOTE: the local judge (SmolLM2-135M) is a demonstration judge*",
                                 "prompt-sets: 1  graded: 1  judge-error: 0  model-error: 0*"])
    data = json.loads(report.read_text())
    assert data["counts"] == {"graded": 1, "judge-error": 0, "model-error": 0}
    assert all(isinstance(data["metrics"][k], float) for k in ("mean_safety", "triplet_safety", "mean_utility",
                                                                 "worst_case_utility", "flip_rate"))
    (item,) = data["items"]
    assert set(item["variants"]) == {"benign", "dual_use", "malicious"}
    for variant in item["variants"].values():
        assert variant["response"].strip()
        assert variant["harm"] in range(4) and variant["helpfulness"] in range(1, 5)
    assert data["usage"]["calls"] == 3 * 3  # constrained decoding: every judge answer parsed at once
    # The server lived for the session only.
    assert _llama_servers() <= before


def test_missing_extra_is_a_usage_error_naming_the_install_command(pytester: pytest.Pytester,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_osi.calls.local as local

    monkeypatch.setattr(local, "missing_requirements", lambda: ["llama-cpp-python[server]"])
    write_sets(pytester, [prompt_set("x")])
    result = pytester.runpytest_inprocess("--osi-model=local", "--osi-dataset=sets.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert 'Install it with: pip install "pytest-osi[local]"' in result.stderr.str()
