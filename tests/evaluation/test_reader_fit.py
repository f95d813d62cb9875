"""How the reader's fit answers dev questions at a threshold, and which choice it keeps."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from evaluation.qa_eval import trust
from evaluation.questions import EvalQuestion
from evaluation.reader_fit import (
    ReadQuestion,
    _key,
    draft_states_gold,
    fit_markdown,
    _rows,
    fit_listwise,
    held_out_halves,
    listwise_loss,
    meets_targets,
    trade_off,
)
from qa.reader import listwise_probabilities

CAPITAL = EvalQuestion(id="q1", question="What is the capital of Alabama?", answer="Montgomery")
BORN = EvalQuestion(id="q2", question="When was Einstein born?", answer="1879")
MOON = EvalQuestion(id="q3", question="Who painted the Moon?", unanswerable=True, kind="absent-entity")


def item(question, lead="", group=None):
    return ReadQuestion(question, None, [], lead, group or question.id)


def test_a_fact_that_answers_is_the_whole_answer_and_a_sentence_shows_only_at_the_threshold():
    items = [item(CAPITAL, lead="The capital of Alabama is Montgomery."), item(BORN), item(MOON)]
    best = [(0.99, "Birmingham is its largest city."), (0.6, "Einstein was born on 14 March 1879."),
            (0.4, "The Moon was painted by nobody.")]
    rows = _rows(items, best, threshold=0.5)
    assert [r["answer"] for r in rows] == ["The capital of Alabama is Montgomery.",
                                          "Einstein was born on 14 March 1879.", ""]
    assert [r["abstained"] for r in rows] == [False, False, True]
    assert [r["contained"] for r in rows] == [1.0, 1.0, 0.0]
    stricter = _rows(items, best, threshold=0.7)
    assert [r["abstained"] for r in stricter] == [False, True, True]


def test_choices_meeting_the_trust_targets_come_first_and_then_the_most_accurate():
    safe = {"accuracy": 0.40, "wrong_cited": 0.02, "abstention_unanswerable": 0.98}
    safer = {"accuracy": 0.30, "wrong_cited": 0.00, "abstention_unanswerable": 1.00}
    reckless = {"accuracy": 0.80, "wrong_cited": 0.15, "abstention_unanswerable": 0.70}
    assert sorted([reckless, safer, safe], key=_key, reverse=True) == [safe, safer, reckless]
    figures = trust(_rows([item(BORN), item(MOON)], [(0.9, "He was born in 1879."), (0.1, "")], 0.5))
    assert figures["accuracy"] == 1.0 and figures["abstention_unanswerable"] == 1.0


def test_conformal_risk_control_asks_more_of_dev_than_its_own_rates():
    edge = {"accuracy": 0.5, "answerable": 247, "unanswerable": 83,
            "wrong_cited": 7 / 247, "abstention_unanswerable": 81 / 83}
    assert meets_targets(edge) and meets_targets(edge, "empirical")
    # (7 + 1) / 248 wrong and (2 + 1) / 84 answered unanswerable are both above 3%
    assert not meets_targets(edge, "conformal")
    assert meets_targets({**edge, "wrong_cited": 6 / 247, "abstention_unanswerable": 82 / 83}, "conformal")
    with pytest.raises(ValueError, match="unknown risk rule"):
        meets_targets(edge, "hopeful")


def test_the_held_out_check_chooses_on_half_the_articles_and_judges_on_the_rest():
    items, best = [], []
    for article in range(20):
        answerable = EvalQuestion(id=f"a{article}", question="When was Einstein born?", answer="1879")
        absent = EvalQuestion(id=f"u{article}", question="Who painted the Moon?", unanswerable=True)
        items += [item(answerable, group=str(article)), item(absent, group=str(article))]
        best += [(0.9, "Einstein was born in 1879."), (0.3, "The Moon is bright.")]
    halves = held_out_halves(items, best, "empirical", repeats=10)
    assert halves["halvings"] == 10 and halves["targets_met"] == 1.0 and halves["accuracy"] == 1.0
    # a reader as sure of the unanswerable questions as of the answerable ones keeps the targets only by
    # abstaining on everything
    reckless = held_out_halves(items, [(0.9, sentence) for _, sentence in best], "empirical", repeats=10)
    assert reckless["accuracy"] == 0.0 and reckless["abstention_unanswerable"] == 1.0


def test_the_trade_off_shows_the_first_choice_at_zero_and_abstains_more_as_the_threshold_rises():
    wrong = EvalQuestion(id="q4", question="Who was Einstein's wife?", answer="Mileva Marić")
    items = [item(BORN), item(wrong), item(MOON), item(CAPITAL)]
    best = [(0.8, "Einstein was born in 1879."), (0.5, "Einstein's mother was Pauline Koch."),
            (0.3, "The Moon is bright."), (0.0, "")]  # no candidate: nothing to show even at 0
    costs = {row["threshold"]: row["figures"] for row in trade_off(items, best, (0.0, 0.4, 0.6, 0.9))}
    assert costs[0.0]["accuracy"] == 1 / 3 and costs[0.0]["wrong_cited"] == 1 / 3
    assert costs[0.0]["abstention_unanswerable"] == 0.0
    assert costs[0.4]["wrong_cited"] == 1 / 3 and costs[0.4]["abstention_unanswerable"] == 1.0
    assert costs[0.6]["accuracy"] == 1 / 3 and costs[0.6]["wrong_cited"] == 0.0
    assert costs[0.9]["accuracy"] == 0.0 and costs[0.9]["false_abstention"] == 1.0


def test_a_draft_states_the_answer_only_where_its_words_do_and_unanswerable_questions_do_not_count():
    said = ReadQuestion(BORN, None, ["Einstein was born in 1879 [1]."], "", "q2")
    guessed = ReadQuestion(CAPITAL, None, ["The capital of Alabama is Birmingham [2]."], "", "q1")
    silent = ReadQuestion(MOON, None, ["Nobody painted the Moon."], "", "q3")
    assert draft_states_gold([said, guessed, silent]) == 0.5
    assert draft_states_gold([silent]) is None


def test_the_fit_report_shows_what_each_threshold_costs_beside_the_ceilings():
    figures = {"accuracy": 0.4, "wrong_cited": 0.02, "false_abstention": 0.55, "abstention_unanswerable": 0.98}
    halves = {"halvings": 10, "accuracy": 0.4, "wrong_cited": 0.02, "wrong_cited_p90": 0.03,
              "abstention_unanswerable": 0.97, "targets_met": 0.5}
    report = {"chosen": {"candidates": 8, "threshold": 0.6, "figures": figures}, "tried": [],
              "held_out_halves": {"empirical": halves}, "weights": {}, "listwise_weights": {}, "null_utility": 1.0,
              "provenance": {"dev_candidate_holds_gold": 0.871, "dev_draft_states_gold": 0.331},
              "trade_off": [{"threshold": 0.0, "figures": {**figures, "accuracy": 0.772, "wrong_cited": 0.22}},
                            {"threshold": 0.6, "figures": figures}]}
    markdown = fit_markdown(report)
    assert "| 0.00 | 0.772 | 0.220 | 0.550 | 0.980 |" in markdown
    assert "| 0.60 | 0.400 | 0.020 | 0.550 | 0.980 |" in markdown
    assert "hold the gold answer for 0.871" in markdown and "draft states it for 0.331" in markdown


def test_the_listwise_loss_has_the_gradient_it_reports():
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(rows, 3)) for rows in (1, 3, 4)]
    # one gold candidate; none (the answer is "none of them"); two gold candidates
    labels = [np.array([True]), np.array([False, False, False]), np.array([False, True, True, False])]
    theta = rng.normal(size=4)
    loss, gradient = listwise_loss(theta, matrices, labels, 0.5)
    numeric = approx_fprime(theta, lambda t: listwise_loss(t, matrices, labels, 0.5)[0], 1e-7)
    assert loss > 0 and np.allclose(gradient, numeric, atol=1e-4)


def test_the_listwise_model_chooses_the_candidate_that_states_the_answer_or_none():
    rng = np.random.default_rng(1)
    matrices, labels = [], []
    for _ in range(40):  # answerable: one candidate of four stands out on the first feature
        matrix = rng.normal(0.0, 0.3, size=(4, 2))
        matrix[0, 0] += 2.0
        matrices.append(matrix)
        labels.append(np.array([True, False, False, False]))
        matrices.append(rng.normal(0.0, 0.3, size=(4, 2)))  # unanswerable: none does
        labels.append(np.zeros(4, dtype=bool))
    weights, null = fit_listwise(matrices, labels)
    assert weights[0] > abs(weights[1])
    answerable = listwise_probabilities(np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]) @ weights, null)
    unanswerable = listwise_probabilities(np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]) @ weights, null)
    assert answerable[0] > 0.5 > answerable[1:].max()
    assert unanswerable.max() < 0.2 and unanswerable.sum() < 0.5
