"""Unit tests for pytest_osi.cases.prompt_sets.loader and pytest_osi.cases.prompt_sets.model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, SHARED_DATASET

from pytest_osi.cases.prompt_sets.loader import load_prompt_sets, load_taxonomy
from pytest_osi.cases.prompt_sets.model import PromptSet
from pytest_osi.errors import DatasetError

PARAPHRASES = ["para one", "para two", "para three", "para four"]


def row(**overrides: Any) -> dict[str, Any]:
    """A valid row in the project's own format."""
    data = {
        "id": "set-a",
        "harm_domain": "Cyber Compromise",
        "task_type": "Explanation",
        "underlying_task": "Getting into a router",
        "benign": "benign prompt",
        "dual_use": "dual-use prompt",
        "malicious": "malicious prompt",
        "dual_use_paraphrases": list(PARAPHRASES),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}  # `...` deletes a field


def flat_row(**overrides: Any) -> dict[str, Any]:
    """A valid row in OpenSafeIntent's flat layout (keys deliberately out of order)."""
    data = {
        "harm_domain": "Cyber Compromise",
        "task_type": "Explanation",
        "underlying_task": "Getting into a router",
        "prompt_dual_use_5": "para four",
        "prompt_dual_use_3": "para two",
        "prompt_benign": "benign prompt",
        "prompt_dual_use": "dual-use prompt",
        "prompt_malicious": "malicious prompt",
        "prompt_dual_use_2": "para one",
        "prompt_dual_use_4": "para three",
        "benign_prompt_plausible_benign_use": "owner locked out",
        "dual_use_prompt_plausible_benign_use": "forgot password",
        "dual_use_prompt_meaningful_misuse_risk": "takeover",
        "malicious_prompt_meaningful_misuse_risk": "",  # empty annotations are dropped
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def nested_row(**overrides: Any) -> dict[str, Any]:
    data = {
        "harm_domain": "Cyber Compromise",
        "task_type": "Explanation",
        "underlying_task": "Getting into a router",
        "generated_prompts": {
            "benign_prompt": "benign prompt",
            "dual_use_prompt": "dual-use prompt",
            "malicious_prompt": "malicious prompt",
        },
        "dual_use_paraphrases": list(PARAPHRASES),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def write(path: Path, rows: Any) -> Path:
    """Serialise ``rows`` in the format the file extension names."""
    if path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(rows, sort_keys=False), encoding="utf-8")
    return path


# --- the project's own format -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, wrap",
    [
        ("sets.yaml", lambda rows: rows),
        ("sets.yml", lambda rows: {"prompt_sets": rows}),
        ("sets.json", lambda rows: rows),
        ("sets.json", lambda rows: {"prompt_sets": rows}),
        ("sets.jsonl", lambda rows: rows),
    ],
)
def test_own_format_loads_in_every_file_type(tmp_path: Path, name: str, wrap: Any) -> None:
    rows = [row(), row(id="set-b", benign="other benign", annotations={"dual_use_misuse_risk": "r"})]
    sets = load_prompt_sets(write(tmp_path / name, wrap(rows)))

    assert [s.id for s in sets] == ["set-a", "set-b"]
    first = sets[0]
    assert (first.harm_domain, first.task_type, first.underlying_task) == ("Cyber Compromise", "Explanation", "Getting into a router")
    assert (first.benign, first.dual_use, first.malicious) == ("benign prompt", "dual-use prompt", "malicious prompt")
    assert first.dual_use_paraphrases == tuple(PARAPHRASES)
    assert sets[1].annotations.dual_use_misuse_risk == "r"
    assert str(first) == "set-a"  # readable parametrize ids


def test_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "sets.jsonl"
    path.write_text(f"{json.dumps(row())}\n\n   \n{json.dumps(row(id='set-b'))}\n", encoding="utf-8")
    assert [s.id for s in load_prompt_sets(path)] == ["set-a", "set-b"]


def test_prompts_lists_triplet_then_paraphrases(tmp_path: Path) -> None:
    (prompt_set,) = load_prompt_sets(write(tmp_path / "s.yaml", [row()]))
    assert prompt_set.prompts() == [
        ("benign", "benign prompt"),
        ("dual_use", "dual-use prompt"),
        ("malicious", "malicious prompt"),
        ("dual_use_p1", "para one"),
        ("dual_use_p2", "para two"),
        ("dual_use_p3", "para three"),
        ("dual_use_p4", "para four"),
    ]


def test_prompt_whitespace_is_stripped(tmp_path: Path) -> None:
    (prompt_set,) = load_prompt_sets(write(tmp_path / "s.yaml", [row(benign="  padded \n")]))
    assert prompt_set.benign == "padded"


# --- OpenSafeIntent layouts ---------------------------------------------------------------------


def test_flat_layout_maps_prompts_paraphrases_in_numeric_order_and_annotations(tmp_path: Path) -> None:
    (s,) = load_prompt_sets(write(tmp_path / "dataset.json", [flat_row()]))

    assert (s.benign, s.dual_use, s.malicious) == ("benign prompt", "dual-use prompt", "malicious prompt")
    assert s.dual_use_paraphrases == tuple(PARAPHRASES)  # prompt_dual_use_2..5, sorted by number
    assert s.underlying_task == "Getting into a router"
    assert s.annotations.benign_plausible_benign_use == "owner locked out"
    assert s.annotations.dual_use_plausible_benign_use == "forgot password"
    assert s.annotations.dual_use_misuse_risk == "takeover"
    assert s.annotations.malicious_misuse_risk is None


def test_nested_layout(tmp_path: Path) -> None:
    (s,) = load_prompt_sets(write(tmp_path / "dataset.json", [nested_row(id="nested-1")]))
    assert s.id == "nested-1"
    assert (s.benign, s.dual_use, s.malicious) == ("benign prompt", "dual-use prompt", "malicious prompt")
    assert s.dual_use_paraphrases == tuple(PARAPHRASES)
    assert (s.harm_domain, s.task_type) == ("Cyber Compromise", "Explanation")


# --- ids ----------------------------------------------------------------------------------------


def test_derived_id_is_stable_and_content_based(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", [flat_row()])
    copy = write(tmp_path / "b.json", [flat_row()])
    changed = write(tmp_path / "c.json", [flat_row(prompt_dual_use_4="a different paraphrase")])

    (a1,), (a2,), (b,) = load_prompt_sets(first), load_prompt_sets(first), load_prompt_sets(copy)
    (c,) = load_prompt_sets(changed)

    assert a1.id == a2.id == b.id  # same content -> same id, across loads and files
    assert re.fullmatch(r"getting-into-a-router-[0-9a-f]{8}", a1.id)  # readable slug + hash
    assert c.id != a1.id  # any prompt change gives a new id
    # The same prompt-set in the nested layout keeps its id.
    assert load_prompt_sets(write(tmp_path / "n.json", [nested_row()]))[0].id == a1.id


def test_same_task_with_different_prompts_gets_distinct_ids(tmp_path: Path) -> None:
    sets = load_prompt_sets(write(tmp_path / "d.json", [flat_row(), flat_row(prompt_benign="another benign")]))
    assert len({s.id for s in sets}) == 2


def test_explicit_id_is_kept(tmp_path: Path) -> None:
    (s,) = load_prompt_sets(write(tmp_path / "d.json", [flat_row(id="my-own-id")]))
    assert s.id == "my-own-id"


# --- bad input ----------------------------------------------------------------------------------


# (file name, rows or raw text, load kwargs, expected row, row id, field, words in the problem)
BAD_INPUTS = [
    pytest.param("s.json", '[{"id": "a",}]', {}, None, None, None, "invalid JSON at line 1", id="invalid-json"),
    pytest.param("s.jsonl", f'{json.dumps(row())}\n{{"id": "b"', {}, 1, None, None, "invalid JSON on line 2", id="invalid-jsonl-line"),
    pytest.param("s.yaml", "- id: [unclosed\n", {}, None, None, None, "invalid YAML", id="invalid-yaml"),
    pytest.param("s.yaml", {"sets": []}, {}, None, None, None, "expected a list", id="not-a-list"),
    pytest.param("s.yaml", [row(), "just text"], {}, 1, None, None, "expected a mapping", id="row-not-a-mapping"),
    pytest.param("s.yaml", [row(), row(id="b", malicious=...)], {}, 1, "b", "malicious", "missing", id="missing-prompt"),
    pytest.param("s.yaml", [row(benign="   ")], {}, 0, "set-a", "benign", "empty", id="empty-prompt"),
    pytest.param("s.yaml", [row(benign=42)], {}, 0, "set-a", "benign", "valid string", id="wrong-type"),
    pytest.param("s.yaml", [row(dual_use_paraphrases=["ok", None, "x", "y"])], {}, 0, "set-a", "dual_use_paraphrases.1",
                 "valid string", id="wrong-type-paraphrase"),
    pytest.param("s.yaml", [row(benign_prompt="typo")], {}, 0, "set-a", "benign_prompt", "unknown field", id="unknown-field"),
    pytest.param("s.yaml", [row(annotations={"risk": "x"})], {}, 0, "set-a", "annotations.risk", "unknown field",
                 id="unknown-annotation"),
    pytest.param("s.yaml", [row(), row(id="b", harm_domain="Cyber")], {"harm_domains": ["Cyber Compromise"]}, 1, "b",
                 "harm_domain", "unknown harm domain 'Cyber'; the taxonomy allows: Cyber Compromise", id="unknown-domain"),
    pytest.param("s.yaml", [row(id="x"), row(id="y"), row(id="x", benign="b2")], {}, 2, "x", "id",
                 "duplicate id 'x', already used by row 0", id="duplicate-id"),
    pytest.param("s.yaml", [row(dual_use_paraphrases=PARAPHRASES[:3])], {}, 0, "set-a", "dual_use_paraphrases",
                 "has 3 dual-use paraphrases, 4 required", id="too-few-paraphrases"),
    pytest.param("s.yaml", [row()], {"min_paraphrases": 5}, 0, "set-a", "dual_use_paraphrases",
                 "has 4 dual-use paraphrases, 5 required", id="min-paraphrases-option"),
    pytest.param("d.json", [flat_row(id="f", prompt_malicious=...)], {}, 0, "f", "prompt_malicious", "missing",
                 id="flat-missing-prompt"),
    pytest.param("d.json", [flat_row(id="f", prompt_dual_use_5=...)], {}, 0, "f", "prompt_dual_use_2..prompt_dual_use_5",
                 "has 3 dual-use paraphrases", id="flat-too-few-paraphrases"),
    pytest.param("d.json", [nested_row(id="n", generated_prompts={"benign_prompt": "b", "dual_use_prompt": "d"})], {}, 0,
                 "n", "generated_prompts.malicious_prompt", "missing", id="nested-missing-prompt"),
    pytest.param("s.csv", "id,benign\n", {}, None, None, None, "unsupported file type '.csv'", id="unsupported-extension"),
]


@pytest.mark.parametrize("name, content, kwargs, row_index, row_id, field, problem", BAD_INPUTS)
def test_bad_input_names_file_row_id_and_field(
    tmp_path: Path, name: str, content: Any, kwargs: dict, row_index: int | None, row_id: str | None,
    field: str | None, problem: str,
) -> None:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        write(path, content)

    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path, **kwargs)

    err, message = info.value, str(info.value)
    assert (err.path, err.row, err.row_id, err.field) == (str(path), row_index, row_id, field)
    assert message.startswith(str(path))
    assert problem in message
    if row_index is not None:
        assert f"row {row_index}" in message
    if row_id is not None:
        assert f"id={row_id!r}" in message
    if field is not None:
        assert f"field {field!r}" in message


def test_error_on_row_without_id_names_its_derived_id(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", [row(id=..., malicious="")])
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert re.fullmatch(r"getting-into-a-router-[0-9a-f]{8}", info.value.row_id or "")
    assert f"id={info.value.row_id!r}" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(DatasetError, match=re.escape(f"{path}: file not found")):
        load_prompt_sets(path)


def test_yaml_date_prompt_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump([row(id=...)]).replace("benign prompt", "2024-01-01"), encoding="utf-8")
    with pytest.raises(DatasetError, match="field 'benign'"):
        load_prompt_sets(path)


def test_flat_bad_paraphrase_names_the_dataset_field(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", [flat_row(id="f", prompt_dual_use_3="  ")])
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert info.value.field == "prompt_dual_use_3"


def test_flat_bad_annotation_names_the_dataset_field(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", [flat_row(id="f", dual_use_prompt_plausible_benign_use=["a", "list"])])
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert info.value.field == "dual_use_prompt_plausible_benign_use"
    assert "field 'dual_use_prompt_plausible_benign_use'" in str(info.value)


# --- real data, examples, taxonomy --------------------------------------------------------------


def test_published_opensafeintent_dataset_loads() -> None:
    if not SHARED_DATASET.is_file():
        pytest.skip(f"published dataset not present at {SHARED_DATASET}")
    sets = load_prompt_sets(SHARED_DATASET)
    assert len(sets) == 700
    assert sum(len(s.prompts()) for s in sets) == 4_900  # 700 x (3 intents + 4 paraphrases)
    assert len({s.id for s in sets}) == 700


def test_example_prompt_sets_load() -> None:
    files = sorted((EXAMPLES / "prompt_sets").iterdir())
    sets = [s for f in files for s in load_prompt_sets(f)]
    assert len(sets) == 9
    assert len({s.id for s in sets}) == 9
    assert all(isinstance(s, PromptSet) and len(s.dual_use_paraphrases) == 4 for s in sets)


@pytest.mark.parametrize(
    "name, content",
    [
        ("harm_domain.json", {"Cyber Compromise": {"definition": "..."}, "Fraud and Deception": {"definition": "..."}}),
        ("domains.json", ["Cyber Compromise", "Fraud and Deception"]),
        ("domains.yaml", ["Cyber Compromise", "Fraud and Deception"]),
    ],
)
def test_load_taxonomy(tmp_path: Path, name: str, content: Any) -> None:
    path = write(tmp_path / name, content)
    assert load_taxonomy(path) == ["Cyber Compromise", "Fraud and Deception"]


def test_taxonomy_must_be_names(tmp_path: Path) -> None:
    path = write(tmp_path / "domains.json", [1, 2])
    with pytest.raises(DatasetError, match=re.escape(str(path)) + ".*list of names or a mapping"):
        load_taxonomy(path)


def test_taxonomy_restricts_domains_when_loading(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write(tmp_path / "t.json", {"Cyber Compromise": {}}))
    sets = load_prompt_sets(write(tmp_path / "s.yaml", [row()]), harm_domains=taxonomy)
    assert [s.harm_domain for s in sets] == ["Cyber Compromise"]
