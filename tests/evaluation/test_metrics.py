"""Metrics on hand-made rankings and answers whose values are known by hand."""

import math

import pytest

from evaluation import metrics as m

HIT, MISS = True, False


def test_mrr_of_ranks_one_three_and_a_miss():
    rankings = [[HIT, MISS, MISS], [MISS, MISS, HIT], [MISS, MISS, MISS]]
    assert m.mean_reciprocal_rank(rankings, k=10) == pytest.approx((1 + 1 / 3 + 0) / 3)


def test_reciprocal_rank_ignores_hits_beyond_k():
    assert m.reciprocal_rank([MISS, MISS, HIT], k=2) == 0.0
    assert m.reciprocal_rank([MISS, MISS, HIT], k=3) == pytest.approx(1 / 3)


def test_recall_at_k_is_the_share_of_questions_with_a_hit_in_the_top_k():
    rankings = [[HIT, MISS], [MISS, MISS, MISS, MISS, HIT], [MISS] * 10, [MISS] * 6 + [HIT]]
    assert m.recall_at_k(rankings, 1) == 0.25
    assert m.recall_at_k(rankings, 5) == 0.5
    assert m.recall_at_k(rankings, 10) == 0.75


def test_ndcg_binary_relevance_by_hand():
    # Relevant at ranks 2 and 3, two relevant items exist: DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3).
    expected = (1 / math.log2(3) + 1 / 2) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k([MISS, HIT, HIT, MISS], k=10, n_relevant=2) == pytest.approx(expected)
    # A perfect ranking scores 1, nothing relevant scores 0.
    assert m.ndcg_at_k([HIT, HIT, MISS], k=10, n_relevant=2) == pytest.approx(1.0)
    assert m.ndcg_at_k([MISS, MISS], k=10, n_relevant=3) == 0.0


def test_ndcg_caps_the_ideal_at_k_and_falls_back_to_retrieved_hits():
    # 50 relevant passages exist but only k=2 slots: both hits at the top is perfect.
    assert m.ndcg_at_k([HIT, HIT], k=2, n_relevant=50) == pytest.approx(1.0)
    # Unknown corpus count: the one retrieved hit at rank 2 is compared with an ideal hit at rank 1.
    assert m.ndcg_at_k([MISS, HIT], k=10) == pytest.approx(1 / math.log2(3))


def test_percentile_matches_linear_interpolation():
    assert m.percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert m.percentile([5.0], 95) == 5.0
    assert m.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert m.percentile([], 50) == 0.0


def test_squad_normalisation_drops_case_punctuation_and_articles():
    assert m.normalize_answer("The  Montgomery, Alabama!") == "montgomery alabama"
    assert m.exact_match("the Montgomery.", "Montgomery") == 1.0
    assert m.exact_match("Montgomery, Alabama", "Montgomery") == 0.0


def test_token_f1_squad_examples():
    # prediction 3 tokens, gold 2 tokens, overlap 2: P = 2/3, R = 1, F1 = 0.8
    assert m.token_f1("George Orwell wrote", "George Orwell") == pytest.approx(0.8)
    assert m.token_f1("Eric Blair", "George Orwell") == 0.0
    assert m.token_f1("", "") == 1.0


def test_answer_contained_needs_whole_words():
    assert m.answer_contained("The capital of Alabama is Montgomery [1].", "Montgomery") == 1.0
    assert m.answer_contained("Algiers is the capital.", "Alg") == 0.0


def test_best_over_golds_takes_the_maximum():
    assert m.best_over_golds(m.exact_match, "Eric Blair", ["George Orwell", "Eric Blair"]) == 1.0
    assert m.best_over_golds(m.token_f1, "x", []) == 0.0


def test_proportion_interval_is_wilsons():
    # 20 wrong of 179, by Wilson's formula by hand: centre 0.1199, half-width 0.0464
    low, high = m.proportion_interval(20, 179)
    assert low == pytest.approx(0.0735, abs=5e-4) and high == pytest.approx(0.1663, abs=5e-4)
    assert m.proportion_interval(0, 61)[0] == 0.0 and m.proportion_interval(0, 0) is None


def test_all_hit_needs_every_hop_in_the_top_k():
    # hop 1 at rank 1, hop 2 at rank 6: the chain is found at 10 but not at 5
    both = [[HIT, MISS], [MISS] * 5 + [HIT]]
    assert m.all_hit_at_k(both, 5) == 0.0
    assert m.all_hit_at_k(both, 10) == 1.0
    # one hop never found: never a chain, however deep
    assert m.all_hit_at_k([[HIT], [MISS] * 10], 10) == 0.0
    # no hops is no chain, not a vacuous hit
    assert m.all_hit_at_k([], 10) == 0.0


def test_all_hit_recall_is_the_share_of_questions_with_every_hop_found():
    questions = [
        [[HIT], [MISS, HIT]],            # both by rank 2
        [[MISS] * 4 + [HIT], [HIT]],     # both by rank 5
        [[HIT], [MISS] * 7 + [HIT]],     # both only by rank 8
        [[HIT], [MISS] * 10],            # second hop missed
    ]
    assert m.all_hit_recall_at_k(questions, 1) == 0.0
    assert m.all_hit_recall_at_k(questions, 5) == 0.5
    assert m.all_hit_recall_at_k(questions, 10) == 0.75
