"""Choosing hybrid and graph fusion settings: the bootstrap rule, and the grid searches on hand-made rankings."""

import numpy as np
import pytest

from evaluation.fusion_tuning import (
    NO_BOOST,
    TuningCase,
    compare,
    grid,
    helps_never_hurts,
    hybrid_grid,
    hybrid_tuning_markdown,
    per_question,
    tune,
    tune_hybrid,
)
from evaluation.questions import EvalQuestion
from retrieval.pipeline import Rankings
from retrieval.tuning import GRAPH_FUSION, HYBRID_FUSION, PLAIN_RRF, GraphFusion, HybridFusion


def test_the_rule_rewards_gains_without_losses():
    assert helps_never_hurts(np.zeros((20, 3))) == 0.0  # no change never helps
    gains = np.zeros((20, 3))
    gains[:5, 0] = 1.0
    assert helps_never_hurts(gains) == pytest.approx(1.0, abs=0.01)  # a resample without a gain is rare
    mixed = gains.copy()
    mixed[5:10, 1] = -1.0
    assert helps_never_hurts(mixed) < 0.1  # a loss on another metric in almost every resample


def _case(qid: str, gold: str, dense: list[str], graph: list[str]) -> TuningCase:
    question = EvalQuestion(id=qid, question=f"q {qid}?", answer="x", gold_titles=[gold.split(":")[0]],
                            gold_passage_ids=[gold])
    rankings = Rankings(dense=dense, sparse=[dense[1], dense[0], *dense[2:]], graph=graph)  # they disagree on the first
    return TuningCase(question, rankings, {pid: pid.split(":")[0] for pid in dense + graph}, None)


def test_tuning_picks_a_setting_that_helps_and_never_goes_below_hybrid():
    # Hybrid ranks the gold passage second; the graph ranking names only it, so a boost can lift it to first.
    cases = [_case(str(i), "A:1", ["A:0", "A:1", "B:0"], ["A:1"]) for i in range(8)]
    cases += [_case(f"s{i}", "A:0", ["A:0", "A:1", "B:0"], []) for i in range(8)]  # nothing linked: no boost
    settings = [GraphFusion(0.5, 0.0, 0.5, 10), GraphFusion(0.0, 0.5, 0.5, 10)]
    result = tune(cases, settings=settings, samples=200, progress=False)
    assert result["hybrid"]["evidence_mrr@10"] == pytest.approx(0.75)
    chosen = result["chosen"]
    assert chosen["fusion"]["graph_weight"] == 0.5 and chosen["metrics"]["evidence_mrr@10"] == pytest.approx(1.0)
    assert chosen["helps_never_hurts"] == pytest.approx(1.0)
    assert per_question(cases, NO_BOOST)[:, 5].tolist() == [0.0] * 8 + [1.0] * 8  # hybrid: gold second, then first


def test_the_grid_holds_the_chosen_setting_and_no_setting_without_a_boost():
    settings = grid()
    assert GRAPH_FUSION in settings
    assert all(s.graph_weight > 0 or s.facts_weight > 0 for s in settings)


# -- hybrid: settings against plain RRF --------------------------------------------------------------------------


def _lists(qid: str, gold: str, dense: list[str], sparse: list[str]) -> TuningCase:
    question = EvalQuestion(id=qid, question=f"q {qid}?", answer="x", gold_titles=[gold])
    return TuningCase(question, Rankings(dense=dense, sparse=sparse), {pid: pid for pid in dense + sparse}, None)


def test_hybrid_tuning_picks_the_setting_that_beats_plain_rrf_and_never_loses():
    # BM25 puts the gold first; dense puts it third behind two items both lists hold, so plain RRF ranks it third.
    cases = [_lists(str(i), "G", ["x", "y", "G"], ["G", "x", "y"]) for i in range(10)]
    lean, even = HybridFusion(sparse_weight=2.0), HybridFusion(sparse_weight=0.5)
    result = tune_hybrid(cases, settings=[even, lean], samples=200, progress=False)
    assert result["rrf"]["recall@1"] == 0.0 and result["rrf"]["mrr@10"] == pytest.approx(0.5)
    assert result["chosen"]["fusion"]["sparse_weight"] == 2.0 and result["chosen"]["metrics"]["recall@1"] == 1.0
    assert "evidence_recall@1" not in result["rrf"]  # no question names a gold passage: no evidence metric
    assert "chosen: {" in hybrid_tuning_markdown(result)
    held_out = compare([_lists("t", "G", ["x", "G"], ["G", "x"]), _lists("u", "x", ["x", "G"], ["x", "G"])], lean)
    assert held_out["at_least_base"] and held_out["metrics"]["mrr@10"] == 1.0


def test_hybrid_tuning_keeps_plain_rrf_when_every_setting_loses_somewhere():
    # RRF ties each pair and puts the dense item first; leaning on BM25 wins "a" and loses both "b"s, and
    # leaning on dense changes nothing (which is no reason to leave plain RRF).
    cases = [_lists("a", "G", ["x"], ["G"]), _lists("b1", "H", ["H"], ["z"]), _lists("b2", "H", ["H"], ["z"])]
    result = tune_hybrid(cases, settings=[HybridFusion(sparse_weight=2.0), HybridFusion(sparse_weight=0.5)],
                         samples=50, progress=False)
    assert [row["never_below_rrf"] for row in result["settings"]] == [False, True]
    assert result["chosen"] is None and "no setting" in hybrid_tuning_markdown(result)
    assert not compare(cases, HybridFusion(sparse_weight=2.0))["at_least_base"]
    with pytest.raises(ValueError, match="no scorable"):
        tune_hybrid([], progress=False)


def test_the_hybrid_grid_leaves_plain_rrf_out_and_the_service_setting_is_in_it_or_plain():
    settings = hybrid_grid()
    assert PLAIN_RRF not in settings and len(settings) == len(set(settings))
    assert HYBRID_FUSION == PLAIN_RRF or HYBRID_FUSION in settings
