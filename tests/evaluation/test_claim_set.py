"""The claim set, the stand-in for a capable LM, and how the checker's threshold is chosen from claims."""

import json

import numpy as np
import pytest

from evaluation.checker_fit import CheckedClaim, choose_threshold, figures
from evaluation.claim_set import ClaimRecord, StandInGenerator, load_claims
from evaluation.questions import EvalQuestion, QuestionSetError
from qa.checker import CHECK_FEATURES

RECORDS = [
    {"id": "q1", "question": "Who was Achilles' mother?", "claims": [
        {"text": "Achilles' mother was the nymph Thetis.", "label": "right"},
        {"text": "Achilles' mother was Peleus.", "label": "wrong", "kind": "same-article"},
        {"text": "Achilles' mother was Hera.", "label": "wrong", "kind": "other-article"}]},
    {"id": "q2", "question": "Who painted the Mona Lisa?", "claims": [
        {"text": "Leonardo da Vinci painted the Mona Lisa.", "label": "wrong", "kind": "invented"},
        {"text": "The Mona Lisa was painted by Raphael.", "label": "wrong", "kind": "invented"}]},
]


@pytest.fixture
def claims(tmp_path):
    path = tmp_path / "claims.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n", encoding="utf-8")
    return load_claims(path)


def _prompt(question: str) -> list[dict]:
    return [{"role": "system", "content": "..."}, {"role": "user", "content": f"<evidence>…</evidence>\n\nQuestion: {question}"}]


def test_a_malformed_claim_line_is_named(tmp_path):
    path = tmp_path / "claims.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + '{"id": "q3", "claims": [{"text": "x", "label": "maybe"}]}\n')
    with pytest.raises(QuestionSetError, match="claims.jsonl:2"):
        load_claims(path)


def test_the_stand_in_drafts_a_right_and_a_wrong_claim_in_a_fixed_order(claims):
    generator = StandInGenerator(claims, right_share=1.0, seed=3)
    draft = generator.draft_for("Who was Achilles' mother?")
    assert len(draft) == 2 and "Achilles' mother was the nymph Thetis." in draft
    assert any(text in draft for text in ("Achilles' mother was Peleus.", "Achilles' mother was Hera."))
    assert StandInGenerator(claims, right_share=1.0, seed=3).draft_for("Who was Achilles' mother?") == draft
    assert "".join(generator.stream(_prompt("Who was Achilles' mother?"))) == " ".join(draft)


def test_the_stand_in_writes_only_wrong_claims_at_share_zero_and_invents_for_the_unanswerable(claims):
    wrong_only = StandInGenerator(claims, right_share=0.0).draft_for("Who was Achilles' mother?")
    assert "Achilles' mother was the nymph Thetis." not in wrong_only and len(wrong_only) == 2
    invented = StandInGenerator(claims).draft_for("Who painted the Mona Lisa?")
    assert sorted(invented) == sorted(c["text"] for c in RECORDS[1]["claims"])
    assert StandInGenerator(claims).draft_for("A question it has no claims for?") == []


def _checked(label: str, probability: float | None) -> CheckedClaim:
    question = EvalQuestion(question="q?", id="q", answer="a")
    matrix = np.full((1, len(CHECK_FEATURES)), probability) if probability is not None else np.zeros((0, len(CHECK_FEATURES)))
    return CheckedClaim(question, ClaimRecord(text="c.", label=label, kind="" if label == "right" else "same-article"),
                        matrix, [], np.ones(len(matrix), dtype=bool), "", "g")


def test_the_threshold_keeps_wrong_claims_within_the_target_by_conformal_risk():
    checked = [_checked("wrong", p) for p in np.linspace(0.0, 0.9, 99)] + [_checked("wrong", None)]
    checked += [_checked("right", p) for p in (0.5, 0.95, 0.97)]
    best = np.asarray([c.matrix.max() if len(c.matrix) else 0.0 for c in checked])
    threshold = choose_threshold(checked, best, max_wrong=0.03)
    wrong_accepted = sum(1 for c, p in zip(checked, best) if not c.right and len(c.matrix) and p >= threshold)
    assert (wrong_accepted + 1) / (100 + 1) <= 0.03
    assert choose_threshold(checked, best, max_wrong=0.03) <= 0.9  # the lowest that meets it, not the strictest
    result = figures(checked, best, threshold)
    assert result["right_claims"] == 3 and result["wrong_claims"] == 100
    assert result["wrong_accepted"] == wrong_accepted / 100
    assert result["wrong_accepted_by_kind"]["same-article"]["claims"] == 100


def test_the_report_counts_the_answers_that_show_a_wrong_claim(claims):
    from evaluation.runs import wrong_claims_shown

    rows = [{"id": "q1", "question": "Who was Achilles' mother?", "shown": ["Achilles' mother was Peleus."]},
            {"id": "q1b", "question": "Who was Achilles' mother?", "shown": ["Achilles' mother was the nymph Thetis."]},
            {"id": "q2", "question": "Who painted the Mona Lisa?", "shown": []}]
    counted = wrong_claims_shown(rows, StandInGenerator(claims))
    assert counted["with_a_wrong_claim_shown"] == 1 and counted["ids"] == ["q1"]


@pytest.mark.slow
def test_the_claim_report_measures_the_answer_paths_two_hop_checks_beside_the_fitted_checker(sample_kb, tmp_path):
    from evaluation.checker_fit import evaluate_checker
    from qa.engine import QAEngine

    question = EvalQuestion(id="c1", question="Who was born earlier, Abraham Lincoln or Arthur Schopenhauer?",
                            answer="Arthur Schopenhauer", gold_titles=["Arthur Schopenhauer", "Abraham Lincoln"])
    path = tmp_path / "claims.jsonl"
    path.write_text(json.dumps({"id": "c1", "question": question.question, "claims": [
        {"text": "Arthur Schopenhauer was born earlier, in 1788, while Abraham Lincoln was born in 1809.",
         "label": "right"},
        {"text": "Abraham Lincoln was born first, in 1809, ahead of Arthur Schopenhauer.",
         "label": "wrong", "kind": "other-option"}]}) + "\n", encoding="utf-8")
    engine = QAEngine(sample_kb, generator=StandInGenerator({}))
    report = evaluate_checker(engine, [question], load_claims(path), progress=False)
    shown = {row["label"]: row["shown"] for row in report["per_claim"]}
    assert shown == {"right": True, "wrong": False}
    path_figures = report["summary"]["answer_path"]
    assert path_figures["right_accepted"] == 1.0 and path_figures["wrong_accepted"] == 0.0
