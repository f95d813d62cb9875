import pytest

from retrieval.fusion import RRF_K, boosted_fusion, interleave_groups, keep_within, reciprocal_rank_fusion


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


# -- boosted fusion: boosts reorder the base fusion's head, never add to it -----------------------------------

BASE = {"dense": ["a", "b", "c", "d"], "sparse": ["a", "c", "b", "e"]}


def test_no_boost_left_is_exactly_the_base_fusion():
    expected = reciprocal_rank_fusion(BASE)
    assert boosted_fusion(BASE, {"graph": [], "facts": []}, weights={"graph": 1.0}, depth=10) == expected
    assert boosted_fusion(BASE, {"graph": ["d", "b"]}, weights={"graph": 0.0}, depth=10) == expected
    assert boosted_fusion(BASE, {"graph": ["d", "b"]}, weights={"graph": 1.0}, depth=0) == expected


def test_a_boost_reorders_within_the_depth_and_brings_nothing_in():
    base_order = [item for item, _, _ in reciprocal_rank_fusion(BASE)]
    assert base_order[:3] == ["a", "b", "c"]  # b and c tie; first seen goes first
    fused = boosted_fusion(BASE, {"graph": ["zz", "e", "c"]}, weights={"graph": 0.5}, depth=3)
    order = [item for item, _, _ in fused]
    assert "zz" not in order  # no base ranker found it
    assert order[:3] == ["c", "a", "b"] and set(order) == set(base_order)
    sources = {item: src for item, _, src in fused}
    assert sources["c"] == ["dense", "sparse", "graph"] and sources["e"] == ["sparse"]  # e is below the depth
    scores = {item: score for item, score, _ in fused}
    assert scores["c"] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 2) + 0.5 / (RRF_K + 1))  # c is the boost's 1st kept


def test_a_negative_depth_is_refused():
    with pytest.raises(ValueError, match="depth"):
        boosted_fusion(BASE, {}, weights={}, depth=-1)


def test_with_groups_each_place_keeps_its_group_and_the_boost_picks_the_item():
    base = {"dense": ["a1", "b1", "a2", "c1", "b2"], "sparse": ["a1", "b1", "a2", "c1", "b2"]}
    article = lambda item: item[0]  # noqa: E731
    base_order = [item for item, _, _ in reciprocal_rank_fusion(base)]
    assert base_order == ["a1", "b1", "a2", "c1", "b2"]
    fused = boosted_fusion(base, {"graph": ["b2", "c1", "a2"]}, weights={"graph": 5.0}, depth=5, group=article)
    order = [item for item, _, _ in fused]
    assert [article(item) for item in order] == ["a", "b", "a", "c", "b"]  # the groups' places are the base's
    assert order == ["a2", "b2", "a1", "c1", "b1"]  # within them, boosted items first
    ungrouped = [item for item, _, _ in boosted_fusion(base, {"graph": ["b2", "c1", "a2"]}, weights={"graph": 5.0},
                                                       depth=5)]
    assert ungrouped[:3] == ["b2", "c1", "a2"]  # without groups the boost moves whole articles


def test_base_weights_weigh_the_base_fusion_too():
    base = {"dense": ["a", "b"], "sparse": ["b", "a"]}
    assert [i for i, _, _ in boosted_fusion(base, {}, weights={}, depth=5)] == ["a", "b"]  # a tie: first seen
    leaning = boosted_fusion(base, {"graph": []}, weights={"sparse": 2.0}, depth=5)
    assert [i for i, _, _ in leaning] == ["b", "a"]
    assert leaning[0][1] == pytest.approx(1 / (RRF_K + 2) + 2 / (RRF_K + 1))
    assert [i for i, _, _ in boosted_fusion(base, {}, weights={}, depth=5, k=1)] == ["a", "b"]


def test_a_boost_that_repeats_a_base_rankings_order_within_a_group_is_left_out_there():
    base = {"dense": ["a1", "b1", "a2", "b2"], "sparse": ["b1", "a1", "b2", "a2"]}
    article = lambda item: item[0]  # noqa: E731
    expected = reciprocal_rank_fusion(base)
    # every movable item of each article, in dense's order (or sparse's): it tells nothing, so the base order stays
    for boost in (["a1", "a2", "b1", "b2"], ["b1", "b2", "a1", "a2"], ["b1", "a1", "b2", "a2"]):
        assert boosted_fusion(base, {"graph": boost}, weights={"graph": 5.0}, depth=4, group=article) == expected
    # holding only some of an article's items says which it favours: that one moves up within its article's places
    fused = boosted_fusion(base, {"graph": ["a2", "b1", "b2"]}, weights={"graph": 5.0}, depth=4, group=article)
    assert [item for item, _, _ in fused] == ["a2", "b1", "a1", "b2"]
    assert dict((item, src) for item, _, src in fused)["a2"] == ["dense", "sparse", "graph"]
    assert dict((item, src) for item, _, src in fused)["b1"] == ["dense", "sparse"]  # left out for article b


def test_a_kept_item_keeps_its_place_and_nothing_passes_it():
    base = {"dense": ["a", "b", "c"], "sparse": ["a", "c", "b"]}
    boost = {"graph": ["c", "b", "a"]}
    moved = [item for item, _, _ in boosted_fusion(base, boost, weights={"graph": 5.0}, depth=3)]
    assert moved == ["c", "b", "a"]
    kept = boosted_fusion(base, boost, weights={"graph": 5.0}, depth=3, keep={"a"})
    assert [item for item, _, _ in kept] == ["a", "c", "b"]
    assert kept[0] == reciprocal_rank_fusion(base)[0]  # its score and sources are the base fusion's
    grouped = boosted_fusion({"dense": ["a1", "a2", "a3"], "sparse": ["a1", "a3", "a2"]}, {"facts": ["a3", "a1"]},
                             weights={"facts": 5.0}, depth=3, group=lambda item: item[0], keep={"a1"})
    assert [item for item, _, _ in grouped] == ["a1", "a3", "a2"]


def _entries(items):
    return [(item, 1.0, ["dense"]) for item in items]


def test_interleaving_brings_each_groups_best_items_to_the_head_in_their_fused_order():
    fused = _entries(["a1", "a2", "c1", "a3", "a4", "b1", "b2", "b3"])
    group = lambda item: item[0]  # noqa: E731
    head = [item for item, _, _ in interleave_groups(fused, ["a", "b"], quota=2, group=group)]
    assert head == ["a1", "a2", "b1", "b2", "c1", "a3", "a4", "b3"]
    assert interleave_groups(fused, ["a", "b"], quota=0, group=group) == fused
    assert interleave_groups(fused, ["a", "z"], quota=2, group=group) == fused  # "a" leads already; "z" has none
    with pytest.raises(ValueError, match="quota"):
        interleave_groups(fused, ["a"], quota=-1, group=group)


def test_keep_within_moves_an_item_up_to_the_last_of_its_groups_first_places():
    fused = _entries(["a1", "b1", "a2", "c1", "a3", "a0"])
    group = lambda item: item[0]  # noqa: E731
    order = [item for item, _, _ in keep_within(fused, ["a0"], quota=2, group=group)]
    assert order == ["a1", "b1", "a0", "a2", "c1", "a3"]  # a0 takes a2's place; a2 follows it
    assert keep_within(fused, ["a2", "b1", "zz"], quota=2, group=group) == fused  # within already, or absent
    assert [item for item, _, _ in keep_within(fused, ["a3"], quota=1, group=group)] == \
        ["a3", "a1", "b1", "a2", "c1", "a0"]
    assert keep_within(fused, ["a0"], quota=0, group=group) == fused
    with pytest.raises(ValueError, match="quota"):
        keep_within(fused, ["a0"], quota=-1, group=group)
