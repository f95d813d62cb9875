"""Comparison questions: the two things compared, their values, and which side a drafted sentence picks."""

import pytest

from kgqa.records import FactHit, LinkedEntity
from qa.comparison import (
    Comparison,
    ComparedValue,
    claimed_values,
    claimed_winner,
    compare,
    date_value,
    describe,
    number_value,
    read_comparison,
    stated_values_hold,
)


def entity(title: str, mention: str | None = None, entity_id: int = 1) -> LinkedEntity:
    return LinkedEntity(entity_id=entity_id, title=title, mention=mention or title, alias=title, url="")


def fact(subject: str, predicate: str, obj: str, triple_id: int) -> FactHit:
    return FactHit(triple_id=triple_id, subject=subject, predicate=predicate, object=obj, object_is_entity=False,
                   page_id=1, rev_id=1, field=predicate, url="", score=0.0)


EINSTEIN, HUXLEY = entity("Albert Einstein", entity_id=1), entity("Aldous Huxley", entity_id=2)
ANGOLA, AFGHANISTAN = entity("Angola", entity_id=3), entity("Afghanistan", entity_id=4)


def word_match(words: str, predicate: str) -> float:
    """A stand-in for the embedder's relation match: the share of the predicate's words in ``words``."""
    parts = predicate.split("_")
    return sum(p in words.split() or (p == "birth" and "born" in words.split()) for p in parts) / len(parts)


def test_a_question_naming_two_things_joined_by_or_and_a_comparative_is_a_comparison():
    asked = read_comparison("Who was born first, Albert Einstein or Aldous Huxley?", [EINSTEIN, HUXLEY])
    assert asked.options == (EINSTEIN, HUXLEY) and asked.direction == "earlier" and asked.kind == "date"
    assert read_comparison("Which country has more people, Angola or Afghanistan?", [ANGOLA, AFGHANISTAN]).direction == "more"
    assert "born" in read_comparison("Who is younger, Albert Einstein or Aldous Huxley?", [EINSTEIN, HUXLEY]).relation_hint
    # "or" with a few lower-case words before the second thing
    assert read_comparison("Which gained independence first, Angola or the present Afghanistan?",
                           [ANGOLA, AFGHANISTAN]).direction == "earlier"


@pytest.mark.parametrize("question", [
    "Who lived longer, Albert Einstein or Aldous Huxley?",  # a life's length, not a date
    "Was Albert Einstein still alive when Aldous Huxley was born?",
    "Who was born first, Albert Einstein and then Aldous Huxley?",  # no "or"
])
def test_a_question_that_asks_more_than_two_values_compared_is_not_read_as_one(question):
    assert read_comparison(question, [EINSTEIN, HUXLEY]) is None


def test_a_question_with_no_comparative_is_a_choice():
    asked = read_comparison("Where is Portuguese the official language, Angola or Afghanistan?", [ANGOLA, AFGHANISTAN])
    assert asked.is_choice


def test_values_are_read_as_written():
    assert date_value("1788-02-22") == (1788, 2, 22)
    assert date_value("17 August 1945 (Secker and Warburg)") == (1945, 8, 17)
    assert date_value("August 17, 1945") == (1945, 8, 17)
    assert date_value("384 BC") == (-384, 0, 0)
    assert number_value("1,246,700") == 1246700 and number_value("24.3 million people") == 24_300_000


def test_both_sides_come_from_one_relation_and_the_direction_picks_the_winner():
    facts = [fact("Albert Einstein", "death_date", "1955-04-18", 1), fact("Albert Einstein", "birth_date", "1879-03-14", 2),
             fact("Aldous Huxley", "birth_date", "1894-07-26", 3), fact("Aldous Huxley", "death_date", "1963-11-22", 4)]
    asked = read_comparison("Who was born first, Albert Einstein or Aldous Huxley?", [EINSTEIN, HUXLEY])
    comparison = compare(asked, facts, word_match)
    assert [s.fact.triple_id for s in comparison.sides] == [2, 3]
    assert comparison.winner.option == EINSTEIN and comparison.loser.option == HUXLEY
    assert describe(comparison) == ("Albert Einstein has the earlier birth date: 1879-03-14, "
                                    "against 1894-07-26 for Aldous Huxley.")
    later = read_comparison("Who was born later, Albert Einstein or Aldous Huxley?", [EINSTEIN, HUXLEY])
    assert compare(later, facts, word_match).winner.option == HUXLEY


def test_a_relation_listed_several_times_or_a_share_gives_no_value():
    facts = [fact("Angola", "ethnic_groups", "25% Ambundu", 1), fact("Angola", "ethnic_groups", "2% Mestiço", 2),
             fact("Afghanistan", "people_share", "42%", 3)]
    asked = read_comparison("Which country has more people, Angola or Afghanistan?", [ANGOLA, AFGHANISTAN])
    assert compare(asked, facts, lambda words, predicate: 1.0) is None


def test_the_side_a_sentence_picks_turns_round_with_the_opposite_comparative():
    asked = read_comparison("Who was born first, Albert Einstein or Aldous Huxley?", [EINSTEIN, HUXLEY])
    assert claimed_winner("Einstein was born first, in 1879.", asked) == EINSTEIN
    assert claimed_winner("Huxley was born later than Einstein.", asked) == EINSTEIN
    assert claimed_winner("Huxley, born in 1894, came before Einstein.", asked) == HUXLEY
    assert claimed_winner("Both were physicists.", asked) is None


def test_each_side_takes_the_value_its_clause_states():
    asked = read_comparison("Which country has more people, Angola or Afghanistan?", [ANGOLA, AFGHANISTAN])
    assert claimed_values("Afghanistan has more people, about 32.5 million, against about 24.3 million in Angola.",
                          asked) == {"Afghanistan": (32_500_000,), "Angola": (24_300_000,)}
    assert claimed_values("Angola (24.3 million) has fewer people than Afghanistan (32.5 million).", asked) == {
        "Angola": (24_300_000,), "Afghanistan": (32_500_000,)}


def test_a_stated_number_must_be_one_of_the_two_values():
    asked = read_comparison("Which is larger, Angola or Afghanistan?", [ANGOLA, AFGHANISTAN])
    sides = (ComparedValue(ANGOLA, fact("Angola", "area_km2", "1246700", 1), (1246700.0,)),
             ComparedValue(AFGHANISTAN, fact("Afghanistan", "area_km2", "652864", 2), (652864.0,)))
    comparison = Comparison(asked, sides)
    assert stated_values_hold("Angola is larger, at 1,246,700 km2, against 652,864 km2 in 2015.", comparison)
    assert stated_values_hold("Angola covers about 1.25 million km2.", comparison)
    assert not stated_values_hold("Angola is larger, at 2,381,741 km2.", comparison)


def test_how_far_apart_two_dates_are_reads_each_sides_own_relation():
    lincoln, rand = entity("Abraham Lincoln", entity_id=5), entity("Ayn Rand", entity_id=6)
    asked = read_comparison("How many years after Abraham Lincoln's death was Ayn Rand born?", [lincoln, rand])
    assert asked.direction == "difference" and asked.unit == "years" and asked.side_hints == ("death", "born")
    facts = [fact("Abraham Lincoln", "birth_date", "1809-02-12", 1), fact("Abraham Lincoln", "death_date", "1865-04-15", 2),
             fact("Ayn Rand", "birth_date", "1905-02-02", 3), fact("Ayn Rand", "death_date", "1982-03-06", 4)]
    match = lambda words, predicate: word_match(words.replace("death", "death died"), predicate)  # noqa: E731
    comparison = compare(asked, facts, match)
    assert [s.fact.triple_id for s in comparison.sides] == [2, 3]
    assert comparison.differences() == {40, 39}  # by the calendar, and whole years elapsed
    assert describe(comparison) == ("Ayn Rand's birth date (1905-02-02) comes 40 years after "
                                    "Abraham Lincoln's death date (1865-04-15).")
    assert read_comparison("How many years after Abraham Lincoln was born?", [lincoln]) is None


def test_a_comparative_that_names_no_relation_measures_age_size_or_population():
    assert "area" in read_comparison("Which is bigger, Angola or Afghanistan?", [ANGOLA, AFGHANISTAN]).relation_hint
    assert "population" in read_comparison("Which country has more people, Angola or Afghanistan?",
                                           [ANGOLA, AFGHANISTAN]).relation_hint
    assert number_value("59th") is None  # a rank is no measure
    facts = [fact("Angola", "area_km2", "1246700", 1), fact("Angola", "area_rank", "23rd", 2),
             fact("Afghanistan", "area_km2", "652864", 3), fact("Afghanistan", "population_estimate", "32,564,342", 4)]
    asked = read_comparison("Which is bigger, Angola or Afghanistan?", [ANGOLA, AFGHANISTAN])
    assert compare(asked, facts, word_match).winner.option == ANGOLA
