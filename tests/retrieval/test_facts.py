from kgqa.records import FactHit, LinkedEntity
from retrieval.facts import predicate_match, rank_facts


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


def test_cue_words_map_questions_to_predicates():
    assert rank_facts("What is the largest city in Alabama?", ALABAMA)[0].predicate == "largest_city"
    assert rank_facts("Who is the governor of Alabama?", ALABAMA)[0].predicate == "governor"
    assert rank_facts("How many people live in Alabama?", ALABAMA)[0].predicate == "population_total"
    orwell = [fact(7, "Animal Farm", "author", "George Orwell"), fact(8, "Animal Farm", "country", "United Kingdom")]
    assert rank_facts("Who wrote Animal Farm?", orwell)[0].object == "George Orwell"
    assert predicate_match("Who wrote Animal Farm?", "author") == 1.0
