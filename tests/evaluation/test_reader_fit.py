"""How the reader's fit answers dev questions at a threshold, and which choice it keeps."""

from evaluation.questions import EvalQuestion
from evaluation.reader_fit import ReadQuestion, _key, _rows
from evaluation.qa_eval import trust

CAPITAL = EvalQuestion(id="q1", question="What is the capital of Alabama?", answer="Montgomery")
BORN = EvalQuestion(id="q2", question="When was Einstein born?", answer="1879")
MOON = EvalQuestion(id="q3", question="Who painted the Moon?", unanswerable=True, kind="absent-entity")


def item(question, lead=""):
    return ReadQuestion(question, None, [], lead, question.id)


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
