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
import re
from collections.abc import Collection, Mapping
from typing import Any

import pytest

_PARAM = re.compile(r"\[(?P<param>[^\[\]]+)\]$")


def node_id_forms(set_ids: Collection[str]) -> dict[str, str]:
    """Each set id as it can appear in a node id -> the set id. pytest escapes non-ASCII ids
    ('café' -> 'caf\\xe9') unless told not to, so both spellings are accepted."""
    forms = {set_id: set_id for set_id in set_ids}
    forms.update({set_id.encode("unicode_escape").decode("ascii"): set_id for set_id in set_ids})
    return forms


def prompt_set_scope(nodeid: str, id_forms: Mapping[str, str]) -> str:
    match = _PARAM.search(nodeid)
    if match and match.group("param") in id_forms:
        return f"osi:{id_forms[match.group('param')]}"
    return nodeid


def fill_target(lookahead: int, total_items: int, nodes: int) -> int:
    """Items to keep queued per worker: the lookahead, but never more than half a fair share,
    so the first worker asked cannot take (nearly) everything of a small suite."""
    return max(1, min(lookahead, math.ceil(total_items / (2 * max(nodes, 1)))))


def make_scheduler(config: pytest.Config, log: Any, set_ids: Collection[str], lookahead: int = 48) -> Any:
    """A scheduler for ``-n`` runs with pytest-osi items, or None to leave xdist's choice alone
    (only the default ``load`` distribution is replaced; an explicit --dist mode is respected
    as long as it is not 'load')."""
    if config.getvalue("dist") != "load" or not set_ids:
        return None
    from xdist.scheduler import LoadScopeScheduling

    id_forms = node_id_forms(set_ids)

    class PromptSetScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return prompt_set_scope(nodeid, id_forms)

        def _reschedule(self, node: Any) -> None:
            super()._reschedule(node)  # also shuts the node down once the queue is empty
            target = fill_target(lookahead, len(self.collection or ()), len(self.nodes))
            while self.workqueue and not node.shutting_down and self._pending_of(self.assigned_work[node]) < target:
                self._assign_work_unit(node)

    return PromptSetScheduling(config, log)
