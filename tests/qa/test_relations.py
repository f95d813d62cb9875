from qa.relations import direct_answer, relation_terms
from retrieval.facts import rank_facts
from tests.retrieval.test_facts import ALABAMA, ALABAMA_ENTITY


def test_the_capital_fact_answers_a_capital_question_directly():
    ranked = rank_facts("What is the capital of Alabama?", ALABAMA)
    assert direct_answer("What is the capital of Alabama?", ranked, ALABAMA_ENTITY) == ranked[0]


def test_no_direct_answer_when_the_question_asks_for_no_predicate():
    ranked = rank_facts("Tell me about Alabama", ALABAMA)
    assert direct_answer("Tell me about Alabama", ranked, ALABAMA_ENTITY) is None
    assert direct_answer("What is the capital?", [], ALABAMA_ENTITY) is None


def test_relation_terms_bring_the_predicate_words_and_their_sibling_cues():
    terms = relation_terms("Who was Albert Einstein married to?")
    assert {"married", "spouse", "wife", "husband"} <= terms
    assert relation_terms("Tell me about Alabama") == set()
