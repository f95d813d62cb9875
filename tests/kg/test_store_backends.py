"""One store test suite, run on SQLite and on PostgreSQL (``store_settings``): the same writes give the same rows.

Batched writes of pages, passages, triples, aliases and redirects; a newer revision;
a rewrite; a title that moved; values longer than the declared lengths (which
PostgreSQL enforces and SQLite ignores); ids past 32 bits; lookups by title, alias and
redirect with one case handling; ``open_knowledge_base`` on an empty database; one
ingest at a time; and a real ingest of the sample dump whose ``kg stats`` agree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from kg.dump_reader import RawPage
from kg.errors import DatabaseUnreachable, IngestRunning
from kg.infobox import InfoboxFact
from kg.ingest import ingest_dump
from kg.parse_pool import RedirectItem, storable
from kg.passages import PassageDraft
from kg.queries import get_passage, resolve_entity
from kg.store import (
    TITLE_CHARS,
    Alias,
    Page,
    Passage,
    Redirect,
    Triple,
    ingest_lock,
    init_db,
    make_engine,
    open_knowledge_base,
    session_factory,
)
from kg.writer import BatchWritten, link_redirects, next_vector_id, write_batch
from kgqa.errors import KnowledgeBaseMissing
from kgqa.settings import PROJECT_ROOT, Settings
from tests.helpers.databases import free_port
from tests.helpers.kg_dumps import page_xml, write_dump
from tests.helpers.tiny_kb import article

ALABAMA = article(303, "Alabama", 1001, [
    ("", "Alabama is a state in the southeastern region of the United States."),
    ("Geography", "Its capital is Montgomery and its largest city is Birmingham."),
], facts=[InfoboxFact("capital", "capital", "Montgomery, Alabama", "Montgomery"),
          InfoboxFact("largest_city", "LargestCity", None, "Birmingham")],
    links={"Montgomery, Alabama": 1, "Gulf of Mexico": -1}, categories=["States of the United States"],
    aliases=[("Heart of Dixie", "bold")])
MONTGOMERY = article(1002, "Montgomery, Alabama", 2001, [("", "Montgomery is the capital city of Alabama.")],
                     links={"Alabama": 0}, aliases=[("Montgomery", "disambiguator")])
# MediaWiki titles differ by case after the first letter: two articles, both backends keep them apart.
RED_DWARF_SHOW = article(40, "Red Dwarf", 401, [("", "Red Dwarf is a British science fiction comedy.")])
RED_DWARF_STAR = article(41, "Red dwarf", 411, [("", "A red dwarf is a small and cool star.")])
# Two redirects that fold to one alias: the one with the lower page id names it, whatever the collation
# (byte order puts "ALABAMA STATE" first, an en-US collation "alabama state").
REDIRECTS = [RedirectItem(9001, "AL", "Alabama", 9101), RedirectItem(9003, "ALABAMA STATE", "Alabama", 9103),
             RedirectItem(9002, "alabama state", "Alabama", 9102),
             RedirectItem(9004, "Lost Continent", "Atlantis", 9104)]
BATCH = [ALABAMA, MONTGOMERY, RED_DWARF_SHOW, RED_DWARF_STAR, *REDIRECTS]


@pytest.fixture
def store(store_settings: Settings) -> Iterator:
    """Sessions on the backend's fresh database, tables created."""
    store_settings.index_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(store_settings.database_url)
    init_db(engine)
    yield session_factory(engine)
    engine.dispose()


def write(sessions, items, first_vector_id: int | None = None) -> BatchWritten:
    """One batch written, redirects linked and committed, as ingest does it."""
    with sessions() as session:
        start = next_vector_id(session) if first_vector_id is None else first_vector_id
        written = write_batch(session, items, start)
        link_redirects(session)
        session.commit()
    return written


def rows(sessions) -> dict[str, list[tuple]]:
    """Every stored row but autoincrement ids, sorted in Python (so no collation decides the order)."""
    with sessions() as session:
        return {
            "pages": sorted(session.execute(select(Page.page_id, Page.title, Page.rev_id, Page.url)).all()),
            "passages": sorted(session.execute(select(Passage.id, Passage.vector_id, Passage.page_id, Passage.section,
                                                      Passage.text, Passage.embedded)).all()),
            "triples": sorted(session.execute(select(Triple.subject_id, Triple.predicate, Triple.object_title,
                                                     Triple.object_literal, Triple.kind, Triple.field,
                                                     Triple.rev_id, Triple.passage_id)).all(), key=repr),
            "aliases": sorted(session.execute(select(Alias.norm, Alias.alias, Alias.entity_id, Alias.source)).all()),
            "redirects": sorted(session.execute(select(Redirect.page_id, Redirect.title, Redirect.norm,
                                                       Redirect.target, Redirect.rev_id)).all()),
        }


def test_batch_writes_pages_passages_triples_aliases_and_redirects(store):
    written = write(store, BATCH)
    assert (written.pages, written.redirects, written.passages, written.triples) == (4, 4, 5, 6)
    assert written.article_ids == [303, 1002, 40, 41] and written.removed_vectors == []
    stored = rows(store)
    assert stored["pages"] == [
        (40, "Red Dwarf", 401, "https://en.wikipedia.org/wiki/Red_Dwarf"),
        (41, "Red dwarf", 411, "https://en.wikipedia.org/wiki/Red_dwarf"),
        (303, "Alabama", 1001, "https://en.wikipedia.org/wiki/Alabama"),
        (1002, "Montgomery, Alabama", 2001, "https://en.wikipedia.org/wiki/Montgomery,_Alabama"),
    ]
    assert [(pid, vid, page, section, embedded) for pid, vid, page, section, _, embedded in stored["passages"]] == [
        ("1002:2001:0:0", 2, 1002, "", False), ("303:1001:0:0", 0, 303, "", False),
        ("303:1001:1:1", 1, 303, "Geography", False), ("40:401:0:0", 3, 40, "", False),
        ("41:411:0:0", 4, 41, "", False),
    ]
    assert stored["triples"] == sorted([
        (303, "capital", "Montgomery, Alabama", "", "infobox", "capital", 1001, None),
        (303, "largest_city", "", "Birmingham", "infobox", "LargestCity", 1001, None),
        (303, "links_to", "Montgomery, Alabama", "", "links_to", "", 1001, "303:1001:1:1"),
        (303, "links_to", "Gulf of Mexico", "", "links_to", "", 1001, None),
        (303, "in_category", "Category:States of the United States", "", "in_category", "", 1001, None),
        (1002, "links_to", "Alabama", "", "links_to", "", 2001, "1002:2001:0:0"),
    ], key=repr)
    assert stored["aliases"] == [
        ("al", "AL", 303, "redirect"),
        ("alabama", "Alabama", 303, "title"),
        ("alabama state", "alabama state", 303, "redirect"),
        ("heart of dixie", "Heart of Dixie", 303, "bold"),
        ("montgomery", "Montgomery", 1002, "disambiguator"),
        ("montgomery alabama", "Montgomery, Alabama", 1002, "title"),
        ("red dwarf", "Red Dwarf", 40, "title"),
        ("red dwarf", "Red dwarf", 41, "title"),
    ]
    assert stored["redirects"] == [
        (9001, "AL", "al", "Alabama", 9101), (9002, "alabama state", "alabama state", "Alabama", 9102),
        (9003, "ALABAMA STATE", "alabama state", "Alabama", 9103),
        (9004, "Lost Continent", "lost continent", "Atlantis", 9104),
    ]


@pytest.mark.parametrize("name, title", [
    ("Alabama", "Alabama"),  # exact title
    ("alabama", "Alabama"),  # the first letter is case-insensitive in MediaWiki titles
    ("AL", "Alabama"),  # a redirect
    ("ALABAMA STATE", "Alabama"),  # a redirect whose alias is spelled otherwise
    ("Alabama State", "Alabama"),  # no such title or redirect: the folded alias
    ("heart of DIXIE", "Alabama"),  # a bold name, folded
    ("Montgomery", "Montgomery, Alabama"),  # the title without its disambiguator
    ("Red Dwarf", "Red Dwarf"),  # exact titles differ by case, on every backend
    ("Red dwarf", "Red dwarf"),
    ("red dwarf", "Red dwarf"),  # "Red dwarf" once the first letter is upper-cased
    ("RED DWARF", "Red Dwarf"),  # only the folded alias: of two titles the lower entity id wins
])
def test_entity_lookup_by_title_alias_and_redirect(store, name, title):
    write(store, BATCH)
    with store() as session:
        entity = resolve_entity(session, name)
        assert entity is not None and entity.title == title


@pytest.mark.parametrize("name", ["Atlantis", "Lost Continent", "", "Red\x00Dwarf", "A" * (4 * TITLE_CHARS)])
def test_lookup_of_what_is_not_stored_finds_nothing(store, name):
    write(store, BATCH)
    with store() as session:
        assert resolve_entity(session, name) is None
        assert get_passage(session, "303:1001:0:0\x00") is None


def test_newer_revision_replaces_passages_facts_and_aliases(store):
    write(store, BATCH)
    newer = dataclasses.replace(
        ALABAMA, rev_id=1002, passages=[PassageDraft(0, 0, "", "Alabama is a state whose capital is Montgomery.")],
        facts=[InfoboxFact("capital", "capital", "Montgomery, Alabama", "Montgomery")],
        links={"Birmingham, Alabama": 0}, categories=[], aliases=[("Alabama", "title")])
    written = write(store, [newer])
    assert sorted(written.removed_vectors) == [0, 1] and written.article_ids == [303]
    stored = rows(store)
    assert (303, "Alabama", 1002, "https://en.wikipedia.org/wiki/Alabama") in stored["pages"]
    assert [(pid, vid) for pid, vid, page, *_ in stored["passages"] if page == 303] == [("303:1002:0:0", 5)]
    assert sorted((p, o, k, r) for s, p, o, _, k, _, r, _ in stored["triples"] if s == 303) == [
        ("capital", "Montgomery, Alabama", "infobox", 1002), ("links_to", "Birmingham, Alabama", "links_to", 1002)]
    # the bold name went with the old revision; the redirects are linked again
    assert [(norm, source) for norm, _, entity, source in stored["aliases"] if entity == 303] == [
        ("al", "redirect"), ("alabama", "title"), ("alabama state", "redirect")]


def test_rewriting_the_same_batch_leaves_the_same_rows(store):
    write(store, BATCH)
    before = rows(store)
    written = write(store, BATCH)
    assert sorted(written.removed_vectors) == [0, 1, 2, 3, 4]
    after = rows(store)
    # the same passages under fresh vector ids (an index never reuses one), everything else identical
    assert [(pid, vid + 5, *rest) for pid, vid, *rest in before["passages"]] == after["passages"]
    assert {k: v for k, v in before.items() if k != "passages"} == {k: v for k, v in after.items() if k != "passages"}


def test_moved_title_and_article_turned_redirect(store):
    write(store, BATCH)
    moved = dataclasses.replace(RED_DWARF_SHOW, page_id=42, rev_id=421)  # the old page 40 is gone from the wiki
    written = write(store, [moved, RedirectItem(1002, "Montgomery, Alabama", "Montgomery", 2002),
                            dataclasses.replace(RED_DWARF_STAR, rev_id=412),
                            dataclasses.replace(RED_DWARF_STAR, rev_id=413)])  # the last of a page id wins
    assert sorted(written.removed_vectors) == [2, 3, 4]
    stored = rows(store)
    assert [(page_id, title, rev) for page_id, title, rev, _ in stored["pages"]] == [
        (41, "Red dwarf", 413), (42, "Red Dwarf", 421), (303, "Alabama", 1001)]
    assert (1002, "Montgomery, Alabama", "montgomery alabama", "Montgomery", 2002) in stored["redirects"]
    assert not [a for a in stored["aliases"] if a[2] in (40, 1002)]


def test_a_surname_redirect_takes_the_surname_alias_place_and_gives_it_back_alike(store):
    from kg.removal import remove_in_sql

    lincoln = article(307, "Abraham Lincoln", 3071, [("", "Abraham Lincoln was the 16th president.")],
                      categories=["1809 births"], aliases=[("Lincoln", "surname")])
    mary = article(308, "Mary Todd Lincoln", 3081, [("", "Mary Todd Lincoln was the first lady.")],
                   facts=[InfoboxFact("birth_date", "birth_date", None, "December 13, 1818")],
                   aliases=[("Lincoln", "surname")])
    write(store, [lincoln, mary, RedirectItem(9010, "Lincoln", "Abraham Lincoln", 9110)])

    def lincolns() -> list[tuple]:
        return [(entity, source) for norm, _, entity, source in rows(store)["aliases"] if norm == "lincoln"]

    assert lincolns() == [(307, "redirect"), (308, "surname")]
    with store() as session:
        assert resolve_entity(session, "lincoln").title == "Abraham Lincoln"  # the redirect, over the surname
        remove_in_sql(session, [], [9010])
        session.commit()
    assert lincolns() == [(307, "surname"), (308, "surname")]
    with store() as session:
        assert resolve_entity(session, "lincoln") is None  # a surname two people share


def test_values_longer_than_the_declared_lengths_are_kept_out_alike(store):
    """PostgreSQL refuses a value longer than its VARCHAR, SQLite stores it: the writer keeps both the same."""
    too_long = "X" * (TITLE_CHARS + 1)
    section = " > ".join(["A very long heading"] * 80)
    page = article(77, "Long values", 1, [(section, "Some text.")],
                   facts=[InfoboxFact("p" * 200, "f" * 200, too_long, "the literal"),
                          InfoboxFact("rank", "rank", too_long, "")],
                   links={too_long: 0, "Fine": 0}, categories=[too_long],
                   aliases=[(too_long, "bold"), ("\ufdfa" * 40, "bold"), ("Long vals", "bold")])
    redirects = [RedirectItem(78, "Too long target", too_long, 2), RedirectItem(79, "Long value", "Long values", 3)]
    written = write(store, [page, *redirects])
    assert (written.pages, written.redirects, written.passages, written.triples) == (1, 1, 1, 3)
    stored = rows(store)
    assert stored["passages"][0][3] == section  # section paths are unbounded text
    assert sorted((p, o, lit, f) for _, p, o, lit, _, f, _, _ in stored["triples"]) == [
        ("links_to", "Fine", "", ""), ("p" * 128, "", "the literal", "f" * 128), ("rank", "", too_long, "rank")]
    # the NFKD form of U+FDFA is 18 characters: 40 of them fold to a name longer than any title
    assert [(norm, source) for norm, _, _, source in stored["aliases"]] == [
        ("long vals", "bold"), ("long value", "redirect"), ("long values", "title")]
    assert [page_id for page_id, *_ in stored["redirects"]] == [79]


def test_pages_the_store_cannot_hold_are_not_fed():
    def raw(title: str, page_id: int = 1, rev_id: int = 1) -> RawPage:
        return RawPage(ns=0, page_id=page_id, title=title, redirect=None, rev_id=rev_id, timestamp="", text="")

    assert storable(raw("T" * TITLE_CHARS)) and storable(raw("Alabama", 2**40, 2**62))
    assert not storable(raw("T" * (TITLE_CHARS + 1)))
    assert not storable(raw("Alabama", 2**63)) and not storable(raw("Alabama", 1, -1))


def test_ids_past_32_bits(store):
    """Revision ids near 2^31 and int64 FAISS ids: BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite."""
    page = article(3_000_000_000, "Big ids", 4_000_000_000, [("", "One passage."), ("", "Another passage.")],
                   links={"Alabama": 1})
    write(store, [page], first_vector_id=5_000_000_000)
    with store() as session:
        assert next_vector_id(session) == 5_000_000_002
    stored = rows(store)
    assert stored["pages"] == [(3_000_000_000, "Big ids", 4_000_000_000, "https://en.wikipedia.org/wiki/Big_ids")]
    assert [(pid, vid) for pid, vid, *_ in stored["passages"]] == [
        ("3000000000:4000000000:0:0", 5_000_000_000), ("3000000000:4000000000:1:1", 5_000_000_001)]


def test_open_knowledge_base_on_an_empty_database(store_settings):
    with pytest.raises(KnowledgeBaseMissing, match="run `kgqa ingest <dump>` first"):
        open_knowledge_base(store_settings)
    if store_settings.database_url.startswith("sqlite"):
        assert not store_settings.data_dir.exists()  # looking never creates a SQLite file
    store_settings.data_dir.mkdir(parents=True)
    engine = make_engine(store_settings.database_url)
    init_db(engine)
    engine.dispose()
    with pytest.raises(KnowledgeBaseMissing):
        open_knowledge_base(store_settings, require_passages=True)  # tables, but not a single passage
    open_knowledge_base(store_settings).dispose()  # the tables are enough to browse


def _tiny_dump(settings: Settings):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return write_dump(settings.data_dir / "tiny.xml", [page_xml(1, "Testland", 10, "'''Testland''' is a country.")])


def test_an_unreachable_database_is_one_line(tmp_settings):
    """A server that is not there (and a bare postgresql:// URL, which gets psycopg): one line, not a traceback."""
    settings = tmp_settings.with_overrides(database_url=f"postgresql://kgqa:secret@127.0.0.1:{free_port()}/kb")
    for attempt in (lambda: open_knowledge_base(settings), lambda: ingest_dump(settings, _tiny_dump(settings))):
        with pytest.raises(DatabaseUnreachable) as caught:
            attempt()
        message = str(caught.value)
        assert message.startswith("cannot open the database postgresql+psycopg://kgqa:***@127.0.0.1:")
        assert "\n" not in message and "secret" not in message


HOLD_THE_LOCK = """
import sys
from kg.store import ingest_lock, make_engine
with ingest_lock(make_engine(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def ingest_lock_held_elsewhere(settings: Settings) -> Iterator[subprocess.Popen]:
    """Another process holding the database's ingest lock until its stdin closes."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, settings.database_url], cwd=PROJECT_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None:
            holder.stdin.close()
        holder.wait(timeout=30)


def test_a_second_ingest_is_refused_in_one_line_while_one_runs(store_settings):
    from app.cli import main

    dump = _tiny_dump(store_settings)
    store_settings.index_dir.mkdir(parents=True, exist_ok=True)
    with ingest_lock_held_elsewhere(store_settings):
        with pytest.raises(IngestRunning, match="another `kgqa ingest` is writing to"):
            ingest_dump(store_settings, dump, progress=False, workers=1)
        result = CliRunner().invoke(main, ["ingest", str(dump), "--no-progress", "--workers", "1"],
                                    obj={"settings": store_settings})
        assert result.exit_code == 2
        assert result.stderr.startswith("kgqa: another `kgqa ingest` is writing to ")
        assert result.stderr.strip().count("\n") == 0
    with pytest.raises(KnowledgeBaseMissing):  # the refused runs wrote nothing, not even a run record
        open_knowledge_base(store_settings)
    engine = make_engine(store_settings.database_url)
    try:
        with ingest_lock(engine):  # the other run finished: the next one may go
            pass
    finally:
        engine.dispose()


def test_a_killed_ingest_leaves_no_stale_lock(store_settings):
    store_settings.index_dir.mkdir(parents=True, exist_ok=True)
    with ingest_lock_held_elsewhere(store_settings) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    engine = make_engine(store_settings.database_url)
    try:
        with ingest_lock(engine):
            pass
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sample_ingest_gives_the_same_knowledge_base_on_both_backends(tmp_path, sample_dump, lm_path,
                                                                       project_settings, postgres_server):
    """``--limit 15`` pages of the real sample dump with the real embedder; ``kg stats`` and ``kg show`` agree."""
    from app.cli import main
    from models.embedding.embedder import Embedder

    base = Settings(data_dir=tmp_path / "sqlite", lm_path=lm_path, models_dir=project_settings.models_dir)
    backends = {"sqlite": base,
                "postgresql": base.with_overrides(data_dir=tmp_path / "postgresql",
                                                  database_url=postgres_server.create_database())}
    embedder = Embedder(base)
    embedder.warm_up()
    runner = CliRunner()
    stats, shown = {}, {}
    for backend, settings in backends.items():
        summary = ingest_dump(settings, sample_dump, limit=15, progress=False, workers=2, embedder=embedder)
        assert summary.pages > 0 and summary.redirects > 0 and summary.passages > 0
        again = ingest_dump(settings, sample_dump, limit=15, progress=False, workers=1, embedder=embedder)
        assert (again.pages, again.redirects, again.passages, again.triples, again.unchanged) == (0, 0, 0, 0, 15)
        result = runner.invoke(main, ["kg", "stats", "--json"], obj={"settings": settings})
        assert result.exit_code == 0, result.output
        stats[backend] = json.loads(result.output)
        stats[backend].pop("last_run")  # names the dump and the time
        result = runner.invoke(main, ["kg", "show", "Anarchism", "--json"], obj={"settings": settings})
        assert result.exit_code == 0, result.output
        shown[backend] = json.loads(result.output)
    assert stats["sqlite"] == stats["postgresql"]
    assert stats["sqlite"]["passages"] == stats["sqlite"]["vectors"] == stats["sqlite"]["embedded_passages"]
    assert shown["sqlite"] == shown["postgresql"]
