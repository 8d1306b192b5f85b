"""Loading clarification-scenario files: YAML (a list, or a mapping with ``scenarios``), JSON
(same) or JSONL (one scenario per line), with the field names of
:class:`~pytest_osi.cases.scenarios.model.Scenario`.

Every problem is a :class:`DatasetError` naming the file, the scenario (row index and id) and
the field path -- for a flow's turn, ``flows[0].turns[1].move``, with the problem starting
"flow 'reveal' turn 2: " -- raised before any model is called.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_osi.cases.prompt_sets.loader import UniqueIds
from pytest_osi.cases.scenarios.model import Scenario, ScenarioRuleError, where
from pytest_osi.cases.scenarios.moves import MOVES
from pytest_osi.errors import DatasetError
from pytest_osi.cases.fields import describe_error, describe_other
from pytest_osi.formats import read_document, read_rows

LIST_KEY = "scenarios"
# A row with both of these is a scenario (a prompt-set row never has them).
_ROW_MARKERS = ("query", "checklist")


def is_scenario_document(data: Any) -> bool:
    """Whether parsed file content holds scenarios: a mapping with a ``scenarios`` key, or a
    list of rows (a YAML/JSON list, a JSONL file's lines) whose first mapping row has both
    ``query`` and ``checklist``."""
    if isinstance(data, Mapping):
        return LIST_KEY in data
    if isinstance(data, list):
        first = next((row for row in data if isinstance(row, Mapping)), None)
        return first is not None and all(key in first for key in _ROW_MARKERS)
    return False


def is_scenario_file(path: str | Path) -> bool:
    """:func:`is_scenario_document` of a file's content (a JSONL file: of its rows)."""
    file = Path(path)
    data = (read_rows(file, str(path), LIST_KEY, allow_empty=True) if file.suffix.lower() == ".jsonl"
            else read_document(file, str(path)))
    return is_scenario_document(data)


def load_scenarios(path: str | Path, *, harm_domains: Iterable[str] | None = None) -> list[Scenario]:
    """Read, validate and return every scenario in ``path``.

    ``harm_domains``, when given, is a strict taxonomy: a scenario outside it is an error.
    """
    file = Path(path)
    name = str(path)
    rows = read_rows(file, name, LIST_KEY)
    allowed = set(harm_domains) if harm_domains is not None else None
    scenarios: list[Scenario] = []
    ids = UniqueIds()
    for index, raw in enumerate(rows):
        scenario = parse_scenario(raw, name, index)
        if allowed is not None and scenario.harm_domain not in allowed:
            raise DatasetError(name, f"unknown harm domain {scenario.harm_domain!r}; the taxonomy allows: "
                                     f"{', '.join(sorted(allowed))}", row=index, row_id=scenario.id, field="harm_domain")
        ids.claim(scenario.id, name, index)
        scenarios.append(scenario)
    return scenarios


def stable_id(fields: Mapping[str, Any]) -> str:
    """A readable id that depends only on the scenario's query and benign intent, so it never
    changes between runs (nor when a flow or checklist item is added): a slug of the query plus
    a short content hash."""
    content = json.dumps([fields.get("query"), fields.get("benign_intent")], ensure_ascii=False, default=str)
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", str(fields.get("query") or "").lower()).strip("-")[:40].rstrip("-")
    return f"{slug or 'scenario'}-{digest}"


def parse_scenario(raw: Any, name: str, index: int) -> Scenario:
    """One row as a :class:`Scenario`, or a :class:`DatasetError` naming where it is wrong."""
    if not isinstance(raw, Mapping):
        raise DatasetError(name, f"expected a mapping of fields, got {type(raw).__name__}", row=index)
    fields = dict(raw)
    row_id = fields.get("id") if isinstance(fields.get("id"), str) else None
    if "id" not in fields:
        fields["id"] = row_id = stable_id(fields)
    try:
        return Scenario.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        rule = (error.get("ctx") or {}).get("error")
        if isinstance(rule, ScenarioRuleError):
            raise DatasetError(name, rule.problem, row=index, row_id=row_id, field=rule.field) from None
        loc = tuple(error["loc"])
        problem = _describe(error)
        context = _context(fields.get("flows"), loc)
        raise DatasetError(name, f"{context}: {problem}" if context else problem,
                           row=index, row_id=row_id, field=field_path(loc) or None) from None


def field_path(loc: Sequence[str | int]) -> str:
    """``("flows", 0, "turns", 1, "move")`` -> ``flows[0].turns[1].move``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _context(flows: Any, loc: Sequence[str | int]) -> str | None:
    """"flow 'reveal' turn 2" for an error inside a flow (its id read from the raw data)."""
    if len(loc) < 2 or loc[0] != "flows" or not isinstance(loc[1], int):
        return None
    flow_index = loc[1]
    raw_flow = flows[flow_index] if isinstance(flows, Sequence) and 0 <= flow_index < len(flows) else None
    flow_id = raw_flow.get("id") if isinstance(raw_flow, Mapping) else None
    turn_index = loc[3] if len(loc) >= 4 and loc[2] == "turns" and isinstance(loc[3], int) else None
    return where(flow_id if isinstance(flow_id, str) else None, flow_index, turn_index)


def _describe(error: Mapping[str, Any]) -> str:
    common = describe_error(error)
    if common is not None:
        return common
    kind = error["type"]
    if kind in ("tuple_type", "list_type"):
        return f"expected a list (got {error.get('input')!r:.60})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of fields (got {error.get('input')!r:.60})"
    if kind == "literal_error" and error["loc"] and error["loc"][-1] == "move":
        return f"unknown move {error.get('input')!r:.60}; moves are: {', '.join(MOVES)}"
    return describe_other(error)
