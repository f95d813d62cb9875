"""The per-page SQL writer on a temporary SQLite store: upserts with provenance, revisions, redirects as aliases."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from kg.infobox import InfoboxFact
from kg.passages import PassageDraft
from kg.store import Alias, Entity, Page, Passage, Redirect, Triple
from kg.removal import remove_in_sql
from kg.writer import link_redirects, next_vector_id, write_redirect
from tests.helpers.tiny_kb import (
    ALABAMA, ANIMAL_FARM, EINSTEIN, ORWELL, PAGES, REDIRECTS, RedirectPage, open_store, tiny_settings, write_article,
    write_tiny_kb,
)


@pytest.fixture
def sessions(tmp_path):
    factory = open_store(tiny_settings(tmp_path / "data"))
    yield factory
    factory.kw["bind"].dispose()


def write_redirects(sessions, *redirects: RedirectPage) -> list[int]:
    """Redirect pages written and committed as one batch; returns the vector ids of the articles they replaced."""
    removed: list[int] = []
    with sessions() as session:
        for item in redirects:
            removed += write_redirect(session, item.page_id, item.title, item.target, item.rev_id)
        session.commit()
    return removed


def link(sessions) -> int:
    """What ingest does at the end of a run: redirects to ingested articles become their aliases."""
    with sessions() as session:
        linked = link_redirects(session)
        session.commit()
    return linked


def stored(sessions) -> dict:
    """Everything the writer owns, without autoincrement ids, so two states compare by content."""
    with sessions() as session:
        return {
            "pages": sorted(session.execute(select(Page.page_id, Page.title, Page.rev_id, Page.url)).all()),
            "entities": sorted(session.execute(select(Entity.entity_id, Entity.title)).all()),
            "aliases": sorted(session.execute(select(Alias.norm, Alias.alias, Alias.entity_id, Alias.source)).all()),
            "passages": sorted(session.execute(select(Passage.id, Passage.page_id, Passage.rev_id, Passage.section,
                                                      Passage.ordinal, Passage.text)).all()),
            "triples": sorted(session.execute(select(
                Triple.subject_id, Triple.predicate, Triple.object_title, Triple.object_literal, Triple.kind,
                Triple.page_id, Triple.rev_id, Triple.field, Triple.passage_id)).all(), key=repr),
            "redirects": sorted(session.execute(select(Redirect.page_id, Redirect.title, Redirect.target)).all()),
        }


def test_a_page_is_stored_with_its_entity_aliases_passages_and_facts_with_provenance(sessions):
    removed, written = write_article(sessions, ALABAMA, first_vector_id=10)
    assert removed == [] and written == 3
    with sessions() as session:
        page = session.get(Page, 303)
        assert (page.title, page.rev_id, page.url) == ("Alabama", 1001, "https://en.wikipedia.org/wiki/Alabama")
        assert session.get(Entity, 303).title == "Alabama"
        assert session.execute(select(Alias.norm, Alias.alias, Alias.source)).all() == [("alabama", "Alabama", "title")]
        passages = session.scalars(select(Passage).order_by(Passage.ordinal)).all()
        assert [(p.id, p.vector_id, p.section, p.embedded) for p in passages] == [
            ("303:1001:0:0", 10, "", False), ("303:1001:1:1", 11, "Geography", False),
            ("303:1001:2:2", 12, "History", False)]
        assert passages[1].text.startswith("Alabama's capital is Montgomery")
        triples = session.scalars(select(Triple)).all()
    assert all((t.subject_id, t.page_id, t.rev_id) == (303, 303, 1001) for t in triples)
    infobox = {(t.predicate, t.field, t.object_title, t.object_literal) for t in triples if t.kind == "infobox"}
    assert infobox == {("capital", "capital", "Montgomery, Alabama", ""),
                       ("largest_city", "LargestCity", "", "Birmingham"),
                       ("admittance_date", "AdmittanceDate", "", "December 14, 1819")}
    links = {t.object_title: t.passage_id for t in triples if t.kind == "links_to"}
    # a link sits in the passage holding its label; a label lost in parsing (ordinal -1) has none
    assert links == {"Montgomery, Alabama": "303:1001:1:1", "Gulf of Mexico": "303:1001:1:1",
                     "Huntsville, Alabama": None}
    assert [(t.predicate, t.object_title) for t in triples if t.kind == "in_category"] == [
        ("in_category", "Category:States of the United States")]


def test_aliases_are_folded_deduplicated_and_empty_ones_dropped(sessions):
    page = dataclasses.replace(ORWELL, aliases=[("George Orwell", "title"), ("george  orwell!", "bold"),
                                                ("Eric Arthur Blair", "bold"), ("!!", "bold")])
    write_article(sessions, page)
    with sessions() as session:
        rows = sorted(session.execute(select(Alias.norm, Alias.alias, Alias.source)).all())
    assert rows == [("eric arthur blair", "Eric Arthur Blair", "bold"), ("george orwell", "George Orwell", "title")]


def test_next_vector_id_follows_the_store_and_the_index_floor(sessions):
    with sessions() as session:
        assert next_vector_id(session) == 0
        assert next_vector_id(session, floor=7) == 7
    write_article(sessions, ALABAMA, first_vector_id=4)
    with sessions() as session:
        assert next_vector_id(session) == 7  # one past the largest stored id, 6
        assert next_vector_id(session, floor=20) == 20  # ids a removed page used in the index are not reused


def test_a_newer_revision_replaces_passages_facts_and_aliases(sessions):
    write_article(sessions, ALABAMA, first_vector_id=0)
    newer = dataclasses.replace(
        ALABAMA, rev_id=1002, timestamp="2021-06-01T00:00:00Z",
        passages=[PassageDraft(0, 0, "", "Alabama is a state in the Deep South of the United States, "
                                         "with Montgomery as its capital since 1846.")],
        facts=[InfoboxFact("capital", "capital", "Montgomery, Alabama", "Montgomery"),
               InfoboxFact("population", "population", None, "5,024,279")],
        links={"Montgomery, Alabama": 0}, categories=[],
        aliases=[("Alabama", "title"), ("Yellowhammer State", "bold")])
    removed, written = write_article(sessions, newer)
    assert (sorted(removed), written) == ([0, 1, 2], 1)
    state = stored(sessions)
    assert state["pages"] == [(303, "Alabama", 1002, "https://en.wikipedia.org/wiki/Alabama")]
    assert [(pid, rev) for pid, _, rev, *_ in state["passages"]] == [("303:1002:0:0", 1002)]
    with sessions() as session:
        assert session.get(Passage, "303:1002:0:0").vector_id == 3  # after every id the store held
    assert {(predicate, obj or literal, kind, rev, passage) for _, predicate, obj, literal, kind, _, rev, _, passage
            in state["triples"]} == {("capital", "Montgomery, Alabama", "infobox", 1002, None),
                                     ("population", "5,024,279", "infobox", 1002, None),
                                     ("links_to", "Montgomery, Alabama", "links_to", 1002, "303:1002:0:0")}
    assert [alias for _, alias, _, _ in state["aliases"]] == ["Alabama", "Yellowhammer State"]


def test_rewriting_the_same_revision_leaves_the_same_content_and_hands_back_the_old_vectors(sessions):
    write_tiny_kb(sessions)
    before = stored(sessions)
    with sessions() as session:
        old_vectors = sorted(session.scalars(select(Passage.vector_id).where(Passage.page_id == ANIMAL_FARM.page_id)))
    removed, written = write_article(sessions, ANIMAL_FARM)
    assert sorted(removed) == old_vectors and written == len(ANIMAL_FARM.passages)
    # the page's redirect aliases go with it, and come back when ingest links redirects at the end of a run
    assert ("animalfarm", "AnimalFarm", ANIMAL_FARM.page_id, "redirect") not in stored(sessions)["aliases"]
    assert link(sessions) == 1
    assert stored(sessions) == before  # passage ids are stable per revision; nothing else changed


def test_a_title_moved_to_another_page_id_replaces_the_old_page(sessions):
    write_article(sessions, ANIMAL_FARM, first_vector_id=0)
    moved = dataclasses.replace(ANIMAL_FARM, page_id=777, rev_id=3002)
    removed, _ = write_article(sessions, moved)
    assert sorted(removed) == [0, 1]
    state = stored(sessions)
    assert state["pages"] == [(777, "Animal Farm", 3002, "https://en.wikipedia.org/wiki/Animal_Farm")]
    assert {page_id for _, page_id, *_ in state["passages"]} == {777}
    assert {subject for subject, *_ in state["triples"]} == {777}


def test_redirects_become_aliases_of_ingested_targets_only_and_linking_twice_adds_nothing(sessions):
    write_tiny_kb(sessions, redirects=())
    assert write_redirects(sessions, *REDIRECTS) == []
    assert link(sessions) == 3  # "Lost Continent" points at a page that was not ingested
    assert link(sessions) == 0
    with sessions() as session:
        rows = set(session.execute(select(Alias.alias, Entity.title).join(Entity, Entity.entity_id == Alias.entity_id)
                                   .where(Alias.source == "redirect")).all())
        assert session.scalar(select(Redirect.target).where(Redirect.title == "Lost Continent")) == "Atlantis"
    assert rows == {("AnimalFarm", "Animal Farm"), ("Eric Blair", "George Orwell"), ("Einstein", "Albert Einstein")}


def test_a_retargeted_redirect_moves_its_alias(sessions):
    write_tiny_kb(sessions)
    write_redirects(sessions, RedirectPage(9003, "Einstein", "George Orwell", 9200))
    link(sessions)
    with sessions() as session:
        targets = session.execute(select(Entity.title).join(Alias, Alias.entity_id == Entity.entity_id)
                                  .where(Alias.alias == "Einstein")).scalars().all()
        assert targets == ["George Orwell"]
        assert session.get(Redirect, 9003).rev_id == 9200


def test_an_article_that_became_a_redirect_is_removed_and_its_vectors_handed_back(sessions):
    write_tiny_kb(sessions)
    with sessions() as session:
        vectors = sorted(session.scalars(select(Passage.vector_id).where(Passage.page_id == ANIMAL_FARM.page_id)))
    removed = write_redirects(sessions, RedirectPage(ANIMAL_FARM.page_id, "Animal Farm", "George Orwell", 3100))
    link(sessions)
    assert sorted(removed) == vectors
    state = stored(sessions)
    assert ANIMAL_FARM.page_id not in {page_id for page_id, *_ in state["pages"]}
    assert ANIMAL_FARM.page_id not in {page_id for _, page_id, *_ in state["passages"]}
    assert ANIMAL_FARM.page_id not in {subject for subject, *_ in state["triples"]}
    assert ("animal farm", "Animal Farm", ORWELL.page_id, "redirect") in state["aliases"]
    assert len(state["pages"]) == len(PAGES) - 1


PERSON = dataclasses.replace(  # Albert Einstein as the parser writes a person: born, with a surname alias
    EINSTEIN, facts=[*EINSTEIN.facts, InfoboxFact("birth_date", "birth_date", None, "14 March 1879")],
    aliases=[*EINSTEIN.aliases, ("Einstein", "surname")])


def einstein_aliases(sessions) -> list[tuple]:
    with sessions() as session:
        return sorted(session.execute(select(Alias.alias, Alias.source, Entity.title)
                                      .join(Entity, Entity.entity_id == Alias.entity_id)
                                      .where(Alias.norm == "einstein")).all())


def test_a_surname_alias_is_stored_and_goes_with_its_page(sessions):
    write_tiny_kb(sessions, pages=[ALABAMA, PERSON], redirects=())
    assert einstein_aliases(sessions) == [("Einstein", "surname", "Albert Einstein")]
    with sessions() as session:
        remove_in_sql(session, [PERSON.page_id], [])
        session.commit()
    assert einstein_aliases(sessions) == []


def test_a_redirect_of_a_surname_takes_the_surname_alias_place_and_gives_it_back_when_it_goes(sessions):
    write_tiny_kb(sessions, pages=[ALABAMA, ORWELL, PERSON])  # "Einstein" redirects to Albert Einstein
    assert einstein_aliases(sessions) == [("Einstein", "redirect", "Albert Einstein")]
    write_article(sessions, dataclasses.replace(PERSON, rev_id=PERSON.rev_id + 1))  # a new revision: surname again
    link(sessions)
    assert einstein_aliases(sessions) == [("Einstein", "redirect", "Albert Einstein")]
    write_redirects(sessions, RedirectPage(9003, "Einstein", "George Orwell", 9200))  # retargeted
    link(sessions)
    assert einstein_aliases(sessions) == [("Einstein", "redirect", "George Orwell"),
                                          ("Einstein", "surname", "Albert Einstein")]
    write_redirects(sessions, RedirectPage(9003, "Einstein", "Albert Einstein", 9300))
    link(sessions)
    assert einstein_aliases(sessions) == [("Einstein", "redirect", "Albert Einstein")]
    with sessions() as session:  # the redirect page deleted (a sync, or `kgqa kg delete Einstein`)
        removed = remove_in_sql(session, [], [9003])
        session.commit()
    assert removed.aliases == 1 and removed.redirects == 1
    assert einstein_aliases(sessions) == [("Einstein", "surname", "Albert Einstein")]


def test_a_redirect_alias_of_no_person_gives_nothing_back(sessions):
    write_tiny_kb(sessions, pages=[ALABAMA, ORWELL, EINSTEIN])  # no date of birth: not known as a person
    with sessions() as session:
        remove_in_sql(session, [], [9003])
        session.commit()
    assert einstein_aliases(sessions) == []
