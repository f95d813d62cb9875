"""The hand-written multi-hop set over the sample dump (data/eval/multihop): well formed, honest, split by article pair."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from evaluation.questions import EvalQuestion, load_questions

MULTIHOP_SET = Path(__file__).resolve().parents[2] / "data" / "eval" / "multihop"
WHY = ("absent-entity", "absent-fact")


@pytest.fixture(scope="module")
def splits() -> dict[str, list[EvalQuestion]]:
    return {name: load_questions(MULTIHOP_SET / f"{name}.jsonl") for name in ("dev", "test")}


@pytest.fixture(scope="module")
def questions(splits) -> list[EvalQuestion]:
    return [question for split in splits.values() for question in split]


def _pair(question: EvalQuestion) -> frozenset[str]:
    return frozenset(hop.title for hop in question.hops)


def test_every_line_is_a_multi_hop_question_with_a_unique_id(splits, questions):
    lines = sum(1 for name in splits for line in (MULTIHOP_SET / f"{name}.jsonl").open(encoding="utf-8") if line.strip())
    assert len(questions) == lines
    ids = [question.id for question in questions]
    assert all(ident.startswith("mh-") for ident in ids) and len(set(ids)) == len(ids)
    assert len({question.question for question in questions}) == len(questions)
    assert all(question.hop_kind and len(question.hops) == 2 for question in questions)
    assert all(question.kind == question.hop_kind for question in questions)  # kgqa eval qa reports per hop kind


def test_the_set_is_large_a_quarter_unanswerable_and_holds_both_hop_kinds(splits, questions):
    assert len(questions) >= 120
    assert 0.22 <= sum(q.unanswerable for q in questions) / len(questions) <= 0.30
    for name, split in splits.items():
        for kind in ("bridge", "comparison"):
            of_kind = [q for q in split if q.hop_kind == kind]
            assert sum(not q.unanswerable for q in of_kind) >= 10, (name, kind)
            assert sum(q.unanswerable for q in of_kind) >= 4, (name, kind)


def test_answerable_questions_record_both_hops_in_two_articles(questions):
    for question in (q for q in questions if not q.unanswerable):
        assert question.answer and question.answer not in question.answer_aliases, question.id
        assert question.question.endswith("?"), question.id
        titles = [hop.title for hop in question.hops]
        assert len(set(titles)) == 2 and question.gold_titles == titles, question.id
        assert question.gold_passage_ids == question.hop_passage_ids, question.id
        assert all(hop.evidence and len(hop.evidence) >= 20 for hop in question.hops), question.id
        assert (question.bridge is None) == (question.hop_kind == "comparison"), question.id


def test_unanswerable_questions_miss_a_hop_and_say_why(questions):
    for question in (q for q in questions if q.unanswerable):
        assert question.note.startswith(WHY), question.id
        assert not question.answer and not question.gold_passage_ids, question.id
        assert None in question.hop_passage_ids, question.id
        if question.hop_kind == "bridge" and question.note.startswith("absent-entity"):
            missing = [hop.title for hop in question.hops if hop.passage_id is None]
            assert missing == [question.bridge], question.id  # the hop lost is the one about the bridge entity


def test_no_article_pair_is_in_both_splits_and_test_is_the_larger(splits):
    dev, test = ({_pair(q) for q in splits[name]} for name in ("dev", "test"))
    assert dev and test and not dev & test
    assert len(splits["test"]) > len(splits["dev"])


@pytest.mark.slow
def test_every_hop_is_a_passage_that_states_its_evidence(sample_kb, questions):
    from kg.store import Page, Passage, make_engine, session_factory

    engine = make_engine(sample_kb.database_url)
    with session_factory(engine)() as session:
        pages = set(session.scalars(select(Page.title)))
        for question in questions:
            assert set(question.gold_titles) <= pages, question.id
            for hop in question.hops:
                if hop.passage_id is None:
                    # a missing bridge entity has no page; a missing fact's article does
                    assert (hop.title in pages) == question.note.startswith("absent-fact"), (question.id, hop.title)
                    continue
                passage = session.scalar(select(Passage).where(Passage.id == hop.passage_id))
                assert passage is not None and passage.title == hop.title, (question.id, hop.passage_id)
                assert hop.evidence in passage.text, (question.id, hop.passage_id)


def test_a_prefix_of_either_split_mixes_hop_kinds_and_unanswerable_questions(splits):
    for name, split in splits.items():
        prefix = split[:10]  # kgqa eval --limit 10
        assert {q.hop_kind for q in prefix} == {"bridge", "comparison"}, name
        assert 1 <= sum(q.unanswerable for q in prefix) <= 5, name


def _comparison(answer: str, aliases: list[str]) -> EvalQuestion:
    hops = [{"title": "Abraham Lincoln", "passage_id": "1:1:0:0", "evidence": "Lincoln (1809-1865)"},
            {"title": "Arthur Schopenhauer", "passage_id": "2:1:0:0", "evidence": "Schopenhauer (1788-1860)"}]
    return EvalQuestion(id="c", question="Who was born earlier, Abraham Lincoln or Arthur Schopenhauer?",
                        answer=answer, answer_aliases=aliases, hop_kind="comparison", hops=hops,
                        gold_titles=["Abraham Lincoln", "Arthur Schopenhauer"])


def test_a_comparison_answer_is_right_only_when_it_names_the_thing_picked_first():
    from evaluation.qa_eval import picks_the_answer

    question = _comparison("Arthur Schopenhauer", ["Schopenhauer"])
    assert picks_the_answer(question, "Schopenhauer, born in 1788, is older than Lincoln.")
    assert picks_the_answer(question, "Arthur Schopenhauer has the earlier birth date, against Abraham Lincoln.")
    assert not picks_the_answer(question, "Lincoln was born before Schopenhauer.")
    assert not picks_the_answer(question, "Abraham Lincoln, born in 1809, is older than Arthur Schopenhauer.")
    # an answer that is not one of the things compared ("yes", a difference) picks nothing
    assert picks_the_answer(_comparison("21", []), "Lincoln was born 21 years after Schopenhauer.")


@pytest.mark.parametrize("name", ["dev", "test"])
def test_each_split_has_its_hand_written_claims_right_ones_naming_the_answer(splits, name):
    from evaluation.claim_set import load_claims
    from evaluation.metrics import answer_contained, best_over_golds

    claims = load_claims(MULTIHOP_SET / f"claims-{name}.jsonl")
    assert {q.id: q.question for q in splits[name]} == {c.id: c.question for c in claims.values()}
    for question in splits[name]:
        record = claims[question.id]
        wrong = record.labelled("wrong")
        if question.unanswerable:
            assert not record.labelled("right") and len(wrong) >= 2 and {c.kind for c in wrong} == {"invented"}
            continue
        assert len(record.labelled("right")) >= 2 and len(wrong) >= 3 and len({c.kind for c in wrong}) >= 2
        assert all(best_over_golds(answer_contained, c.text, question.answers) for c in record.labelled("right"))
        # a wrong claim holds the answer only where it names it as the side a comparison does not pick
        assert all(c.kind == "other-option" or not best_over_golds(answer_contained, c.text, question.answers)
                   for c in wrong), question.id
