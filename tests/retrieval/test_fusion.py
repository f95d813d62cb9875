from retrieval.fusion import RRF_K, reciprocal_rank_fusion


def test_item_found_by_both_rankers_beats_a_single_top_hit():
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "sparse": ["d", "b", "a"]})
    order = [item for item, _, _ in fused]
    assert order[:2] == ["b", "a"] or order[:2] == ["a", "b"]
    assert order.index("b") < order.index("d")
    scores = {item: score for item, score, _ in fused}
    assert abs(scores["b"] - (2 / (RRF_K + 2))) < 1e-12
    assert abs(scores["d"] - 1 / (RRF_K + 1)) < 1e-12


def test_sources_and_weights():
    fused = reciprocal_rank_fusion({"dense": ["a"], "graph": ["b"]}, weights={"graph": 2.0})
    assert [item for item, _, _ in fused] == ["b", "a"]
    assert dict((item, src) for item, _, src in fused) == {"a": ["dense"], "b": ["graph"]}


def test_duplicates_in_one_ranking_count_once_and_empty_is_empty():
    fused = reciprocal_rank_fusion({"dense": ["a", "a", "b"]})
    assert [(i, s) for i, s, _ in fused] == [("a", 1 / (RRF_K + 1)), ("b", 1 / (RRF_K + 3))]
    assert reciprocal_rank_fusion({"dense": [], "sparse": []}) == []
