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
