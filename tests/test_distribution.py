"""The xdist scheduler that keeps a prompt-set's items on one worker."""

from __future__ import annotations

from pytest_osi.distribution import fill_target, node_id_forms, prompt_set_scope


def test_items_of_one_prompt_set_share_a_scope() -> None:
    forms = node_id_forms({"lock", "wifi"})
    assert prompt_set_scope("sets.yaml::triplet_safe[lock]", forms) == "osi:lock"
    assert prompt_set_scope("sets.yaml::benign_helpful[lock]", forms) == "osi:lock"
    assert prompt_set_scope("sets.yaml::triplet_safe[wifi]", forms) == "osi:wifi"


def test_other_tests_stay_one_per_scope() -> None:
    forms = node_id_forms({"lock"})
    assert prompt_set_scope("test_x.py::test_a[1]", forms) == "test_x.py::test_a[1]"
    assert prompt_set_scope("test_x.py::test_b", forms) == "test_x.py::test_b"


def test_escaped_non_ascii_ids_map_to_their_set() -> None:
    # pytest writes 'café' as 'caf\xe9' in node ids.
    forms = node_id_forms({"café-1"})
    assert prompt_set_scope("sets.yaml::triplet_safe[caf\\xe9-1]", forms) == "osi:café-1"
    assert prompt_set_scope("sets.yaml::triplet_safe[café-1]", forms) == "osi:café-1"


def test_fill_target_is_capped_by_half_a_fair_share() -> None:
    assert fill_target(48, 2100, 2) == 48  # big suite: the lookahead
    assert fill_target(48, 27, 2) == 7  # 9 sets x 3 checks over 2 workers: ceil(27 / 4)
    assert fill_target(48, 1, 4) == 1


def test_ids_with_brackets_keep_their_set_together() -> None:
    forms = node_id_forms({"a[1]", "b]x[", "lock"})
    assert prompt_set_scope("sets.yaml::triplet_safe[a[1]]", forms) == "osi:a[1]"
    assert prompt_set_scope("sets.yaml::benign_helpful[a[1]]", forms) == "osi:a[1]"
    assert prompt_set_scope("dir[x]/sets.yaml::triplet_safe[b]x[]", forms) == "osi:b]x["
    assert prompt_set_scope("sets.yaml::triplet_safe[lock]", forms) == "osi:lock"


def test_xdist_worker_queue_detail_we_rely_on_still_exists() -> None:
    """upcoming_items reads xdist's private WorkerInteractor.torun: a TestQueue whose lock()
    gives the pending item indices. If xdist changes that, this fails (and workers fall back
    to one item at a time with a warning)."""
    import inspect

    import execnet
    import xdist.remote as remote

    from pytest_osi.distribution import pending_indices

    assert "self.torun = TestQueue(" in inspect.getsource(remote.WorkerInteractor)
    queue = remote.TestQueue(execnet.gateway_base.get_execmodel("thread"))
    for index in (3, 4):
        queue.put(index)
    queue.put(remote.Marker.SHUTDOWN)
    assert pending_indices(queue) == [3, 4]
    assert queue.get() == 3  # looking did not take anything off the queue
