import hashlib

import numpy as np

from kgqa.records import FactHit, LinkedEntity
from retrieval.facts import predicate_match, rank_facts
from retrieval.word_vectors import WordVectors

# Word vectors standing in for the embedder's: hashed, with a few pairs made to mean the same.
SAME = {"wrote": "author", "governs": "governor"}


def _encode(texts):
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(SAME.get(text, text).encode()).digest()[:4], "little")
        vector = np.random.default_rng(seed).standard_normal(32)
        rows.append(vector / np.linalg.norm(vector))
    return np.array(rows)


VECTORS = WordVectors(_encode)


def fact(i, subject, predicate, obj, is_entity=True) -> FactHit:
    return FactHit(triple_id=i, subject=subject, predicate=predicate, object=obj, object_is_entity=is_entity,
                   page_id=1, rev_id=1, field=predicate, url="u", score=0.0)


ALABAMA = [
    fact(1, "Alabama", "name", "Alabama", False),
    fact(2, "Alabama", "largest_city", "Birmingham, Alabama"),
    fact(3, "Alabama", "admission_date", "December 14, 1819", False),
    fact(4, "Alabama", "capital", "Montgomery, Alabama"),
    fact(5, "Alabama", "governor", "Kay Ivey"),
    fact(6, "Alabama", "population_total", "5,024,279", False),
]
ALABAMA_ENTITY = [LinkedEntity(entity_id=1, title="Alabama", mention="Alabama", alias="Alabama", url="u")]


def test_capital_question_ranks_the_capital_fact_first():
    ranked = rank_facts("What is the capital of Alabama?", ALABAMA)
    assert ranked[0].predicate == "capital" and ranked[0].object == "Montgomery, Alabama"


def test_predicates_are_matched_to_the_question_by_meaning_not_by_a_table():
    assert rank_facts("What is the largest city in Alabama?", ALABAMA)[0].predicate == "largest_city"
    assert rank_facts("Who is the governor of Alabama?", ALABAMA)[0].predicate == "governor"
    assert rank_facts("Who governs Alabama?", ALABAMA, vectors=VECTORS)[0].predicate == "governor"
    orwell = [fact(7, "Animal Farm", "author", "George Orwell"), fact(8, "Animal Farm", "country", "United Kingdom")]
    assert rank_facts("Who wrote Animal Farm?", orwell, vectors=VECTORS)[0].object == "George Orwell"
    assert predicate_match("Who wrote Animal Farm?", "author", VECTORS) == 1.0
    assert predicate_match("Who wrote Animal Farm?", "author") == 0.0  # no vectors, no meaning
    assert predicate_match("Who wrote Animal Farm?", "country", VECTORS) == 0.0


def test_the_kind_of_answer_asked_for_prefers_objects_of_that_form():
    assert rank_facts("When did Alabama join the Union?", ALABAMA)[0].predicate == "admission_date"
    assert rank_facts("How many live in Alabama?", ALABAMA)[0].predicate in {"population_total", "admission_date"}


def test_a_subjects_own_facts_survive_when_many_triples_point_at_it(tmp_path):
    from sqlalchemy import create_engine

    from kg.store import Entity, Triple, init_db, session_factory
    from kgqa.records import LinkedEntity
    from retrieval.facts import load_facts

    engine = create_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    init_db(engine)
    with session_factory(engine)() as session:
        session.add_all([Entity(entity_id=1, title="Testland"), *(Entity(entity_id=i, title=f"Person {i}") for i in range(2, 32))])
        # thirty people born in Testland, written before Testland's own infobox
        session.add_all(Triple(subject_id=i, predicate="birth_place", object_title="Testland", kind="infobox",
                               page_id=i, rev_id=1) for i in range(2, 32))
        session.add(Triple(subject_id=1, predicate="capital", object_literal="Testville", kind="infobox", page_id=1, rev_id=1))
        session.commit()
        linked = [LinkedEntity(entity_id=1, title="Testland", mention="Testland", alias="Testland", url="")]
        facts = load_facts(session, linked, lambda title: title, limit=10)
    assert len(facts) == 10
    assert (facts[0].subject, facts[0].predicate, facts[0].object) == ("Testland", "capital", "Testville")
    assert {f.predicate for f in facts[1:]} == {"birth_place"}  # the pointing triples fill what is left
