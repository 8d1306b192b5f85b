"""Data formats: reading YAML, JSON and JSONL files into plain Python data, for every case
kind's loader (and the taxonomy). Every problem is a :class:`DatasetError` naming the file
(and the line, where there is one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pytest_osi.errors import DatasetError




def read_rows(file: Path, name: str, list_key: str) -> list[Any]:
    """The rows of a dataset file: a JSONL file's lines, or a YAML/JSON list (or a mapping
    holding the list under ``list_key``)."""
    if file.suffix.lower() == ".jsonl":
        return _read_jsonl(file, name)
    data = read_document(file, name)
    if isinstance(data, Mapping) and list_key in data:
        data = data[list_key]
    if not isinstance(data, list):
        raise DatasetError(name, f"expected a list of {list_key.replace('_', '-')} (or a mapping with a {list_key!r} list)")
    return data


def read_document(file: Path, name: str) -> Any:
    """The parsed content of a YAML or JSON file."""
    text = _read_text(file, name)
    suffix = file.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(name, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise DatasetError(name, f"invalid YAML: {exc}") from None
    raise DatasetError(name, f"unsupported file type {suffix or '(none)'!r}: use .yaml, .yml, .json or .jsonl")


def _read_jsonl(file: Path, name: str) -> list[Any]:
    rows = []
    for lineno, line in enumerate(_read_text(file, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(name, f"invalid JSON on line {lineno}: {exc.msg}", row=len(rows)) from None
    return rows


def _read_text(file: Path, name: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(name, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(name, f"cannot read file: {exc}") from None
