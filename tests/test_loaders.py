"""Unit tests for pytest_osi.cases.prompt_sets.loader and pytest_osi.cases.prompt_sets.model."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, SHARED_DATASET

from pytest_osi import formats
from pytest_osi.cases.prompt_sets import loader
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
    pytest.param("s.jsonl", f'{json.dumps(row())}\n{{"id": "b"', {}, 1, None, None, "line 2: invalid JSON", id="invalid-jsonl-line"),
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


# --- reading safely: what is opened, how much is read ---------------------------------------------


@pytest.fixture
def forbid_open(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Paths added to the returned set must not be opened: the loader has to refuse them from
    os.stat alone. (Opening a FIFO blocks for ever, reading /dev/zero never ends: without the
    check this fails at once instead of hanging the test run.)"""
    guarded: set[str] = set()

    def guard(real: Any) -> Any:
        def checked_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(file, int) and os.path.abspath(os.fspath(file)) in guarded:
                raise AssertionError(f"{file} was opened before it was checked")
            return real(file, *args, **kwargs)
        return checked_open

    monkeypatch.setattr(os, "open", guard(os.open))
    monkeypatch.setattr(io, "open", guard(io.open))
    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    return guarded


def _fifo(path: Path) -> str:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(path)
    return "a FIFO (named pipe)"


def _dev_zero(path: Path) -> str:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this platform")
    path.symlink_to("/dev/zero")
    return "a character device, via a link to /dev/zero"


def _directory(path: Path) -> str:
    path.mkdir()
    return "a directory"


@pytest.mark.parametrize("name, make", [("pipe.yaml", _fifo), ("x.json", _dev_zero), ("sets.jsonl", _directory)],
                         ids=["fifo", "dev-zero-symlink", "directory"])
def test_special_files_are_refused_before_they_are_opened(
    tmp_path: Path, forbid_open: set[str], name: str, make: Any,
) -> None:
    path = tmp_path / name
    kind = make(path)
    forbid_open.add(str(path))

    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)

    assert str(info.value) == (f"{path}: not a regular file ({kind}): a dataset must be a regular "
                               f".yaml, .yml, .json or .jsonl file")


def test_special_file_as_taxonomy_is_refused_before_it_is_opened(tmp_path: Path, forbid_open: set[str]) -> None:
    path = tmp_path / "domains.yaml"
    _fifo(path)
    forbid_open.add(str(path))
    with pytest.raises(DatasetError, match=re.escape(f"{path}: not a regular file (a FIFO (named pipe))")):
        load_taxonomy(path)


def test_unsupported_extension_is_refused_before_the_file_is_looked_at(tmp_path: Path, forbid_open: set[str]) -> None:
    path = tmp_path / "pipe.txt"
    _fifo(path)
    forbid_open.add(str(path))
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: unsupported file type '.txt': use .yaml, .yml, .json or .jsonl"


def test_file_over_256_mib_is_refused_before_it_is_read(tmp_path: Path, forbid_open: set[str]) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(256 * 1024 * 1024 + 1)  # sparse: no disk space, no time
    forbid_open.add(str(path))

    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)

    assert str(info.value) == f"{path}: file too large (268435457 bytes): the limit for a dataset file is 256 MiB"


def test_read_stops_at_the_limit_when_the_file_is_longer_than_it_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /proc files say they are empty and then deliver content: like a file that grows after
    # os.stat, only a bounded read protects memory.
    source = Path("/proc/self/status")
    if not source.is_file() or source.stat().st_size != 0:
        pytest.skip("needs a /proc file that reports size 0")
    path = tmp_path / "growing.json"
    path.symlink_to(source)
    monkeypatch.setattr(formats, "MAX_BYTES", 64)

    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)

    assert str(info.value) == f"{path}: file too large: the limit for a dataset file is 64 bytes"


def test_read_rows_takes_a_size_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", [row()])
    size = path.stat().st_size
    assert formats.read_rows(path, "s.json", "prompt_sets", max_bytes=size) == [row()]
    with pytest.raises(DatasetError) as info:
        formats.read_rows(path, "s.json", "prompt_sets", max_bytes=size - 1)
    assert str(info.value) == f"s.json: file too large ({size} bytes): the limit for a dataset file is {size - 1} bytes"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"- id: a\n  benign: caf\xe9\n")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: line 2: not UTF-8 text (byte 21: invalid continuation byte)"


# --- parsing safely: nesting, aliases, duplicate keys ---------------------------------------------


@pytest.mark.parametrize("name", ["deep.json", "deep.yaml", "deep.jsonl"])
def test_deeply_nested_data_is_a_dataset_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("[" * 100_000, encoding="utf-8")

    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)

    err = info.value
    line = "line 1: " if name.endswith(".jsonl") else ""
    assert str(err).startswith(f"{path}: " + ("row 0: " if line else "") + line + "data nested too deeply to read")
    assert err.row == (0 if line else None)


def test_deeply_nested_taxonomy_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "domains.json"
    path.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(DatasetError, match=re.escape(f"{path}: data nested too deeply to read")):
        load_taxonomy(path)


def test_recursion_while_processing_a_row_names_file_and_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Data nested just below the parser's limit can still exhaust the stack later (hashing it
    # for an id, validating it): that must be a DatasetError too, not a crash.
    def too_deep(fields: Any) -> str:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(loader, "stable_id", too_deep)
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(row()) + "\n\n" + json.dumps(row(id=...)) + "\n", encoding="utf-8")

    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)

    assert str(info.value) == f"{path}: row 1: data nested too deeply (a prompt-set needs only a few levels) (row at line 3)"


def test_out_of_memory_while_parsing_is_a_dataset_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(text: str) -> Any:
        raise MemoryError

    monkeypatch.setattr(formats, "_decode_json", no_memory)
    path = write(tmp_path / "s.json", [row()])
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: data too large to read into memory"


BILLION_LAUGHS = """\
prompt_sets: []
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
ANCHOR_REFUSED = ("refused: a dataset has no need for anchors or aliases (&name / *name), and nested aliases "
                  "can expand to gigabytes; write each value out in full")


def test_yaml_alias_bomb_is_refused_at_its_first_anchor(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: line 2: YAML anchor &a {ANCHOR_REFUSED}"


def test_yaml_alias_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    text = yaml.safe_dump([row()], sort_keys=False).replace("benign: benign prompt", "benign: *shared")
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("  benign: *shared") + 1
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: line {line}: YAML alias *shared {ANCHOR_REFUSED}"


def test_taxonomy_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text(BILLION_LAUGHS.replace("prompt_sets: []\n", ""), encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_taxonomy(path)
    assert str(info.value) == f"{path}: line 1: YAML anchor &a {ANCHOR_REFUSED}"


DUPLICATE_BENIGN = """\
- id: dup
  harm_domain: Cyber Compromise
  task_type: Explanation
  benign: the benign prompt
  dual_use: dual-use prompt
  malicious: malicious prompt
  benign: a second benign prompt
  dual_use_paraphrases: [para one, para two, para three, para four]
"""
KEYS_UNIQUE = "keys must be unique (otherwise the last value would silently win)"


def test_yaml_duplicate_key_names_key_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(DUPLICATE_BENIGN, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: line 7: duplicate key 'benign' (first on line 4): {KEYS_UNIQUE}"


def test_yaml_duplicate_taxonomy_domain_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text("Cyber Compromise: {definition: a}\nFraud: {definition: b}\nCyber Compromise: {definition: c}\n",
                    encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_taxonomy(path)
    assert str(info.value) == f"{path}: line 3: duplicate key 'Cyber Compromise' (first on line 1): {KEYS_UNIQUE}"


def test_json_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps([row()])[:-2] + ', "benign": "second"}]', encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: duplicate key 'benign' in one object: {KEYS_UNIQUE}"


def test_jsonl_duplicate_key_names_row_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(row()) + "\n\n" + json.dumps(row(id="b"))[:-1] + ', "id": "c"}\n', encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: row 1: line 3: duplicate key 'id' in one object: {KEYS_UNIQUE}"
    assert info.value.row == 1


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("s.json", "[" + "9" * 5000 + "]", "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
        ("s.yaml", "- id: a\n  benign: 2024-13-45\n", "invalid YAML: month must be in 1..12"),
    ],
    ids=["json-huge-integer", "yaml-impossible-date"],
)
def test_values_the_parser_cannot_build_are_dataset_errors(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value).startswith(f"{path}: {problem}")


# --- where: rows and lines ------------------------------------------------------------------------


def test_jsonl_row_error_names_row_index_and_file_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(f"\n{json.dumps(row())}\n\n{json.dumps(row(id='b', malicious=...))}\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: row 1 (id='b'): field 'malicious': missing (row at line 4)"
    assert (info.value.row, info.value.field) == (1, "malicious")


def test_yaml_row_error_names_the_line_the_row_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    text = yaml.safe_dump({"prompt_sets": [row(), row(id="b", dual_use_paraphrases=PARAPHRASES[:2])]}, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("- id: b") + 1
    assert line > 2
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == (f"{path}: row 1 (id='b'): field 'dual_use_paraphrases': "
                               f"has 2 dual-use paraphrases, 4 required (row at line {line})")


# --- empty files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("s.json", "[]", "no prompt-sets in this file"),
        ("s.json", '{"prompt_sets": []}', "no prompt-sets in this file"),
        ("s.json", "", "no prompt-sets in this file (it is empty)"),
        ("s.json", " \n\t\n", "no prompt-sets in this file (it is empty)"),
        ("s.yaml", "", "no prompt-sets in this file (it is empty)"),
        ("s.yaml", "\n   \n", "no prompt-sets in this file (it is empty)"),
        ("s.yaml", "# prompt-sets to come\n", "no prompt-sets in this file (it is empty)"),
        ("s.yml", "prompt_sets: []\n", "no prompt-sets in this file"),
        ("s.jsonl", "", "no prompt-sets in this file (it is empty)"),
        ("s.jsonl", "\n  \n\n", "no prompt-sets in this file (it is empty)"),
    ],
)
def test_a_dataset_without_prompt_sets_is_an_error(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: {problem}"


@pytest.mark.parametrize("name, text, problem", [
    ("domains.json", "[]", "no harm domains in this file"),
    ("domains.json", "{}", "no harm domains in this file"),
    ("domains.yaml", "", "no harm domains in this file (it is empty)"),
    ("domains.json", " \n", "no harm domains in this file (it is empty)"),
    ("domains.jsonl", '"Cyber"\n', "a .jsonl file holds rows, not one document: use .yaml, .yml or .json"),
])
def test_an_empty_taxonomy_is_an_error(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_taxonomy(path)
    assert str(info.value) == f"{path}: {problem}"


@pytest.mark.parametrize("name, text", [("s.jsonl", "\n \n"), ("s.yaml", "# nothing yet\n"), ("s.json", "[]"),
                                        ("s.json", "")])
def test_read_rows_allow_empty_lets_a_caller_sniff_an_empty_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert formats.read_rows(path, name, "scenarios", allow_empty=True) == []
    with pytest.raises(DatasetError) as info:
        formats.read_rows(path, name, "scenarios")
    assert str(info.value).startswith(f"{name}: no scenarios in this file")


@pytest.mark.parametrize("name", ["d.json", "d.yaml"])
def test_read_document_of_an_empty_file_is_none(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("\n  \n", encoding="utf-8")
    assert formats.read_document(path, name) is None


# --- prompts that are not really there, or there twice --------------------------------------------


@pytest.mark.parametrize(
    "text, shown",
    [
        ("\u200b", "U+200B ZERO WIDTH SPACE"),
        ("\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("  \u2060 ", "U+2060 WORD JOINER"),  # the spaces are stripped first
        ("\u200b\u3000\u200d\u00ad", "U+00AD SOFT HYPHEN, U+200B ZERO WIDTH SPACE, U+200D ZERO WIDTH JOINER"),
        ("\u3164", "U+3164 HANGUL FILLER"),
    ],
    ids=["zero-width-space", "bom", "word-joiner", "mixed-format-and-space", "hangul-filler"],
)
def test_prompt_of_only_invisible_characters_is_empty(tmp_path: Path, text: str, shown: str) -> None:
    path = write(tmp_path / "s.json", [row(malicious=text)])
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert str(info.value) == f"{path}: row 0 (id='set-a'): field 'malicious': empty: only invisible characters ({shown})"


def test_invisible_paraphrase_in_flat_layout_names_the_dataset_key(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", [flat_row(id="f", prompt_dual_use_4="\u200b\u2060")])
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    assert (info.value.row, info.value.field) == (0, "prompt_dual_use_4")
    assert "empty: only invisible characters (U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER)" in str(info.value)


def test_visible_text_with_invisible_characters_is_kept(tmp_path: Path) -> None:
    (s,) = load_prompt_sets(write(tmp_path / "s.json", [row(benign="\ufeffbenign\u200b prompt")]))
    assert s.benign == "\ufeffbenign\u200b prompt"


@pytest.mark.parametrize(
    "name, content, field, problem",
    [
        pytest.param("s.yaml", [row(dual_use_paraphrases=["para one", "  DUAL-USE\n  prompt ", "para three", "para four"])],
                     "dual_use_paraphrases.1", "duplicates dual_use (the same text once whitespace and case are normalised): "
                     "'DUAL-USE\\n  prompt'", id="paraphrase-repeats-dual-use"),
        pytest.param("s.yaml", [row(dual_use_paraphrases=["para one", "para two", "Para\tOne", "para four"])],
                     "dual_use_paraphrases.2", "duplicates dual_use_paraphrases.0 (the same text once whitespace and case "
                     "are normalised): 'Para\\tOne'", id="paraphrases-repeat-each-other"),
        pytest.param("s.yaml", [row(dual_use_paraphrases=["para one", "para two", "para\u200b two", "para four"])],
                     "dual_use_paraphrases.2", "duplicates dual_use_paraphrases.1", id="differs-only-by-invisible-characters"),
        pytest.param("d.json", [flat_row(id="f", prompt_dual_use_4="PARA ONE")], "prompt_dual_use_4",
                     "duplicates prompt_dual_use_2 (the same text", id="flat-names-dataset-keys"),
        pytest.param("d.json", [nested_row(id="n", dual_use_paraphrases=["Dual-use prompt", "a", "b", "c"])],
                     "dual_use_paraphrases.0", "duplicates generated_prompts.dual_use_prompt (the same text",
                     id="nested-names-dataset-keys"),
    ],
)
def test_duplicate_paraphrases_are_refused(tmp_path: Path, name: str, content: Any, field: str, problem: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    err = info.value
    assert (err.path, err.row, err.field) == (str(path), 0, field)
    assert str(err).startswith(f"{path}: row 0 (id={err.row_id!r}): field {field!r}: {problem}")
    assert "each paraphrase must be a different wording" in str(err)


def test_long_paraphrases_that_differ_late_are_not_duplicates(tmp_path: Path) -> None:
    head = "Explain in detail, step by step and with examples, " * 3
    paraphrases = [head + "how routers log access.", head + "how ROUTERS log  access?", head + "c", head + "d"]
    (s,) = load_prompt_sets(write(tmp_path / "s.json", [row(dual_use_paraphrases=paraphrases)]))
    assert s.dual_use_paraphrases == tuple(paraphrases)
    twice = [head + "how routers log access.", "x", head.upper() + "how routers  log access.", "y"]
    with pytest.raises(DatasetError, match=re.escape("field 'dual_use_paraphrases.2': duplicates dual_use_paraphrases.0")):
        load_prompt_sets(write(tmp_path / "t.json", [row(dual_use_paraphrases=twice)]))


# --- unknown keys in the OpenSafeIntent layouts ---------------------------------------------------


@pytest.mark.parametrize(
    "content, row_id, field, layout",
    [
        pytest.param([flat_row(prompt_malicous="typo")], None, "prompt_malicous", "flat", id="flat-typo"),
        pytest.param([flat_row(id="f", benign="own-format key")], "f", "benign", "flat", id="flat-mixed-with-own-format"),
        pytest.param([nested_row(id="n", dual_use_paraphrase=["a"])], "n", "dual_use_paraphrase", "nested", id="nested-typo"),
        pytest.param([nested_row(generated_prompts={"benign_prompt": "b", "dual_use_prompt": "d", "malicious_prompt": "m",
                                                    "malicous_prompt": "x"})],
                     None, "generated_prompts.malicous_prompt", "nested", id="nested-prompt-typo"),
    ],
)
def test_unknown_key_in_opensafeintent_layout(tmp_path: Path, content: Any, row_id: str | None, field: str, layout: str) -> None:
    path = write(tmp_path / "d.json", content)
    with pytest.raises(DatasetError) as info:
        load_prompt_sets(path)
    err = info.value
    assert (err.row, err.row_id, err.field) == (0, row_id, field)
    where = f"row 0 (id={row_id!r})" if row_id else "row 0"
    assert str(err) == f"{path}: {where}: field {field!r}: unknown field in the OpenSafeIntent {layout} layout (check the spelling)"


def test_nested_layout_accepts_the_authors_pipeline_keys(tmp_path: Path) -> None:
    # The keys OpenSafeIntent's own generation and evaluation scripts write into a row.
    pipeline = nested_row(
        id="n",
        origin_metadata={"source_dataset": "x", "source_split": "train", "unsafe_prompt": ""},
        generation_metadata={"topic_summary": "t", "is_prompt_safe": "False", "harm_domain": "Cyber Compromise",
                             "task_type": "Explanation", "backfilled": False},
        verification_intent={"benign_prompt_decision": "benign"},
        verification_errors={},
        additional_checks={"decision": "keep", "failure_reason": ""},
        model_responses={"benign_prompt": "r", "dual_use_paraphrases": ["r"] * 4},
        response_scores_helpfulness={}, response_scores_harmfulness={}, response_score_failures=[],
    )
    pipeline["generated_prompts"].update(underlying_topic="t", benign_task="b", dual_use_task="d", malicious_task="m",
                                         self_check={"same_task_type": True}, failure_notes=[], repair_note="")
    (s,) = load_prompt_sets(write(tmp_path / "d.json", [pipeline]))
    assert (s.id, s.benign, s.dual_use_paraphrases) == ("n", "benign prompt", tuple(PARAPHRASES))


# --- user data in messages is bounded -------------------------------------------------------------


def test_messages_show_at_most_a_bounded_part_of_user_data(tmp_path: Path) -> None:
    huge = "x" * 1_000_000
    cases = [
        (write(tmp_path / "a.json", [row(harm_domain=huge)]), {"harm_domains": ["Cyber Compromise"]},
         "unknown harm domain " + repr("x" * 60) + "..."),
        (write(tmp_path / "b.json", [row(benign=[huge[:1000]] * 1000)]), {}, "Input should be a valid string (got ['xxxx"),
        (write(tmp_path / "c.json", [row(**{huge: "v"})]), {}, "field '" + "x" * 60 + "...': unknown field"),
        (write(tmp_path / "e.json", [flat_row(**{huge: "v"})]), {}, "field '" + "x" * 60 + "...': unknown field"),
        (write(tmp_path / "d.json", [row(id=huge), row(id=huge, benign="other")]), {}, "duplicate id " + repr("x" * 60) + "..."),
    ]
    for path, kwargs, shown in cases:
        with pytest.raises(DatasetError) as info:
            load_prompt_sets(path, **kwargs)
        assert shown in str(info.value)
        assert len(str(info.value)) < len(str(path)) + 400, str(info.value)[:500]


# --- real data, examples, taxonomy --------------------------------------------------------------


def test_published_opensafeintent_dataset_loads() -> None:
    if not SHARED_DATASET.is_file():
        pytest.skip(f"published dataset not present at {SHARED_DATASET}")
    sets = load_prompt_sets(SHARED_DATASET)
    assert len(sets) == 700
    assert sum(len(s.prompts()) for s in sets) == 4_900  # 700 x (3 intents + 4 paraphrases)
    assert len({s.id for s in sets}) == 700
    # Every row's keys are known (an unknown one would be an error), and annotations arrive.
    assert all(s.annotations.dual_use_misuse_risk for s in sets)


def test_published_dataset_in_nested_layout_and_as_jsonl_loads_with_the_same_ids(tmp_path: Path) -> None:
    if not SHARED_DATASET.is_file():
        pytest.skip(f"published dataset not present at {SHARED_DATASET}")
    rows = json.loads(SHARED_DATASET.read_text(encoding="utf-8"))
    nested = [
        {
            "harm_domain": r["harm_domain"], "task_type": r["task_type"], "underlying_task": r["underlying_task"],
            "generated_prompts": {"benign_prompt": r["prompt_benign"], "dual_use_prompt": r["prompt_dual_use"],
                                  "malicious_prompt": r["prompt_malicious"], "self_check": {}, "failure_notes": []},
            "dual_use_paraphrases": [r[f"prompt_dual_use_{i}"] for i in range(2, 6)],
            "generation_metadata": {"harm_domain": r["harm_domain"], "task_type": r["task_type"]},
        }
        for r in rows
    ]
    expected = [s.id for s in load_prompt_sets(SHARED_DATASET)]
    assert [s.id for s in load_prompt_sets(write(tmp_path / "nested.json", nested))] == expected
    assert [s.id for s in load_prompt_sets(write(tmp_path / "flat.jsonl", rows))] == expected


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
