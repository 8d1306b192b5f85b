"""Data formats: reading YAML, JSON and JSONL files into plain Python data, for every case
kind's loader (and the taxonomy). Every problem is a :class:`DatasetError` naming the file
(and the line, where there is one).

Reading is defensive, because a dataset path comes from the user's command line or ini file:

* only regular files with a supported extension are opened (a FIFO would block forever, a
  device such as ``/dev/zero`` would fill memory), and at most :data:`MAX_BYTES` are read, even
  from a file that grows while it is read;
* YAML anchors and aliases are refused (a few hundred bytes of nested aliases expand to
  gigabytes: the "billion laughs"), and so are duplicate mapping keys, in YAML and JSON (the
  second value would silently win);
* data nested too deeply for the parser, or too large for memory, is an error, not a crash.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import yaml

from pytest_osi.errors import DatasetError

SUFFIXES = (".yaml", ".yml", ".json", ".jsonl")
#: The largest dataset file read. The published OpenSafeIntent dataset is 2.6 MB.
MAX_BYTES = 256 * 1024 * 1024
#: How much of a user's value an error message shows.
SHOWN_CHARS = 60

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must never wait for a writer
_CHUNK = 1 << 20


class Row(NamedTuple):
    """One row of a dataset file, and the 1-based line it starts on (None for JSON, which does
    not tell)."""

    data: Any
    line: int | None


def read_rows(
    file: Path, name: str, list_key: str, *, max_bytes: int | None = None, allow_empty: bool = False,
) -> list[Any]:
    """The rows of a dataset file: a JSONL file's lines, or a YAML/JSON list (or a mapping
    holding the list under ``list_key``).

    A file without rows is an error ("no <list-key> in this file"): a run over it would look
    green having tested nothing. ``allow_empty`` returns ``[]`` instead (to sniff a file's kind).
    """
    rows = read_located_rows(file, name, list_key, max_bytes=max_bytes, allow_empty=allow_empty)
    return [row.data for row in rows]


def read_located_rows(
    file: Path, name: str, list_key: str, *, max_bytes: int | None = None, allow_empty: bool = False,
) -> list[Row]:
    """:func:`read_rows`, each row with the line it starts on, for error messages."""
    suffix = _supported_suffix(file, name)
    what = list_key.replace("_", "-")
    text = _read_text(file, name, max_bytes)
    if not text or text.isspace():
        if allow_empty:
            return []
        raise DatasetError(name, f"no {what} in this file (it is empty)")
    if suffix == ".jsonl":
        rows = _jsonl_rows(text, name)
    else:
        data, lines = _parse_document(text, suffix, name, list_key)
        if data is None:
            if allow_empty:
                return []
            raise DatasetError(name, f"no {what} in this file (it is empty)")
        if isinstance(data, Mapping) and list_key in data:
            data = data[list_key]
        if not isinstance(data, list):
            raise DatasetError(name, f"expected a list of {what} (or a mapping with a {list_key!r} list)")
        if lines is None or len(lines) != len(data):
            rows = [Row(item, None) for item in data]
        else:
            rows = [Row(item, line) for item, line in zip(data, lines)]
    if not rows and not allow_empty:
        raise DatasetError(name, f"no {what} in this file")
    return rows


def read_document(file: Path, name: str, *, max_bytes: int | None = None) -> Any:
    """The parsed content of a YAML or JSON file; ``None`` for an empty file (no content,
    only whitespace, only YAML comments), JSON as well as YAML."""
    suffix = _supported_suffix(file, name)
    if suffix == ".jsonl":
        raise DatasetError(name, "a .jsonl file holds rows, not one document: use .yaml, .yml or .json")
    text = _read_text(file, name, max_bytes)
    if not text or text.isspace():
        return None
    data, _ = _parse_document(text, suffix, name, None)
    return data


def brief(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A repr of user data short enough for an error message, whatever the data's size.

    (Builds at most ``limit`` characters of a string's repr, and a container's repr to a bounded
    depth and width, so the cost is bounded too.)
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """A user-supplied name (a key, an id) shortened for an error message."""
    return text if len(text) <= limit else text[:limit] + "..."


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_CHARS


# --- reading the bytes ----------------------------------------------------------------------------


def _supported_suffix(file: Path, name: str) -> str:
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(name, f"unsupported file type {suffix or '(none)'!r}: use .yaml, .yml, .json or .jsonl")
    return suffix


def _read_text(file: Path, name: str, max_bytes: int | None) -> str:
    limit = MAX_BYTES if max_bytes is None else max_bytes
    try:
        info = os.stat(file)  # follows symlinks: what matters is what would be read
    except FileNotFoundError:
        raise DatasetError(name, "file not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(name, f"cannot read file: {exc}") from None
    # Checked before opening: opening a FIFO blocks until a writer comes, reading a device
    # may never end.
    _require_regular(info, file, name)
    if info.st_size > limit:
        _too_large(name, limit, info.st_size)
    try:
        fd = os.open(file, os.O_RDONLY | _NONBLOCK)
        try:
            _require_regular(os.fstat(fd), file, name)  # the path may have been replaced since
            data = _read_bounded(fd, info.st_size, limit)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise DatasetError(name, "file not found") from None
    except OSError as exc:
        raise DatasetError(name, f"cannot read file: {exc}") from None
    if len(data) > limit:
        _too_large(name, limit, None)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(name, f"line {line}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _read_bounded(fd: int, expected: int, limit: int) -> bytes:
    """At most ``limit + 1`` bytes: the expected size in one read, then more only if the file
    turns out longer than it said (it grew, or it is a /proc-like file that reports size 0)."""
    parts: list[bytes] = []
    total, step = 0, min(expected, limit) + 1
    while total <= limit:
        chunk = os.read(fd, min(step, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        step = _CHUNK
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _require_regular(info: os.stat_result, file: Path, name: str) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    mode = info.st_mode
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    via = f", via a link to {os.path.realpath(file)}" if os.path.islink(file) else ""
    raise DatasetError(name, f"not a regular file ({kind}{via}): a dataset must be a regular "
                             f".yaml, .yml, .json or .jsonl file")


def _too_large(name: str, limit: int, size: int | None) -> NoReturn:
    actual = f" ({size} bytes)" if size is not None else ""
    raise DatasetError(name, f"file too large{actual}: the limit for a dataset file is {_bytes(limit)}")


def _bytes(count: int) -> str:
    return f"{count // (1024 * 1024)} MiB" if count >= 1024 * 1024 and count % (1024 * 1024) == 0 else f"{count} bytes"


# --- parsing --------------------------------------------------------------------------------------


class _Refused(Exception):
    """A construct a dataset may not use, at a 1-based line (None when unknown)."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, line


def _at(line: int | None, problem: str) -> str:
    return f"line {line}: {problem}" if line is not None else problem


def _parse_document(text: str, suffix: str, name: str, list_key: str | None) -> tuple[Any, list[int] | None]:
    """The parsed document and, for YAML, the line of each row of the list of rows."""
    try:
        if suffix == ".json":
            return _decode_json(text), None
        return _load_yaml(text, list_key)
    except json.JSONDecodeError as exc:
        raise DatasetError(name, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.MarkedYAMLError as exc:
        raise DatasetError(name, _yaml_problem(exc)) from None
    except yaml.YAMLError as exc:
        raise DatasetError(name, f"invalid YAML: {shorten(str(exc), 300)}") from None
    except _PARSE_FAILURES as exc:
        _reraise_as_dataset_error(exc, name, None, "YAML" if suffix != ".json" else "JSON")


def _jsonl_rows(text: str, name: str) -> list[Row]:
    rows: list[Row] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line or line.isspace():
            continue
        try:
            rows.append(Row(_decode_json(line), lineno))
        except json.JSONDecodeError as exc:
            raise DatasetError(name, f"line {lineno}: invalid JSON at column {exc.colno}: {exc.msg}", row=len(rows)) from None
        except _PARSE_FAILURES as exc:
            _reraise_as_dataset_error(exc, name, lineno, "JSON", row=len(rows))
    return rows


# What a parser raises besides its own syntax errors. (ValueError: e.g. an integer of 5000
# digits, or the YAML date 2024-13-45.)
_PARSE_FAILURES = (_Refused, RecursionError, MemoryError, ValueError)


def _reraise_as_dataset_error(exc: Exception, name: str, line: int | None, kind: str, *, row: int | None = None) -> NoReturn:
    """The parsers' other failures, as errors naming the file."""
    if isinstance(exc, _Refused):
        raise DatasetError(name, _at(exc.line if exc.line is not None else line, exc.problem), row=row) from None
    if isinstance(exc, RecursionError):
        raise DatasetError(name, _at(line, "data nested too deeply to read (a dataset needs only a few levels)"),
                           row=row) from None
    if isinstance(exc, MemoryError):
        raise DatasetError(name, _at(line, "data too large to read into memory"), row=row) from None
    raise DatasetError(name, _at(line, f"invalid {kind}: {shorten(str(exc), 200)}"), row=row) from None


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    detail = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"invalid YAML{where}: {shorten(detail, 200)}"


# JSON --------------------------------------------------------------------------------------------


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {brief(key)} in one object: keys must be unique "
                               f"(otherwise the last value would silently win)", None)
            seen.add(key)
    return obj


_JSON = json.JSONDecoder(object_pairs_hook=_unique_pairs)


def _decode_json(text: str) -> Any:
    return _JSON.decode(text)


# YAML --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe subset, minus what a dataset never needs and an attacker would use:
    anchors/aliases (exponential expansion) and duplicate keys (silent overwrites)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            what = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            raise _Refused(f"YAML {what}{shorten(str(anchor))} refused: a dataset has no need for anchors "
                           f"or aliases (&name / *name), and nested aliases can expand to gigabytes; "
                           f"write each value out in full", line)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                earlier = first_line.get(key)
            except TypeError:  # unhashable: the base class reports it
                continue
            line = key_node.start_mark.line + 1
            if earlier is not None:
                raise _Refused(f"duplicate key {brief(key)} (first on line {earlier}): keys must be "
                               f"unique (otherwise the last value would silently win)", line)
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, list_key: str | None) -> tuple[Any, list[int] | None]:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    return data, _row_lines(node, list_key)


def _row_lines(node: yaml.Node, list_key: str | None) -> list[int] | None:
    rows: Any = node
    if isinstance(node, yaml.MappingNode) and list_key is not None:
        rows = next((value for key, value in node.value
                     if isinstance(key, yaml.ScalarNode) and key.value == list_key), None)
    if not isinstance(rows, yaml.SequenceNode):
        return None
    return [item.start_mark.line + 1 for item in rows.value]
