"""Keeping each prompt-set on one xdist worker.

The checks of one prompt-set share the same model and judge calls. Under xdist's default
``--dist load`` they would be spread over workers and every worker would pay for the same calls.
This scheduler is xdist's LoadScope scheduling with the prompt-set as the scope: a set's items
go to one worker together, sets are spread across workers, other tests stay one per unit.

LoadScope hands a worker new work only when it has two or fewer items left. A worker can only
schedule model calls for sets it has been handed, so that would cap it at one or two sets in
flight; this scheduler keeps ``lookahead`` items queued per worker instead.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import pytest



def node_id_forms(set_ids: Collection[str] | Mapping[str, str]) -> dict[str, str]:
    """Each case id as it can appear in a node id -> the scope its items share (the id itself,
    unless a mapping says otherwise). pytest escapes non-ASCII ids ('café' -> 'caf\\xe9')
    unless told not to, so both spellings are accepted."""
    scopes = dict(set_ids) if isinstance(set_ids, Mapping) else {set_id: set_id for set_id in set_ids}
    forms = dict(scopes)
    forms.update({case_id.encode("unicode_escape").decode("ascii"): scope for case_id, scope in scopes.items()})
    return forms


def prompt_set_scope(nodeid: str, id_forms: Mapping[str, str]) -> str:
    param = _parameter_id(nodeid)
    if param is not None and param in id_forms:
        return f"osi:{id_forms[param]}"
    return nodeid


def _parameter_id(nodeid: str) -> str | None:
    """The parametrize id of ``path::function[id]``: everything between the first '[' after
    the path (function names have none) and the final ']' -- ids may hold brackets too."""
    _, sep, rest = nodeid.partition("::")
    start = rest.find("[")
    if not sep or start < 0 or not rest.endswith("]"):
        return None
    return rest[start + 1 : -1]


def fill_target(lookahead: int, total_items: int, nodes: int) -> int:
    """Items to keep queued per worker: the lookahead, but never more than half a fair share,
    so the first worker asked cannot take (nearly) everything of a small suite."""
    return max(1, min(lookahead, math.ceil(total_items / (2 * max(nodes, 1)))))


def make_scheduler(config: pytest.Config, log: Any, set_ids: Collection[str] | Mapping[str, str],
                   lookahead: int = 48) -> Any:
    """A scheduler for ``-n`` runs with pytest-osi items, or None to leave xdist's choice alone
    (only the default ``load`` distribution is replaced; an explicit --dist mode is respected
    as long as it is not 'load')."""
    if config.getvalue("dist") != "load" or not set_ids:
        return None
    from xdist.scheduler import LoadScopeScheduling

    id_forms = node_id_forms(set_ids)

    class PromptSetScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return prompt_set_scope(nodeid, id_forms)

        def _reschedule(self, node: Any) -> None:
            super()._reschedule(node)  # also shuts the node down once the queue is empty
            target = fill_target(lookahead, len(self.collection or ()), len(self.nodes))
            while self.workqueue and not node.shutting_down and self._pending_of(self.assigned_work[node]) < target:
                self._assign_work_unit(node)

    return PromptSetScheduling(config, log)


def upcoming_items(session: pytest.Session, current: pytest.Item) -> list[Any]:
    """On an xdist worker, ``current`` and the items already queued for this worker, so the
    worker can schedule their model calls ahead of time.

    xdist has no public API for a worker's queue; this is the one place that reads its private
    detail (``WorkerInteractor.torun``, a queue with a ``lock()`` context giving the pending
    item indices). ``tests/test_distribution.py`` fails loudly if xdist changes it; should it
    change anyway, workers fall back to one item at a time (slower, never wrong) and say so.
    """
    queue = _worker_queue(session.config)
    if queue is None:
        return [current]
    return [current] + [session.items[i] for i in pending_indices(queue) if i < len(session.items)]


def pending_indices(queue: Any) -> list[int]:
    """The item indices waiting in an xdist worker's queue (without taking them)."""
    with queue.lock() as pending:
        return [i for i in pending if isinstance(i, int) and not isinstance(i, bool)]


def _worker_queue(config: pytest.Config) -> Any:
    for plugin in config.pluginmanager.get_plugins():
        queue = getattr(plugin, "torun", None)
        if queue is not None and hasattr(queue, "lock"):
            return queue
    if not getattr(config, "_osi_warned_queue", False):
        config._osi_warned_queue = True  # type: ignore[attr-defined]
        config.issue_config_time_warning(pytest.PytestWarning(
            "pytest-osi: cannot see this xdist worker's queue (xdist changed); calls are scheduled "
            "one item at a time"), stacklevel=2)
    return None
