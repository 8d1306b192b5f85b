"""What every case kind shares: outcomes, usage accounting, the result protocol, checks, and
the registry each kind adds itself to.

A *case* is one unit of evaluation with its own calls and grades (a prompt-set; later a
clarification scenario). A *case kind* owns its data model and loader, its pipeline, its
result type, its checks and its metrics, and registers them here, in one place. Everything
generic (items, distribution, gates, the summary and the report) works from this registry
rather than from a hand-written list per kind.

Kept free of pydantic and litellm: the plugin imports it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Outcome = Literal["graded", "judge-error", "model-error", "simulator-error"]
OUTCOMES: tuple[Outcome, ...] = ("graded", "judge-error", "model-error", "simulator-error")

# A score value may be an int (harm 0-3), a list (a checklist's booleans) or a mapping, in
# the spirit of Inspect AI's Score; what a score means is up to the kind that produced it.
Scores = Mapping[str, Any]


@dataclass(frozen=True)
class Usage:
    """Calls, tokens and cost spent on one case (cost is None when the provider has no price),
    and how many of the calls the call store answered (with when those were recorded)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    replayed: int = 0
    recorded_from: str | None = None  # the oldest replayed answer's recording time (UTC ISO)
    recorded_to: str | None = None

    def __add__(self, other: Usage) -> Usage:
        cost = None if self.cost is None and other.cost is None else (self.cost or 0.0) + (other.cost or 0.0)
        return Usage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            cost,
            self.replayed + other.replayed,
            min(filter(None, (self.recorded_from, other.recorded_from)), default=None),
            max(filter(None, (self.recorded_to, other.recorded_to)), default=None),
        )

    @property
    def live(self) -> int:
        return self.calls - self.replayed

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost": self.cost, "replayed": self.replayed, "recorded_from": self.recorded_from,
                "recorded_to": self.recorded_to}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Usage:
        known = cls().to_dict()
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@runtime_checkable
class Case(Protocol):
    """One unit of evaluation: has a stable id unique within the run."""

    @property
    def id(self) -> str: ...


@runtime_checkable
class CaseResult(Protocol):
    """What a case's pipeline produces; plain JSON through ``to_dict`` (it crosses the xdist
    channel and lands in the report)."""

    @property
    def kind(self) -> str: ...

    @property
    def outcome(self) -> Outcome: ...

    @property
    def error(self) -> str | None: ...

    @property
    def usage(self) -> Usage: ...

    @property
    def case_id(self) -> str: ...

    @property
    def graded(self) -> bool: ...

    def strata(self) -> Mapping[str, str]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Check:
    """A pass/fail verdict per case, collected as a parametrized test function.

    ``function`` is an ordinary pytest test function taking the case argument and the
    result fixture (and any other fixture it names)."""

    name: str
    kind: str
    description: str
    function: Callable[..., None]
    # The case fields this check reads (for JUnit properties and, later, snapshots).
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseKind:
    """A kind of case and everything that belongs to it."""

    name: str  # "prompt_set": used in report keys and registries
    label: str  # "prompt-set": used in messages
    case_arg: str  # the parametrize argument name its items take
    case_type: Callable[[], type]  # lazily: the pydantic model class (import costs)
    result_from_dict: Callable[[dict[str, Any]], CaseResult]
    pipeline: Callable[[], Any]  # lazily: ``async def evaluate(ctx, case, order) -> result``
    # The result of a case whose evaluation could not even finish (scheduler died, loop
    # blocked): it is still counted, as an error, never dropped.
    error_result: Callable[[Any, Outcome, str], CaseResult]
    checks: tuple[Check, ...] = ()
    strata: tuple[str, ...] = ()  # result.strata() keys reported per stratum
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str) -> Check:
        return {c.name: c for c in self.checks}[name]


_KINDS: dict[str, CaseKind] = {}
_IN_USE: set[str] = set()


def register_kind(kind: CaseKind) -> CaseKind:
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"case kind {kind.name!r} is registered twice")
    clash = {c.name for c in kind.checks} & {c.name for k in _KINDS.values() if k is not kind for c in k.checks}
    if clash:
        raise ValueError(f"check name(s) {sorted(clash)} of kind {kind.name!r} are used by another kind")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> dict[str, CaseKind]:
    """Every registered case kind (importing the built-in kinds on first use)."""
    import pytest_osi.cases.kinds  # noqa: F401 - registers the built-in kinds

    return dict(_KINDS)


def all_checks() -> dict[str, Check]:
    return {check.name: check for kind in kinds().values() for check in kind.checks}


def result_from_dict(data: dict[str, Any]) -> CaseResult:
    """Rebuild any kind's result from its ``to_dict`` form."""
    return kinds()[data.get("kind", "prompt_set")].result_from_dict(data)


def kind_of(case: object) -> CaseKind:
    """The kind a case object belongs to (by its class's ``kind`` attribute)."""
    name = getattr(type(case), "kind", None)
    registered = kinds()
    if not isinstance(name, str) or name not in registered:
        raise TypeError(f"{type(case).__name__} is not a pytest-osi case")
    return registered[name]


def mark_in_use(kind: str) -> None:
    """Called when a case of ``kind`` is created (loaded from a file or built by a test
    module): until then, the plugin has no item of that kind to look for."""
    _IN_USE.add(kind)


def in_use() -> frozenset[str]:
    return frozenset(_IN_USE)
