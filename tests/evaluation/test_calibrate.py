"""Calibrating the claim checker for a user's LM: each answer recomposed at a threshold from one draft."""

from evaluation.calibrate import Drafted, answer_at, rows_at
from evaluation.qa_eval import trust
from evaluation.questions import EvalQuestion

THETIS = EvalQuestion(question="Who was Achilles' mother?", id="a", answer="Thetis")
MONA = EvalQuestion(question="Who painted the Mona Lisa?", id="b", unanswerable=True, kind="absent-entity")


def test_an_answer_holds_the_drafted_sentences_at_or_above_the_threshold_else_the_readers():
    item = Drafted(THETIS, early=False, lead="", reader="His mother was the nymph Thetis.",
                   sentences=[("Achilles' mother was Peleus.", 0.4), ("Achilles' mother was Thetis.", 0.8)])
    assert answer_at(item, 0.3) == "Achilles' mother was Peleus. Achilles' mother was Thetis."
    assert answer_at(item, 0.5) == "Achilles' mother was Thetis."
    assert answer_at(item, 0.9) == "His mother was the nymph Thetis."  # nothing drafted stands: the reader's
    assert answer_at(Drafted(THETIS, True, "", [], "x"), 0.0) == ""  # abstained before any draft
    assert answer_at(Drafted(THETIS, False, "The mother of Achilles is Thetis.", [], ""), 0.99).startswith("The mother")


def test_a_threshold_is_judged_by_the_trust_rates_of_the_answers_it_gives():
    items = [Drafted(THETIS, False, "", [("Achilles' mother was Hera.", 0.6), ("Achilles' mother was Thetis.", 0.9)], ""),
             Drafted(MONA, False, "", [("Leonardo da Vinci painted it.", 0.7)], "")]
    loose, strict = trust(rows_at(items, 0.5)), trust(rows_at(items, 0.8))
    assert loose["accuracy"] == 1.0 and loose["abstention_unanswerable"] == 0.0
    assert strict["accuracy"] == 1.0 and strict["abstention_unanswerable"] == 1.0
