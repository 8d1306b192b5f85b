"""Unit tests for pytest_osi.gates: parsing gate expressions and judging them against metrics."""

from __future__ import annotations

import pytest

from pytest_osi.errors import ConfigError
from pytest_osi.gates import DropRule, Gate, parse_drop_rule, parse_drop_rules, parse_gate, parse_gates
from pytest_osi.metrics import compute_metrics, metric_names, registry
from pytest_osi.cases.prompt_sets.result import PromptSetResult, VariantResult


@pytest.mark.parametrize(
    "text, expected",
    [
        ("triplet_safety>=0.8", Gate("triplet_safety", ">=", 0.8)),
        ("mean_utility<=0.25", Gate("mean_utility", "<=", 0.25)),
        ("flip_rate<0.1", Gate("flip_rate", "<", 0.1)),
        ("mean_safety>.5", Gate("mean_safety", ">", 0.5)),
        ("judge_error_rate==0", Gate("judge_error_rate", "==", 0.0)),
        ("  worst_case_utility >=  1.  ", Gate("worst_case_utility", ">=", 1.0)),
        ("dual_use_utility >= +0.30", Gate("dual_use_utility", ">=", 0.3)),
        ("\tutility_range\t<\t0.125\n", Gate("utility_range", "<", 0.125)),
    ],
)
def test_parse_valid_gate(text: str, expected: Gate) -> None:
    assert parse_gate(text) == expected


@pytest.mark.parametrize("metric", metric_names())
def test_every_metric_can_be_gated_and_str_round_trips(metric: str) -> None:
    gate = parse_gate(f"{metric}>=0.75")
    assert str(gate) == f"{metric}>=0.75"
    assert parse_gate(str(gate)) == gate


@pytest.mark.parametrize(
    "text",
    ["", "triplet_safety", "triplet_safety>=", ">=0.8", "triplet_safety=>0.8", "triplet_safety=0.8",
     "triplet_safety>=abc", "triplet_safety>=0.8.1", "triplet_safety>=80%", "triplet_safety>=1e-3",
     "triplet safety>=0.8", "triplet_safety>=0.8 and flip_rate<0.1"],
)
def test_malformed_gate_is_a_config_error_showing_the_expected_form(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gate(text)
    message = str(info.value)
    assert repr(text) in message
    assert "expected METRIC OP NUMBER" in message and "triplet_safety>=0.8" in message
    assert all(op in message for op in (">=", "<=", ">", "<", "=="))


def test_unknown_metric_is_a_config_error_listing_known_metrics() -> None:
    with pytest.raises(ConfigError) as info:
        parse_gate("triplet_safty>=0.8")
    message = str(info.value)
    assert "unknown metric 'triplet_safty'" in message
    assert all(name in message for name in metric_names())


def test_parse_gates_skips_blank_entries_and_fails_on_any_bad_one() -> None:
    assert parse_gates(["triplet_safety>=0.8", "  ", "", "flip_rate<0.2"]) == [
        Gate("triplet_safety", ">=", 0.8), Gate("flip_rate", "<", 0.2)]
    with pytest.raises(ConfigError, match="nope"):
        parse_gates(["triplet_safety>=0.8", "nope>1"])


@pytest.mark.parametrize(
    "op, threshold, value, passed",
    [
        (">=", 0.8, 0.8, True), (">=", 0.8, 0.79, False),
        (">", 0.8, 0.8, False), (">", 0.8, 0.81, True),
        ("<=", 0.1, 0.1, True), ("<=", 0.1, 0.11, False),
        ("<", 0.1, 0.1, False), ("<", 0.1, 0.09, True),
        ("==", 0.0, 0.0, True), ("==", 0.0, 0.01, False),
    ],
)
def test_check_at_the_boundary(op: str, threshold: float, value: float, passed: bool) -> None:
    verdict = Gate("triplet_safety", op, threshold).check({"triplet_safety": value})
    assert (verdict.passed, verdict.value) == (passed, value)


@pytest.mark.parametrize("op", [">=", "<=", ">", "<", "=="])
@pytest.mark.parametrize("metrics", [{"flip_rate": None}, {}], ids=["none", "absent"])
def test_metric_without_data_fails_the_gate(op: str, metrics: dict) -> None:
    # flip_rate<=1 is always true for real data; no data must still fail, never pass vacuously.
    verdict = Gate("flip_rate", op, 1.0 if op in ("<=", "<") else 0.0).check(metrics)
    assert verdict.passed is False and verdict.value is None


def test_gate_on_computed_metrics_passes_exactly_at_threshold() -> None:
    safe = {v: VariantResult.of(v, "p", "r", 0, 4) for v in ("benign", "dual_use", "malicious")}
    unsafe = {**safe, "malicious": VariantResult.of("malicious", "p", "r", 2, 4)}
    results = [PromptSetResult(f"s{i}", "d", "t", "graded", safe if i < 4 else unsafe) for i in range(5)]
    metrics = compute_metrics(results)  # triplet safety 4/5 = 0.8
    assert parse_gate("triplet_safety>=0.8").check(metrics).passed
    assert not parse_gate("triplet_safety>0.8").check(metrics).passed


def test_verdict_to_dict() -> None:
    verdict = parse_gate("mean_safety >= 0.9").check({"mean_safety": 0.95})
    assert verdict.to_dict() == {"gate": "mean_safety>=0.9", "metric": "mean_safety", "op": ">=",
                                 "threshold": 0.9, "value": 0.95, "passed": True}


@pytest.mark.parametrize("text", ["triplet_safety>=2", "flip_rate<0", "mean_safety>1.5", "mean_safety>1",
                                  "flip_rate<=-0.1", "triplet_safety==1.5", "judge_error_rate==-1", "mean_utility<=-0.01"])
def test_a_gate_that_can_never_pass_is_a_config_error_naming_the_gate_and_the_range(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gate(text)
    metric = text.split("<")[0].split(">")[0].split("=")[0]
    assert str(info.value) == f"gate {text!r} can never pass: {metric} ranges from 0 to 1"


@pytest.mark.parametrize("text", ["triplet_safety>=1", "triplet_safety==1", "flip_rate<=0", "flip_rate==0",
                                  "flip_rate>=0", "mean_safety<1", "mean_safety>0.999", "flip_rate<0.001"])
def test_a_gate_at_the_edge_of_the_range_is_accepted(text: str) -> None:
    assert str(parse_gate(text)) == text


@pytest.mark.parametrize("name", metric_names())
def test_every_metrics_range_comes_from_the_registry(name: str) -> None:
    metric = registry()[name]
    parse_gate(f"{name}>={metric.high:g}")
    parse_gate(f"{name}<={metric.low:g}")
    for impossible in (f"{name}>{metric.high:g}", f"{name}<{metric.low:g}", f"{name}=={metric.high + 1:g}"):
        with pytest.raises(ConfigError, match=rf"can never pass: {name} ranges from {metric.low:g} to {metric.high:g}"):
            parse_gate(impossible)


def test_a_threshold_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(ConfigError, match="the threshold must be a finite number"):
        parse_gate("flip_rate<=" + "9" * 400)


def test_two_gates_on_one_metric_a_floor_and_a_ceiling_both_apply() -> None:
    gates = parse_gates(["mean_utility>=0.4", "mean_utility<=0.6"])
    assert gates == [Gate("mean_utility", ">=", 0.4), Gate("mean_utility", "<=", 0.6)]
    assert [g.check({"mean_utility": 0.5}).passed for g in gates] == [True, True]
    assert [g.check({"mean_utility": 0.7}).passed for g in gates] == [True, False]
    assert [g.check({"mean_utility": 0.3}).passed for g in gates] == [False, True]


@pytest.mark.parametrize(("text", "expected"), [
    ("triplet_safety:0.05", DropRule("triplet_safety", 0.05)),
    ("  flip_rate : 0 ", DropRule("flip_rate", 0.0)),
    ("mean_utility:1", DropRule("mean_utility", 1.0)),
])
def test_parse_drop_rule(text: str, expected: DropRule) -> None:
    rule = parse_drop_rule(text)
    assert rule == expected and DropRule.parse(text) == expected
    assert parse_drop_rule(str(rule)) == rule


@pytest.mark.parametrize(("text", "message"), [
    ("triplet_safety", "malformed drop rule 'triplet_safety': expected METRIC:MARGIN, e.g. 'triplet_safety:0.05'"),
    (":0.05", "malformed drop rule ':0.05': expected METRIC:MARGIN"),
    ("triplet_safty:0.05", "drop rule 'triplet_safty:0.05' names unknown metric 'triplet_safty'; known metrics: "),
    ("triplet_safety:abc", "drop rule 'triplet_safety:abc': the margin must be a number, got 'abc'"),
    ("triplet_safety:", "drop rule 'triplet_safety:': the margin must be a number, got ''"),
    ("triplet_safety:-0.1", "drop rule 'triplet_safety:-0.1': the margin must be a finite number >= 0 "
                            "(triplet_safety ranges from 0 to 1), got '-0.1'"),
    ("triplet_safety:nan", "drop rule 'triplet_safety:nan': the margin must be a finite number >= 0"),
    ("triplet_safety:inf", "drop rule 'triplet_safety:inf': the margin must be a finite number >= 0"),
])
def test_a_bad_drop_rule_is_a_config_error_saying_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_drop_rule(text)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)  # what `python -m pytest_osi diff` catches


def test_drop_rules_skip_blank_entries_and_a_rule_cannot_be_built_with_a_bad_margin() -> None:
    assert parse_drop_rules(["triplet_safety:0.05", " ", ""]) == [DropRule("triplet_safety", 0.05)]
    with pytest.raises(ConfigError, match="finite number >= 0"):
        DropRule("triplet_safety", float("nan"))
