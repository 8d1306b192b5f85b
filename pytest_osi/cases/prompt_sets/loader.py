"""Loaders for every prompt-set layout pytest-osi reads.

* The published OpenSafeIntent ``dataset.json`` in both of its layouts: flat
  (``prompt_benign``, ``prompt_dual_use_2`` ...) and nested (``generated_prompts`` +
  ``dual_use_paraphrases``).
* The project's own format, for users writing prompt-sets: YAML (a list, or a mapping with
  ``prompt_sets``), JSON (same) or JSONL (one set per line), with the field names of
  :class:`~pytest_osi.cases.prompt_sets.model.PromptSet`.

Every problem is a :class:`DatasetError` naming the file, the row (index and id) and the field,
raised before any model is called.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_osi.cases.prompt_sets.model import PromptSet
from pytest_osi.cases.fields import describe_error, describe_other
from pytest_osi.errors import DatasetError
from pytest_osi.formats import brief, read_document, read_located_rows, shorten

REQUIRED_PARAPHRASES = 4

# Flat OpenSafeIntent layout: our field -> the dataset's field.
_FLAT_FIELDS = {
    "harm_domain": "harm_domain",
    "task_type": "task_type",
    "underlying_task": "underlying_task",
    "benign": "prompt_benign",
    "dual_use": "prompt_dual_use",
    "malicious": "prompt_malicious",
}
_FLAT_ANNOTATIONS = {
    "benign_plausible_benign_use": "benign_prompt_plausible_benign_use",
    "dual_use_plausible_benign_use": "dual_use_prompt_plausible_benign_use",
    "dual_use_misuse_risk": "dual_use_prompt_meaningful_misuse_risk",
    "malicious_misuse_risk": "malicious_prompt_meaningful_misuse_risk",
}
_FLAT_PARAPHRASE = re.compile(r"^prompt_dual_use_(\d+)$")
_FLAT_KEYS = frozenset({"id", *_FLAT_FIELDS.values(), *_FLAT_ANNOTATIONS.values()})
_NESTED_PROMPTS = {"benign": "benign_prompt", "dual_use": "dual_use_prompt", "malicious": "malicious_prompt"}
_NESTED_LABELS = ("id", "harm_domain", "task_type", "underlying_task")
# Nested layout: the keys the OpenSafeIntent authors' pipeline writes (dataset_generation/
# stage_1..6, intent_verification, evaluation/get_model_responses, metric_primitives). Carried
# nowhere, but known, so that only a misspelt key is an error.
_NESTED_KEYS = frozenset({
    *_NESTED_LABELS, "generated_prompts", "dual_use_paraphrases",
    "origin_metadata", "generation_metadata", "verification_intent", "verification_errors",
    "additional_checks", "model_responses",
    "response_scores_helpfulness", "response_scores_harmfulness", "response_score_failures",
})
_NESTED_PROMPT_KEYS = frozenset({
    *_NESTED_PROMPTS.values(),
    "underlying_topic", "benign_task", "dual_use_task", "malicious_task", "self_check", "failure_notes",
    "repair_note",
})
# Paraphrases are compared without the characters that show nothing inside a text ...
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
# ... and first by their first characters only (see _duplicate_paraphrase).
_HEAD = 48


def load_prompt_sets(
    path: str | Path,
    *,
    min_paraphrases: int = REQUIRED_PARAPHRASES,
    harm_domains: Iterable[str] | None = None,
) -> list[PromptSet]:
    """Read, validate and return every prompt-set in ``path``.

    ``harm_domains``, when given, is a strict taxonomy: a row outside it is an error.
    """
    file = Path(path)
    name = str(path)
    rows = read_located_rows(file, name, "prompt_sets")
    allowed = set(harm_domains) if harm_domains is not None else None
    sets: list[PromptSet] = []
    ids = UniqueIds()
    for index, (raw, line) in enumerate(rows):
        try:
            prompt_set = _parse_row(raw, name, index, line, min_paraphrases, allowed)
        except RecursionError:
            raise DatasetError(name, _at(line, "data nested too deeply (a prompt-set needs only a few levels)"),
                               row=index) from None
        except MemoryError:
            raise DatasetError(name, _at(line, "data too large to process in memory"), row=index) from None
        ids.claim(prompt_set.id, name, index, line=line)
        sets.append(prompt_set)
    return sets


class UniqueIds:
    """Ids seen so far, within one file or across every dataset of a run: a second use of an
    id is an error that names both places (ids key results, snapshots and xdist scopes)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, int]] = {}

    def claim(self, case_id: str, file: str, row: int, *, line: int | None = None) -> None:
        if case_id in self._seen:
            first_file, first_row = self._seen[case_id]
            where = f"row {first_row}" if first_file == file else f"{first_file} row {first_row}"
            raise DatasetError(file, _at(line, f"duplicate id {brief(case_id)}, already used by {where}: "
                                               f"ids must be unique"),
                               row=row, row_id=shorten(case_id), field="id")
        self._seen[case_id] = (file, row)


def load_taxonomy(path: str | Path) -> list[str]:
    """Harm-domain names from a taxonomy file: a JSON/YAML list, or a mapping keyed by name
    (the layout of OpenSafeIntent's ``harm_domain.json``)."""
    name = str(path)
    data = read_document(Path(path), name)
    if data is None:
        raise DatasetError(name, "no harm domains in this file (it is empty)")
    if isinstance(data, Mapping):
        names = [str(key) for key in data]
    elif isinstance(data, list) and all(isinstance(item, str) for item in data):
        names = list(data)
    else:
        raise DatasetError(name, "a taxonomy must be a list of names or a mapping keyed by name")
    if not names:
        raise DatasetError(name, "no harm domains in this file")
    return names


def stable_id(fields: Mapping[str, Any]) -> str:
    """A readable id that depends only on the row's prompts, so it never changes between runs:
    a slug of the underlying task (or benign prompt) plus a short content hash."""
    content = json.dumps(
        [fields.get("benign"), fields.get("dual_use"), fields.get("malicious"), list(fields.get("dual_use_paraphrases") or [])],
        ensure_ascii=False,
        default=str,  # a YAML date in a prompt must reach validation, which names the field
    )
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:8]
    basis = str(fields.get("underlying_task") or fields.get("benign") or "set")
    slug = re.sub(r"[^a-z0-9]+", "-", basis.lower()).strip("-")[:40].rstrip("-")
    return f"{slug or 'set'}-{digest}"


# --- one row --------------------------------------------------------------------------------


def _at(line: int | None, problem: str) -> str:
    # The line a row starts on (JSONL, YAML), since the row index alone does not find it in the
    # file (blank lines, multi-line rows). At the end, so messages keep their shape.
    return f"{problem} (row at line {line})" if line is not None else problem


class _Unknown(Exception):
    """A key the row's layout does not have."""

    def __init__(self, field: str, layout: str) -> None:
        super().__init__(field)
        self.field, self.layout = field, layout


def _parse_row(
    raw: Any, name: str, index: int, line: int | None, min_paraphrases: int, allowed: set[str] | None
) -> PromptSet:
    if not isinstance(raw, Mapping):
        raise DatasetError(name, _at(line, f"expected a mapping of fields, got {type(raw).__name__}"), row=index)
    try:
        fields, source_names = _normalise(raw)
    except _Unknown as exc:
        row_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        raise DatasetError(name, _at(line, f"unknown field in the {exc.layout} (check the spelling)"),
                           row=index, row_id=shorten(row_id) if row_id else None, field=shorten(exc.field)) from None
    row_id = fields.get("id") if isinstance(fields.get("id"), str) else None
    if "id" not in fields:
        fields["id"] = row_id = stable_id(fields)
    try:
        prompt_set = PromptSet.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        if field is not None and field in source_names:
            field = source_names[field]
        elif field is not None:
            top = str(error["loc"][0])
            field = source_names.get(top, top) + field[len(top):]
        raise DatasetError(name, _at(line, _describe(error)), row=index, row_id=shorten(row_id) if row_id else None,
                           field=shorten(field) if field else None) from None

    def reject(field: str, problem: str) -> DatasetError:
        return DatasetError(name, _at(line, problem), row=index, row_id=shorten(prompt_set.id),
                            field=source_names.get(field, field))

    count = len(prompt_set.dual_use_paraphrases)
    if count < min_paraphrases:
        raise reject("dual_use_paraphrases", f"has {count} dual-use paraphrases, {min_paraphrases} required")
    duplicate = _duplicate_paraphrase(prompt_set)
    if duplicate is not None:
        position, same_as = duplicate
        field = f"dual_use_paraphrases.{position}"
        raise reject(field, f"duplicates {source_names.get(same_as, same_as)} (the same text once whitespace and "
                            f"case are normalised): {brief(prompt_set.dual_use_paraphrases[position])}; "
                            f"each paraphrase must be a different wording")
    if allowed is not None and prompt_set.harm_domain not in allowed:
        raise reject("harm_domain", f"unknown harm domain {brief(prompt_set.harm_domain)}; "
                                    f"the taxonomy allows: {shorten(', '.join(sorted(allowed)), 300)}")
    return prompt_set


def _describe(error: Mapping[str, Any]) -> str:
    return describe_error(error) or describe_other(error)


def _comparable(prompt: str) -> str:
    return " ".join(_INVISIBLE.sub("", prompt).split()).casefold()


def _duplicate_paraphrase(prompt_set: PromptSet) -> tuple[int, str] | None:
    """(position, field it repeats) of the first paraphrase that repeats the dual-use prompt or
    an earlier paraphrase: it would count twice towards paraphrase stability."""
    texts = (prompt_set.dual_use, *prompt_set.dual_use_paraphrases)
    # Cheap first: the comparable form of a text's head is a prefix of the text's comparable
    # form, so two texts whose heads disagree are different; only the rest are compared whole.
    heads = [_comparable(text[:_HEAD]) for text in texts]
    whole: dict[int, str] = {}

    def comparable(i: int) -> str:
        if i not in whole:
            whole[i] = _comparable(texts[i])
        return whole[i]

    for later in range(1, len(texts)):
        for earlier in range(later):
            common = min(len(heads[earlier]), len(heads[later]))
            if heads[earlier][:common] == heads[later][:common] and comparable(earlier) == comparable(later):
                return later - 1, "dual_use" if earlier == 0 else f"dual_use_paraphrases.{earlier - 1}"
    return None


def _normalise(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Map any supported layout onto PromptSet's fields.

    Returns the fields and, for error messages, our field name -> the name the file used.
    """
    if "prompt_benign" in raw or "prompt_dual_use" in raw:
        return _from_flat(raw)
    if "generated_prompts" in raw:
        return _from_nested(raw)
    return dict(raw), {}


def _from_flat(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    numbered = []
    for key in raw:
        if key in _FLAT_KEYS:
            continue
        match = _FLAT_PARAPHRASE.match(str(key))
        if match is None:
            raise _Unknown(str(key), "OpenSafeIntent flat layout")
        numbered.append((int(match.group(1)), key))
    numbered.sort()
    fields = {ours: raw[theirs] for ours, theirs in _FLAT_FIELDS.items() if theirs in raw}
    fields["dual_use_paraphrases"] = [raw[key] for _, key in numbered]
    annotations = {ours: raw[theirs] for ours, theirs in _FLAT_ANNOTATIONS.items() if raw.get(theirs)}
    if annotations:
        fields["annotations"] = annotations
    if "id" in raw:
        fields["id"] = raw["id"]
    names = dict(_FLAT_FIELDS)
    names["dual_use_paraphrases"] = "prompt_dual_use_2..prompt_dual_use_5"
    # An error on one paraphrase or annotation names the dataset's own key for it.
    names.update({f"dual_use_paraphrases.{i}": key for i, (_, key) in enumerate(numbered)})
    names.update({f"annotations.{ours}": theirs for ours, theirs in _FLAT_ANNOTATIONS.items()})
    names["annotations"] = "annotations"
    return fields, names


def _from_nested(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    for key in raw:
        if key not in _NESTED_KEYS:
            raise _Unknown(str(key), "OpenSafeIntent nested layout")
    prompts = raw["generated_prompts"]
    if not isinstance(prompts, Mapping):
        # Validation then reports the missing prompts under generated_prompts.*.
        prompts = {}
    for key in prompts:
        if key not in _NESTED_PROMPT_KEYS:
            raise _Unknown(f"generated_prompts.{key}", "OpenSafeIntent nested layout")
    fields: dict[str, Any] = {ours: prompts[theirs] for ours, theirs in _NESTED_PROMPTS.items() if theirs in prompts}
    for key in _NESTED_LABELS:
        if key in raw:
            fields[key] = raw[key]
    fields["dual_use_paraphrases"] = raw.get("dual_use_paraphrases") or []
    names = {ours: f"generated_prompts.{theirs}" for ours, theirs in _NESTED_PROMPTS.items()}
    return fields, names
