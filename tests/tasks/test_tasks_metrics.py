import pytest

from longpos.tasks.base import Sample
from longpos.tasks.metrics import (
    first_number,
    graph_number,
    graph_path,
    graph_topo,
    normalize_answer,
    normalized_em,
    parse_yes_no,
    postprocess,
    score_sample,
    string_match_all,
    string_match_part,
    token_accuracy,
    token_match_all,
)


def test_postprocess():
    assert postprocess("  a\tb\x00c \n") == "a\nb\nc"


def test_string_match_all_and_part():
    refs = ["1234567", "7654321", "Blue-Car"]
    assert string_match_all("The numbers are 1234567 and blue-car.", refs) == pytest.approx(2 / 3)
    assert string_match_all("nothing", refs) == 0.0
    assert string_match_all("1234567 7654321 BLUE-CAR", refs) == 1.0
    assert string_match_part("only 7654321", refs) == 1.0
    assert string_match_part("none of them", refs) == 0.0
    with pytest.raises(ValueError):
        string_match_all("x", [])


def test_first_number_and_graph_number():
    assert first_number(" 4242. Remember it.", ["4242"]) == 1.0
    assert first_number("The key is 12 and 4242", ["4242"]) == 0.0
    assert first_number("no digits", ["1"]) == 0.0
    assert graph_number(" 7.", ["7"]) == 1.0
    assert graph_number("The maximum flow from node 0 to node 5 is 7", ["7"]) == 1.0
    assert graph_number("The maximum flow from node 0 to node 7 is 5", ["7"]) == 0.0


def test_squad_normalisation():
    assert normalize_answer("The  Brave, Otter!") == "brave otter"
    assert normalized_em("It is the Brave Otter.", ["brave otter"]) == 1.0
    assert normalized_em("123", ["12"]) == 0.0  # whole words only
    assert normalized_em("", ["x"]) == 0.0


def test_yes_no():
    assert parse_yes_no(" Yes, there is.") is True
    assert parse_yes_no("No.") is False
    assert parse_yes_no("there is no cycle in this graph") is False
    assert parse_yes_no("There is a cycle: 1-2-3") is True
    assert parse_yes_no("maybe") is None


def _graph_sample(metric, **meta):
    return Sample(task="g", level="text", seed=0, target_length=10, prompt_ids=[], answers=["x"],
                  metric=metric, tokens_to_generate=1, meta=meta)  # fmt: skip


def test_graph_path_accepts_any_optimal_path():
    # square 0-1-3 and 0-2-3 both weight 2; 0-3 direct weight 5
    s = _graph_sample("graph_path", source=0, target=3, optimal_weight=2,
                      edges=[[0, 1, 1], [1, 3, 1], [0, 2, 1], [2, 3, 1], [0, 3, 5]])  # fmt: skip
    assert graph_path(" 0,1,3", s) == 1.0
    assert graph_path("The shortest path from node 0 to node 3 is 0,2,3.", s) == 1.0
    assert graph_path("0,3", s) == 0.0  # valid but not optimal
    assert graph_path("0,1,2,3", s) == 0.0  # 1-2 is not an edge
    assert score_sample(s, "0 -> 2 -> 3") == 1.0


def test_graph_topo():
    s = _graph_sample("graph_topo", num_nodes=4, edges=[[0, 1], [0, 2], [2, 3]])
    assert graph_topo("0,2,1,3", s) == 1.0
    assert graph_topo("0,2,3,1", s) == 1.0
    assert graph_topo("2,0,1,3", s) == 0.0
    assert graph_topo("0,1,2", s) == 0.0  # not all nodes


def test_token_metrics():
    assert token_match_all([5, 6, 7, 8], [[6, 7], [9]]) == 0.5
    assert token_match_all([], [[1]]) == 0.0
    assert token_accuracy([1, 2, 0], [[1, 2, 3]]) == pytest.approx(2 / 3)
    assert token_accuracy([1], [[1, 2]]) == 0.5
