"""The hand-written question set over the sample dump (data/eval/sample): well formed, honest, split by article."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from evaluation.questions import EvalQuestion, load_questions

SAMPLE_SET = Path(__file__).resolve().parents[2] / "data" / "eval" / "sample"
UNANSWERABLE_KINDS = {"absent-entity", "absent-fact", "false-premise"}


@pytest.fixture(scope="module")
def splits() -> dict[str, list[EvalQuestion]]:
    return {name: load_questions(SAMPLE_SET / f"{name}.jsonl") for name in ("dev", "test")}


@pytest.fixture(scope="module")
def questions(splits) -> list[EvalQuestion]:
    return splits["dev"] + splits["test"]


def test_every_line_is_a_question_with_a_unique_id(splits, questions):
    lines = sum(1 for name in splits for line in (SAMPLE_SET / f"{name}.jsonl").open(encoding="utf-8") if line.strip())
    assert len(questions) == lines  # load_questions fails on any malformed line; none was skipped
    ids = [question.id for question in questions]
    assert all(ident.startswith("hq-") for ident in ids)
    assert len(set(ids)) == len(ids)
    texts = [question.question for question in questions]
    assert len(set(texts)) == len(texts)


def test_the_set_is_large_and_a_quarter_unanswerable(questions):
    unanswerable = [question for question in questions if question.unanswerable]
    assert len(questions) >= 200
    assert len(questions) - len(unanswerable) >= 150
    assert len(unanswerable) >= 55
    assert len(unanswerable) / len(questions) >= 0.25


def test_answerable_questions_carry_their_gold_evidence(questions):
    for question in (q for q in questions if not q.unanswerable):
        assert question.answer and question.answer in question.evidence, question.id
        assert question.kind not in UNANSWERABLE_KINDS, question.id
        assert len(question.gold_titles) == 1 and question.gold_passage_ids, question.id
        assert question.answer not in question.answer_aliases, question.id
        assert question.question.endswith("?"), question.id


def test_unanswerable_questions_say_why(questions):
    for question in (q for q in questions if q.unanswerable):
        assert question.kind in UNANSWERABLE_KINDS, question.id
        assert question.note and not question.answer and not question.gold_passage_ids, question.id
        # an absent entity has no article; an absent fact or false premise names the article it is about
        assert bool(question.gold_titles) == (question.kind != "absent-entity"), question.id


def test_no_article_is_in_both_splits(splits):
    dev, test = ({title for q in splits[name] for title in q.gold_titles} for name in ("dev", "test"))
    assert dev and test and not dev & test
    # the test split is the report: large enough, and as unanswerable as the whole set
    for name in ("dev", "test"):
        assert sum(q.unanswerable for q in splits[name]) / len(splits[name]) >= 0.25, name
    assert len(splits["test"]) >= 200


def _per_article(questions) -> dict[str, int]:
    per_article: dict[str, int] = {}
    for question in (q for q in questions if not q.unanswerable):
        per_article[question.gold_titles[0]] = per_article.get(question.gold_titles[0], 0) + 1
    return per_article


def test_the_set_spans_many_articles_with_few_questions_each(splits, questions):
    assert len(_per_article(questions)) >= 60
    assert max(_per_article(splits["test"]).values()) <= 5  # no article dominates the report
    assert max(_per_article(splits["dev"]).values()) <= 20  # dev was extended by a second and a third pass (README)


@pytest.mark.slow
def test_gold_passages_exist_and_state_the_evidence(sample_kb, questions):
    from kg.store import Page, Passage, make_engine, session_factory

    engine = make_engine(sample_kb.database_url)
    with session_factory(engine)() as session:
        pages = set(session.scalars(select(Page.title)))
        assert {title for q in questions for title in q.gold_titles} <= pages
        for question in (q for q in questions if not q.unanswerable):
            for passage_id in question.gold_passage_ids:
                passage = session.scalar(select(Passage).where(Passage.id == passage_id))
                assert passage is not None, (question.id, passage_id)
                assert passage.title == question.gold_titles[0], question.id
                assert question.evidence in passage.text, question.id
