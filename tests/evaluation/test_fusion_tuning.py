"""Choosing graph fusion settings: the bootstrap rule, and the grid search on hand-made rankings."""

import numpy as np
import pytest

from evaluation.fusion_tuning import (
    NO_BOOST,
    TuningCase,
    grid,
    helps_never_hurts,
    per_question,
    tune,
)
from evaluation.questions import EvalQuestion
from retrieval.pipeline import Rankings
from retrieval.tuning import GRAPH_FUSION, GraphFusion


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
    rankings = Rankings(dense=dense, sparse=list(dense), graph=graph)
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
