import re

import pytest

from retrieval.linking import AliasEntry, EntityLinker, by_surname, surname_words


def fold(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


ROWS = [
    ("Animal Farm", "Animal Farm", 1, "Animal Farm", "title"),
    ("Animal", "Animal", 2, "Animal", "title"),
    ("Farm", "Farm", 3, "Farm", "title"),
    ("Alabama", "Alabama", 4, "Alabama", "title"),
    ("AL (state)", "AL (state)", 4, "Alabama", "redirect"),
    ("A", "A", 5, "A", "title"),
    ("Einstein", "Einstein", 6, "Albert Einstein", "redirect"),
    ("Mercury", "Mercury", 7, "Mercury (planet)", "disambiguator"),
    ("Mercury", "Mercury", 8, "Mercury (element)", "disambiguator"),
    ("McDonald's", "McDonald's", 9, "McDonald's", "title"),
    ("McDonald", "McDonald", 10, "McDonald", "title"),
]


ENTRIES = [AliasEntry(fold(a), a, eid, title, source) for a, _, eid, title, source in ROWS]


def linker(asked: list | None = None) -> EntityLinker:
    """A linker over ``ENTRIES``; each lookup's names are appended to ``asked``."""

    def lookup(norms):
        if asked is not None:
            asked.append(set(norms))
        return [entry for entry in ENTRIES if entry.norm in norms]

    popularity = {8: 5.0, 7: 1.0}
    return EntityLinker(lookup, fold, lambda t: "https://en.wikipedia.org/wiki/" + t.replace(" ", "_"),
                        popularity=lambda entry: popularity.get(entry.entity_id, 0.0))


def test_longest_match_wins_over_its_parts():
    linked = linker().link("Who wrote Animal Farm?")
    assert [e.title for e in linked] == ["Animal Farm"]
    assert linked[0].mention == "Animal Farm"


def test_case_and_punctuation_are_folded_and_redirects_link():
    linked = linker().link("what did einstein say about al (state)")
    assert [e.title for e in linked] == ["Albert Einstein", "Alabama"]
    assert linked[0].alias == "Einstein"
    assert linked[1].url.endswith("/Alabama")


def test_a_possessive_names_its_owner_unless_the_name_itself_ends_so():
    assert [(e.title, e.mention) for e in linker().link("What is Alabama's capital?")] == [("Alabama", "Alabama")]
    assert [e.title for e in linker().link("Whose coastline is longer, Alabama’s or Animal Farm's?")] == [
        "Alabama", "Animal Farm"]
    assert [e.title for e in linker().link("Who founded McDonald's?")] == ["McDonald's"]


def test_stopwords_and_lowercase_common_words_in_a_cased_question_are_not_mentions():
    assert [e.title for e in linker().link("Is a farm in Alabama?")] == ["Alabama"]


def test_a_lone_lowercase_word_links_where_nothing_capitalised_does():
    asked: list[set[str]] = []
    assert [e.title for e in linker(asked).link("What is a farm?")] == ["Farm"]
    assert len(asked) == 1  # the second reading of the spans asks the alias table nothing new
    # with a capitalised subject the common word stays a word
    assert [e.title for e in linker().link("What does a farm in Alabama grow?")] == ["Alabama"]


def test_ambiguous_alias_prefers_the_more_linked_entity_and_each_entity_once():
    linked = linker().link("Mercury and Mercury again")
    assert [e.entity_id for e in linked] == [8]


def test_a_question_is_one_lookup_of_its_spans_and_a_question_without_words_none():
    asked: list[set[str]] = []
    assert [e.title for e in linker(asked).link("Who wrote Animal Farm?")] == ["Animal Farm"]
    assert asked == [{"who", "who wrote", "who wrote animal", "who wrote animal farm", "wrote", "wrote animal",
                      "wrote animal farm", "animal", "animal farm", "farm"}]
    assert linker(asked).link("?!") == [] and len(asked) == 1


RETRIEVED = ["Arthur Schopenhauer", "Abraham Lincoln", "An American in Paris", "Albert Einstein", "Alabama"]


def test_a_lone_surname_names_the_one_retrieved_article_it_ends():
    assert by_surname("Who died first, Schopenhauer or Lincoln?", [], RETRIEVED) == [
        ("Schopenhauer", "Arthur Schopenhauer"), ("Lincoln", "Abraham Lincoln")]
    assert by_surname("Was The World as Will Schopenhauer's?", [], RETRIEVED) == [("Schopenhauer", "Arthur Schopenhauer")]
    # a word a linked mention covers is linked already; "Paris" ends a title that is no name
    assert by_surname("Did Albert Einstein ever visit Paris?", ["Albert Einstein"], RETRIEVED) == []
    assert by_surname("Who died first, Einstein or Lincoln?", ["Einstein"], RETRIEVED) == [("Lincoln", "Abraham Lincoln")]


def test_a_surname_that_ends_two_titles_or_none_names_nothing():
    titles = [*RETRIEVED, "Mary Todd Lincoln", "Lincoln (car)"]
    assert by_surname("Who died first, Schopenhauer or Lincoln?", [], titles) == [("Schopenhauer", "Arthur Schopenhauer")]
    assert by_surname("Who was born first, Kant or Hegel?", [], RETRIEVED) == []
    assert by_surname("When did Lincoln die?", [], ["Lincoln, Nebraska"]) == []


def test_a_word_within_a_longer_capitalised_name_is_no_surname():
    titles = [*RETRIEVED, "American Revolutionary War"]
    assert surname_words("How many soldiers did Alabama send to the Civil War?", ["Alabama"]) == []
    assert by_surname("How many soldiers did Alabama send to the Civil War?", ["Alabama"], titles) == []
    assert surname_words("Was Lincoln born before Schopenhauer's The World as Will?", []) == \
        ["Lincoln", "Schopenhauer", "World"]  # a stopword ("Will" too) or a possessive joins no name


PEOPLE = [  # (alias, entity id, title, source): people and their surnames beside a city, a novel and a farm
    ("Arthur Schopenhauer", 20, "Arthur Schopenhauer", "title"), ("Schopenhauer", 20, "Arthur Schopenhauer", "surname"),
    ("Abraham Lincoln", 21, "Abraham Lincoln", "title"), ("Lincoln", 21, "Abraham Lincoln", "surname"),
    ("Albert Sidney Johnston", 22, "Albert Sidney Johnston", "title"), ("Johnston", 22, "Albert Sidney Johnston", "surname"),
    ("Aldous Huxley", 23, "Aldous Huxley", "title"), ("Huxley", 23, "Aldous Huxley", "surname"),
    ("Thomas Henry Huxley", 24, "Thomas Henry Huxley", "title"), ("Huxley", 24, "Thomas Henry Huxley", "surname"),
    ("Jane Farm", 25, "Jane Farm", "title"), ("Farm", 25, "Jane Farm", "surname"),
    ("Jane Mercury", 26, "Jane Mercury", "title"), ("Mercury", 26, "Jane Mercury", "surname"),
]


def people_linker(rows=()) -> EntityLinker:
    """A linker over ``ENTRIES`` with ``PEOPLE`` and ``rows`` (alias, entity id, title, source) added."""
    entries = ENTRIES + [AliasEntry(fold(alias), alias, eid, title, source) for alias, eid, title, source in
                         [*PEOPLE, *rows]]
    return EntityLinker(lambda norms: [entry for entry in entries if entry.norm in norms], fold, lambda t: t)


def test_a_surname_alone_links_its_one_person():
    linked = people_linker().link("Who died first, Schopenhauer or Lincoln?")
    assert [(e.title, e.mention, e.alias) for e in linked] == [
        ("Arthur Schopenhauer", "Schopenhauer", "Schopenhauer"), ("Abraham Lincoln", "Lincoln", "Lincoln")]
    assert [e.title for e in people_linker().link("Lincoln was born where?")] == ["Abraham Lincoln"]


def test_any_other_alias_of_the_name_wins_over_a_surname():
    # "Farm" is an article's title, "Mercury" two pages' title without disambiguator, "Lincoln" a city's redirect
    assert [e.title for e in people_linker().link("Who bought the Farm?")] == ["Farm"]
    assert [e.title for e in people_linker().link("Is Mercury hot?")] == ["Mercury (planet)"]  # no popularity given
    city = [("Lincoln", 30, "Lincoln, Nebraska", "redirect")]
    assert [e.title for e in people_linker(city).link("When did Lincoln die?")] == ["Lincoln, Nebraska"]
    assert [e.title for e in people_linker().link("Who wrote Animal Farm?")] == ["Animal Farm"]


def test_a_surname_two_people_share_links_neither():
    assert people_linker().link("When was Huxley born?") == []
    assert [e.title for e in people_linker().link("Was Huxley older than Schopenhauer?")] == ["Arthur Schopenhauer"]


def test_a_surname_within_a_longer_name_or_in_lower_case_links_nothing():
    assert [e.title for e in people_linker().link("Where did Albert Sidney Johnston die?")] == ["Albert Sidney Johnston"]
    assert people_linker().link("Where did Andrew Johnston die?") == []
    assert people_linker().link("Did Johnston Street flood?") == []
    assert people_linker().link("who died first, schopenhauer or lincoln?") == []


@pytest.mark.slow
def test_surnames_link_the_people_of_the_sample_knowledge_base(sample_kb):
    from sqlalchemy import select

    from kg.aliases import normalize_alias
    from kg.store import Alias, Entity, open_knowledge_base, session_factory, wikipedia_url
    from retrieval.linking import sql_alias_lookup

    engine = open_knowledge_base(sample_kb)
    try:
        sessions = session_factory(engine)
        with sessions() as session:
            surnames = dict(session.execute(select(Entity.title, Alias.alias)
                                            .join(Entity, Entity.entity_id == Alias.entity_id)
                                            .where(Alias.source == "surname")).all())
        linker = EntityLinker(sql_alias_lookup(sessions), normalize_alias, wikipedia_url)
        linked = [(e.title, e.mention) for e in linker.link("Who died first, Schopenhauer or Lincoln?")]
        novel = [e.title for e in linker.link("Who wrote Animal Farm?")]
    finally:
        engine.dispose()
    assert surnames, f"no surname alias in {sample_kb.data_dir}: a knowledge base ingested before them (re-ingest)"
    # every person of the sample with a name of two words or more, and no other page (Aristotle is one word)
    assert surnames == {"Abraham Lincoln": "Lincoln", "Alain Connes": "Connes", "Albert Einstein": "Einstein",
                        "Albert Sidney Johnston": "Johnston", "Aldous Huxley": "Huxley", "Allan Dwan": "Dwan",
                        "Andre Agassi": "Agassi", "Andrei Tarkovsky": "Tarkovsky",
                        "Arthur Schopenhauer": "Schopenhauer", "Ayn Rand": "Rand"}
    assert linked == [("Arthur Schopenhauer", "Schopenhauer"), ("Abraham Lincoln", "Lincoln")]
    assert novel == ["Animal Farm"]
