"""Cases as pytest items.

Each configured dataset file is collected by :class:`DatasetFile` into one parametrized
``pytest.Function`` per check and case, with node ids like
``sets.yaml::triplet_safe[<set id>]``. Being ordinary parametrized tests, they take fixtures
(``snapshot`` included), and ``-k``, ``-n``, ``--lf`` and JUnit treat them like any other test.
The checks come from the case kinds' registry.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable
from typing import Any

import pytest

from pytest_osi.cases.base import Case, CaseKind, all_checks, kinds
from pytest_osi.run import run_state


class DatasetFile(pytest.Module):
    """A dataset file named by ``--osi-dataset`` / ``osi_datasets``, collected as if it were a
    test module whose check functions are parametrized over its cases.

    Instead of importing the file, ``_getobj`` builds that module in memory; everything after
    (parametrization, fixtures, ids, marks) is pytest's own machinery, so the items are
    indistinguishable from hand-written parametrized tests.
    """

    def _getobj(self) -> types.ModuleType:
        state = run_state(self.config)
        assert state is not None
        cases = state.cases[self.path]
        module = types.ModuleType(f"pytest_osi_suite.{re.sub(r'[^0-9a-zA-Z_]', '_', self.path.stem)}")
        module.__file__ = str(self.path)
        module.pytestmark = [pytest.mark.osi]  # type: ignore[attr-defined]
        selected = set(state.settings.checks)
        for kind in kinds().values():
            of_kind = [c for c in cases if getattr(type(c), "kind", None) == kind.name]
            if not of_kind:
                continue
            params = pytest.mark.parametrize(kind.case_arg, [pytest.param(c, id=c.id) for c in of_kind])
            for check in kind.checks:
                if check.name in selected:
                    setattr(module, check.name, params(_copy(check.function)))
        return module

    def istestfunction(self, obj: object, name: str) -> bool:
        check = all_checks().get(name)
        return check is not None and getattr(obj, "__wrapped_check__", None) is check.function

    def istestclass(self, obj: object, name: str) -> bool:
        return False


def _copy(function: Any) -> Any:
    """A fresh function object per module, so a parametrize mark on one dataset's check never
    lands on another's (marks are stored on the function)."""
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__doc__, copy.__module__, copy.__qualname__ = function.__doc__, function.__module__, function.__qualname__
    copy.__wrapped_check__ = function  # type: ignore[attr-defined]
    copy.__annotations__ = dict(function.__annotations__)
    return copy


def add_keywords(item: pytest.Item) -> None:
    """Let ``-k cyber_harm`` or ``-k troubleshooting`` select by a case's strata labels."""
    if not isinstance(item.parent, DatasetFile):
        return
    case = case_of(item)
    if case is not None:
        for attribute in ("harm_domain", "task_type"):
            label = getattr(case, attribute, None)
            if isinstance(label, str):
                item.extra_keyword_matches.add(_keyword(label))


def _keyword(label: str) -> str:
    """'Cyber Harm' -> 'cyber_harm', so ``-k cyber_harm`` selects a harm domain."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _case_kind(value: object) -> CaseKind | None:
    kind = kinds().get(getattr(type(value), "kind", None) or "")
    return kind if kind is not None and isinstance(value, kind.case_type()) else None


def case_of(item: Any) -> Case | None:
    """The case an item tests: the case object among its parameters (ours or a user's)."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for value in callspec.params.values():
            if _case_kind(value) is not None:
                return value
    return None


def cases_of(items: Iterable[Any]) -> list[Case]:
    """Distinct cases of ``items``, in item order."""
    seen: dict[tuple[str, str], Case] = {}
    for item in items:
        case = case_of(item)
        if case is not None:
            seen.setdefault((type(case).kind, case.id), case)  # type: ignore[attr-defined]
    return list(seen.values())
