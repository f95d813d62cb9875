"""Dev-set generation: on a tiny hand-built store (exact expectations) and on the real sample KB."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from kg.store import Alias, Entity, Page, Passage, Triple, init_db, make_engine, session_factory
from evaluation.devset import make_devset
from evaluation.metrics import normalize_answer
from evaluation.questions import QuestionSetError, load_questions, save_questions
from evaluation.templates import TEMPLATES, canonical_predicate, clean_answer, subject_phrase


def _page(session, page_id, title, passages):
    session.add(Page(page_id=page_id, title=title, rev_id=page_id * 10, timestamp="", url=f"u/{title}"))
    session.add(Entity(entity_id=page_id, title=title))
    session.flush()  # parents first: the store enforces foreign keys
    session.add(Alias(norm=normalize_answer(title), alias=title, entity_id=page_id, source="title"))
    for ordinal, text in enumerate(passages):
        session.add(Passage(id=f"{page_id}:{page_id * 10}:0:{ordinal}", vector_id=page_id * 100 + ordinal,
                            page_id=page_id, rev_id=page_id * 10, title=title, ordinal=ordinal, text=text))


def _fact(session, subject_id, predicate, *, title="", literal=""):
    session.add(Triple(subject_id=subject_id, predicate=predicate, object_title=title, object_literal=literal,
                       kind="infobox", page_id=subject_id, rev_id=subject_id * 10, field=predicate))


@pytest.fixture
def tiny_store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'tiny.db'}")
    init_db(engine)
    with session_factory(engine)() as session:
        _page(session, 1, "Alabama", ["Alabama is a state.", "Its capital is Montgomery, founded in 1819."])
        _page(session, 2, "Montgomery, Alabama", ["Montgomery is a city."])
        _page(session, 3, "Animal Farm", ["Animal Farm is a satirical novella by George Orwell."])
        _page(session, 4, "Algeria", ["Algeria is a country in North Africa."])
        session.flush()
        session.add(Alias(norm="montgomery", alias="Montgomery", entity_id=2, source="disambiguator"))
        _fact(session, 1, "capital", title="Montgomery, Alabama")
        _fact(session, 1, "image_flag", literal="Flag of Alabama.svg")
        _fact(session, 1, "largest_city", literal="Birmingham")
        _fact(session, 3, "author", title="George Orwell")
        _fact(session, 3, "genre", literal="Political satire")
        _fact(session, 3, "language", literal="English")
        _fact(session, 4, "capital", title="Algiers")
        _fact(session, 4, "currency", literal="Algerian dinar")
        _fact(session, 4, "birth_place", literal="Oran")  # a person's key on a country: does not fit
        _fact(session, 4, "largest_city", literal="capital")  # a placeholder, not a fact
        _fact(session, 4, "population_estimate", literal="40,400,000")
        session.commit()
        yield session


def test_answerable_questions_come_from_templated_infobox_facts(tiny_store):
    questions = {q.question: q for q in make_devset(tiny_store, seed=1) if not q.unanswerable}
    assert set(questions) == {
        "What is the capital of Alabama?", "What is the largest city in Alabama?",
        "Who wrote Animal Farm?", "What genre is Animal Farm?", "In what language is Animal Farm?",
        "What is the capital of Algeria?", "What is the currency of Algeria?",
    }
    alabama = questions["What is the capital of Alabama?"]
    assert alabama.answer == "Montgomery, Alabama"
    assert "Montgomery" in alabama.answer_aliases
    assert alabama.gold_titles == ["Alabama"]
    assert alabama.gold_passage_ids == ["1:10:0:1"]  # the passage that states the answer
    assert alabama.source.page_id == 1 and alabama.source.field == "capital"
    assert questions["Who wrote Animal Farm?"].gold_passage_ids == ["3:30:0:0"]


def test_dates_get_written_out_variants_and_lone_facts_ask_nothing(tiny_store):
    _page(tiny_store, 5, "Ada Lovelace", ["Ada Lovelace was born on 10 December 1815 in London."])
    _fact(tiny_store, 5, "birth_date", literal="1815-12-10")
    _fact(tiny_store, 5, "birth_place", title="London")
    _page(tiny_store, 6, "Standards Body", ["A body."])
    _fact(tiny_store, 6, "language", literal="English")  # one work key on a non-work: no question
    tiny_store.commit()
    questions = {q.question: q for q in make_devset(tiny_store, seed=1) if not q.unanswerable}
    born = questions["When was Ada Lovelace born?"]
    assert born.answer == "1815-12-10" and "10 December 1815" in born.answer_aliases
    assert born.gold_passage_ids == ["5:50:0:0"]
    assert not any("Standards Body" in q for q in questions)


def test_unanswerable_questions_name_nothing_the_kb_holds(tiny_store):
    unanswerable = [q for q in make_devset(tiny_store, seed=1) if q.unanswerable]
    assert unanswerable and all(q.answer is None for q in unanswerable)
    titles = {normalize_answer(t) for t in tiny_store.scalars(select(Entity.title))}
    for question in unanswerable:
        if question.kind == "missing_entity":
            named = re.sub(r"^(What|Who|Where|When|In what)\b.*?\b(of|is|was|wrote|directed|published|from|did)\s+", "",
                           question.question)
            assert normalize_answer(named.rstrip("?")) not in titles
        if question.kind == "future":
            assert re.search(r"\b2(09\d|1[0-4]\d)\b", question.question)
    kinds = {q.kind for q in unanswerable}
    assert "future" in kinds and "missing_entity" in kinds


def test_generation_is_deterministic_per_seed_and_round_trips_through_jsonl(tiny_store, tmp_path):
    first = make_devset(tiny_store, seed=7)
    assert [q.model_dump() for q in first] == [q.model_dump() for q in make_devset(tiny_store, seed=7)]
    path = tmp_path / "dev.jsonl"
    assert save_questions(first, path) == len(first)
    assert [q.question for q in load_questions(path)] == [q.question for q in first]


def test_max_questions_caps_the_set_and_any_prefix_mixes_both_kinds(tiny_store):
    assert len(make_devset(tiny_store, seed=3, max_questions=3)) <= 3
    first_four = make_devset(tiny_store, seed=3)[:4]
    assert any(q.unanswerable for q in first_four) and not all(q.unanswerable for q in first_four)


def test_a_malformed_question_line_names_its_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "What is the capital of Alabama?"}\n{"answer": "x"}\n')
    with pytest.raises(QuestionSetError, match=r"bad.jsonl:2"):
        load_questions(path)
    assert load_questions(path, limit=1)[0].id == "q1"


def test_template_helpers():
    assert canonical_predicate("Largest_city") == canonical_predicate("largestcity") == "largestcity"
    assert canonical_predicate("spouse2") == "spouse"
    assert canonical_predicate("largest_cities") == "largestcity"
    assert subject_phrase("Animalia (book)") == "Animalia"
    assert clean_answer("Flag of Alabama.svg") is None and clean_answer("capital") is None
    assert clean_answer(" Montgomery. ") == "Montgomery"
    assert all("{s}" in template.text and template.text.endswith("?") for template in TEMPLATES.values())


@pytest.mark.slow
def test_devset_on_the_sample_kb_asks_about_real_triples(sample_kb):
    from kg.store import Triple as T

    engine = make_engine(sample_kb.database_url)
    with session_factory(engine)() as session:
        questions = make_devset(session, seed=13)
        answerable = [q for q in questions if not q.unanswerable]
        assert len(answerable) >= 20 and len(questions) > len(answerable)
        assert "What is the capital of Alabama?" in {q.question for q in answerable}
        for question in answerable:
            assert question.question.endswith("?") and "{" not in question.question
            subject = session.scalar(select(Entity).where(Entity.title == question.gold_titles[0]))
            objects = {normalize_answer(t.object_title or t.object_literal) for t in
                       session.scalars(select(T).where(T.subject_id == subject.entity_id, T.kind == "infobox"))}
            assert any(normalize_answer(o) in objects or normalize_answer(o) in " ".join(objects)
                       for o in question.answers), question
