"""Error types. Each names what went wrong precisely enough to fix it without a debugger."""

from __future__ import annotations


class OsiError(Exception):
    """Base class for every error pytest-osi raises on purpose."""


class DatasetError(OsiError, ValueError):
    """A prompt-set file cannot be used: names the file, the row (index and id) and the field."""

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        row: int | None = None,
        row_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.problem, self.row, self.row_id, self.field = path, problem, row, row_id, field
        where = [path]
        if row is not None:
            where.append(f"row {row}" + (f" (id={row_id!r})" if row_id else ""))
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(": ".join(where) + f": {problem}")


class ConfigError(OsiError, ValueError):
    """An option or ini value pytest-osi cannot use (reported as a pytest usage error)."""


class ModelCallError(OsiError):
    """A model or judge call failed for good (after retries, or with a non-retryable error)."""


class JudgeError(OsiError):
    """The judge's answer could not be parsed into a valid score, even after retries."""


class SimulatorError(OsiError):
    """The user simulator could not write a usable turn (empty, or giving the benign intent
    away before the flow reveals it, even after a corrective re-ask). Never blamed on the
    model under test: the conversation ends as a ``simulator-error``."""

    outcome = "simulator-error"
