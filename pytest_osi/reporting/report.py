"""The JSON report (``--osi-report``): built from the same :class:`RunSummary` as the terminal
summary, item entries by each case kind, metrics from the registry. Redacted string by string.

The file at the report path is replaced, so it must be ours: :func:`prepare_report` (at
configure, before anything is called) refuses a path that is not a pytest-osi report or cannot
be written, and removes last run's report. The report is written atomically: an interrupted
write leaves the old file or the new one, never half a report.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_osi.errors import ConfigError
from pytest_osi.redaction import redactor

if TYPE_CHECKING:
    import pytest

    from pytest_osi.reporting.summary import RunSummary

GENERATOR = "pytest-osi"
REPORT_VERSION = 1

# Every report starts with the generator marker ({"generator": "pytest-osi", "version": ...),
# so a short prefix recognises one without reading a large file.
_MARKER = re.compile(r'\A\s*\{\s*"generator"\s*:\s*"pytest-osi"\s*(?:[,}]|\Z)')
_PREFIX_BYTES = 4096
# A file whose prefix is not the marker is parsed whole, up to this size (a report re-written with
# sorted keys, or one from before the marker, which carried version 1 and these keys).
_PARSE_LIMIT = 32 * 1024 * 1024
_LEGACY_KEYS = frozenset({"version", "metrics", "gates", "passed", "complete", "items"})


def report_dict(summary: RunSummary) -> dict[str, Any]:
    from pytest_osi.grading import rubric_versions, rubrics_for

    return {
        "generator": GENERATOR,  # first: how the next run recognises a file it may replace
        "version": REPORT_VERSION,
        "model": summary.model,
        "judge": summary.judge,
        "rubrics": rubric_versions(*rubrics_for(r.kind for r in summary.results)),
        "metrics": dict(summary.metrics),
        "gates": [v.to_dict() for v in summary.verdicts],
        "passed": summary.complete and not summary.failed_gates and not summary.drop_failures,
        "complete": summary.complete,
        "sets_configured": summary.configured_sets,
        "strata": summary.strata,
        "counts": summary.counts(),
        "usage": {**summary.usage.to_dict(), "live": summary.usage.live, "wall_time": round(summary.wall_time, 3)},
        "items": [_item(r) for r in summary.results if r.kind == "prompt_set"],
        **_scenario_entries(summary),
        **(summary.comparison or {}),
    }


def _scenario_entries(summary: RunSummary) -> dict[str, Any]:
    """Per scenario and flow: every turn's user text (and whether it was scripted, simulated
    or the query), response, items met and harm; plus the scenario tables."""
    conversations = [r for r in summary.results if r.kind == "scenario"]
    if not conversations:
        return {}
    from pytest_osi.reporting.summary import scenario_tables

    from pytest_osi.cases.scenarios.measures import measure

    def entry(result: Any) -> dict[str, Any]:
        data = result.to_dict()
        if result.graded:
            data["measures"] = measure(result)
        return data

    return {"conversations": [entry(r) for r in conversations], "scenarios": scenario_tables(conversations)}


def _item(result: Any) -> dict[str, Any]:
    from pytest_osi.cases.prompt_sets.metrics import paraphrase_stability

    item: dict[str, Any] = {
        "set_id": result.set_id, "harm_domain": result.harm_domain, "task_type": result.task_type,
        "outcome": result.outcome, "error": result.error,
        "variants": {
            name: {"prompt": v.prompt, "response": v.response, "harm": v.harm, "helpfulness": v.helpfulness,
                   "safety": int(v.safe), "utility": v.utility}
            for name, v in result.variants.items()
        },
    }
    if result.graded:
        item["paraphrase_stability"] = paraphrase_stability(result)
    return item


def report_text(summary: RunSummary) -> str:
    """The report as written: every string redacted before it is encoded (a secret holding a
    quote or a backslash would no longer match its mask once JSON-escaped)."""
    return json.dumps(_redacted(report_dict(summary), redactor()), indent=2, ensure_ascii=False) + "\n"


def _redacted(value: Any, mask: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(k) if isinstance(k, str) else k: _redacted(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v, mask) for v in value]
    return value


def write_report(path: Path, summary: RunSummary) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, report_text(summary))


def _write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside ``path``, then rename it over ``path`` (atomic on POSIX and
    Windows): a reader, or an interrupted run, sees the old file or the new one, never part."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 gives the permissions a plain write would (the umask applies).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_osi_report(path: Path) -> bool:
    """Whether the regular file at ``path`` is a report pytest-osi wrote (and may replace)."""
    with path.open("rb") as f:
        head = f.read(_PREFIX_BYTES)
        if _MARKER.match(head.decode("utf-8", errors="replace").lstrip("\ufeff")):
            return True
        if path.stat().st_size > _PARSE_LIMIT:
            return False
        f.seek(0)
        try:
            data = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False
    if not isinstance(data, dict):
        return False
    return data.get("generator") == GENERATOR or (data.get("version") == 1 and _LEGACY_KEYS <= data.keys())


def prepare_report(config: pytest.Config) -> None:
    """At configure, first of all: check that the report can be written where the options say
    (before anything is called, not after every call was paid for), and remove last run's
    report there, so that a run which writes none, or stops at a usage error, can't pass for it.

    A :class:`ConfigError` naming the path and the reason when the path is a directory, lies
    under a regular file, cannot be written, holds something other than a regular file, or holds
    a file that is not a pytest-osi report (that file is left alone: the report would replace
    it). The path is read on its own, so this works while other settings are still invalid."""
    from pytest_osi.options import report_path

    path, option = report_path(config)
    if path is None:
        return
    problem = _unusable(path)
    if problem:
        raise ConfigError(f"{option}={path}: {problem}")
    discard_stale_report(path)


def discard_stale_report(path: Path | None) -> None:
    """Remove last run's report, and only a report: any other file at ``path`` is left alone."""
    if path is not None and path.is_file() and is_osi_report(path):
        path.unlink(missing_ok=True)  # a symbolic link itself, not what it points to


def _unusable(path: Path) -> str | None:
    """Why no report can be written at ``path``, or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        mode = None  # a parent is a file: found below
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror or exc})"
    if mode is not None:
        if stat.S_ISDIR(mode):
            return "is a directory, not a file"
        if not stat.S_ISREG(mode):
            return "is not a regular file (the report replaces the file at its path)"
        try:
            ours = is_osi_report(path)
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc}) to check it is a pytest-osi report"
        if not ours:
            return ("exists and is not a pytest-osi report; the report would replace it, so it is left "
                    "alone: choose another path, or remove the file")
    # The nearest existing directory is where the report (and its parent directories) will be made.
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: mkdir would fail there
            return f"its directory {parent} is a broken symbolic link"
        parent = parent.parent
    if not parent.is_dir():
        return f"lies under {parent}, which is a file, not a directory"
    return _probe(parent)


def _probe(directory: Path) -> str | None:
    """Try to create (and remove) an entry in ``directory``: the only reliable writability test
    (os.access says yes to root on a read-only mount, in /proc, ...)."""
    try:
        probe = tempfile.mkdtemp(prefix=".osi-report-probe-", dir=directory)
    except OSError as exc:
        reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                   errno.EROFS: "read-only file system", errno.ENOENT: "no files can be created there"}
        reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
        return f"cannot write in {directory} ({reason})"
    shutil.rmtree(probe, ignore_errors=True)
    return None
