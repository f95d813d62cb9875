"""`kgqa ingest --sync` on a copy of the sample knowledge base, with a copy of its dump that lost 10 articles and in
which 3 others became redirects: nothing of them is left, everything else is untouched to the byte and the bit,
and ten SIGKILLs during the sync, each followed by a rerun, end where an uninterrupted sync ends.
"""

from __future__ import annotations

import bz2
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from kg import index_files
from kg.link_graph import link_graph_dir, open_link_graph
from kg.sparse_index import open_sparse_index, sparse_dir
from kg.stats import kb_stats
from kg.store import Page, make_engine, session_factory
from kgqa.settings import Settings
from tests.kg.test_ingest_recovery import KilledRuns, _kb_rows, _vectors_by_passage
from tests.kg.test_sync import _rows as rows_by_table
from tests.kg.test_sync import _vectors as vectors_by_id

pytestmark = pytest.mark.slow
DROPPED, REDIRECTED = 10, 3
SEED = 20261207
KILLS = 10
# The first runs stop here, each leaving work the next one finds: the repair at the start, the batch of
# the three new redirects parsed, written, committed; the removal written, committed; the index saved,
# flagged; the finish. The kills after them come at random moments.
PAUSES = ["repair:1", "parsed:1", "sql-written:1", "sql-committed:1", "removal-written:1", "removal-committed:1",
          "index-saved:1", "flagged:1", "finishing:1"]
_PAGE = re.compile(r"  <page>\n.*?</page>\n", re.S)


def sample_copy(sample_kb: Settings, where: Path) -> Settings:
    """The sample KB's store and index copied into ``where`` (models stay where they are: they are only read)."""
    where.mkdir(parents=True)
    shutil.copy2(sample_kb.data_dir / "kgqa.db", where / "kgqa.db")
    shutil.copytree(sample_kb.index_dir, where / "index", ignore=shutil.ignore_patterns("*.lock", ".*"))
    (where / "models").symlink_to(sample_kb.models_dir.resolve(), target_is_directory=True)  # for `kgqa` runs
    settings = sample_kb.with_overrides(data_dir=where, models_dir=where / "models")
    index_files.stamp(settings.index_dir)
    return settings


def synced_dump(sample_dump: Path, stored: dict[int, str], path: Path) -> tuple[list[int], list[int], str]:
    """A copy of the sample dump without ``DROPPED`` stored articles and with ``REDIRECTED`` others turned into
    redirects (a newer revision) to a kept article; returns (dropped ids, redirected ids, their target)."""
    text = bz2.decompress(sample_dump.read_bytes()).decode("utf-8")
    ids = sorted(stored)
    chosen = random.Random(SEED).sample(ids[1:], DROPPED + REDIRECTED)
    dropped, redirected = sorted(chosen[:DROPPED]), sorted(chosen[DROPPED:])
    target = stored[ids[0]]

    def rewrite(match: re.Match) -> str:
        page = match.group(0)
        page_id = int(re.search(r"<id>(\d+)</id>", page).group(1))
        if page_id in dropped:
            return ""
        if page_id in redirected:
            page = page.replace("<ns>0</ns>", f'<ns>0</ns>\n    <redirect title="{target}" />', 1)
            page = re.sub(r"(<revision>\s*<id>)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 1}", page, count=1)
            page = re.sub(r"<text([^>]*)>.*?</text>", lambda m: f"<text{m.group(1)}>#REDIRECT [[{target}]]</text>",
                          page, count=1, flags=re.S)
        return page

    path.write_bytes(bz2.compress(_PAGE.sub(rewrite, text).encode("utf-8")))
    return dropped, redirected, target


def stored_titles(settings: Settings) -> dict[int, str]:
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            return dict(session.execute(select(Page.page_id, Page.title)).all())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def modified(sample_kb, sample_dump, tmp_path_factory):
    where = tmp_path_factory.mktemp("sync-dump")
    titles = stored_titles(sample_copy(sample_kb, where / "data"))  # the sample KB itself is never opened
    return (where / "enwiki-synced.xml.bz2", *synced_dump(sample_dump, titles, where / "enwiki-synced.xml.bz2"))


def test_sync_leaves_nothing_of_the_lost_pages_and_every_other_page_to_the_byte(sample_kb, modified, tmp_path):
    from kg.ingest import ingest_dump
    from models.embedding.embedder import Embedder

    dump, dropped, redirected, target = modified
    settings = sample_copy(sample_kb, tmp_path / "data")
    rows_before, vectors_before = rows_by_table(settings), vectors_by_id(settings)
    stats_before = kb_stats(settings)
    summary = ingest_dump(settings, dump, sync=True, progress=False, workers=1, embedder=Embedder(settings))
    stats_after = kb_stats(settings)
    print("\nbefore:", stats_before, "\nafter:", stats_after)
    gone = set(dropped) | set(redirected)
    assert (summary.removed.pages, summary.redirected, summary.pages, summary.passages) == (DROPPED, REDIRECTED, 0, 0)

    rows = rows_by_table(settings)
    key = {"pages": 0, "passages": 2, "entities": 0, "aliases": 3, "triples": 1}  # the page or entity column
    for table, column in key.items():
        assert not [row for row in rows[table] if row[column] in gone], table
    gone_vectors = {row[1] for row in rows_before["passages"] if row[2] in gone}
    assert len(gone_vectors) > 100
    vectors = vectors_by_id(settings)
    assert not gone_vectors & set(vectors)
    bm25 = open_sparse_index(sparse_dir(settings))
    assert not gone & set(bm25.page_ids.tolist()) and not gone_vectors & set(bm25.vector_ids.tolist())
    assert not gone & set(open_link_graph(link_graph_dir(settings)).ids.tolist())
    assert {row[0] for row in rows["redirects"]} >= set(redirected)

    # every other page: its rows (row ids included) and its vectors exactly as before
    titles_before = {row[0]: row[1] for row in rows_before["pages"]}
    new_aliases = {(titles_before[pid], target) for pid in redirected}
    for table, column in key.items():
        kept_before = [row for row in rows_before[table] if row[column] not in gone]
        kept_after = rows[table]
        if table == "aliases":  # the three new redirects are aliases of their target now
            target_id = next(pid for pid, title in stored_titles(settings).items() if title == target)
            added = [row for row in kept_after if row[4] == "redirect" and row[3] == target_id
                     and (row[2], target) in new_aliases]
            assert len(added) == REDIRECTED
            kept_after = [row for row in kept_after if row not in added]
        assert kept_after == kept_before, table
    kept_vectors = {row[1] for row in rows["passages"]}
    assert set(vectors) == kept_vectors
    assert all(vectors[vid] == vectors_before[vid] for vid in kept_vectors)
    assert stats_after["pages"] == stats_before["pages"] - DROPPED - REDIRECTED
    assert stats_after["vectors"] == stats_after["passages"] == stats_after["embedded_passages"]
    assert f"removed {DROPPED} pages" in stats_after["last_sync"]
    assert f"{REDIRECTED} pages turned into redirects" in stats_after["last_sync"]
    assert stats_after["damaged_index_files"] == "none" and stats_after["orphan_vectors"] == 0


def test_ten_kills_during_a_sync_and_reruns_end_where_an_uninterrupted_sync_ends(sample_kb, modified, tmp_path,
                                                                                  lm_path):
    from kg.ingest import ingest_dump
    from models.embedding.embedder import Embedder

    dump, dropped, _, _ = modified
    killed = sample_copy(sample_kb, tmp_path / "killed")
    runs = KilledRuns(killed, dump, lm_path, tmp_path)
    runs.command = [*runs.command[:runs.command.index("--limit")], "--sync", "--no-progress", "--workers", "1"]
    rng = random.Random(SEED)
    pauses = iter(PAUSES)
    landed: list[str] = []
    while len(landed) < KILLS:
        assert runs.runs < 4 * KILLS, f"only {len(landed)} kills landed in {runs.runs} runs: {landed}"
        pause = next(pauses, None)
        point = runs.killed_at_random(rng) if pause is None else runs.paused_and_killed(pause)
        if point is None:
            continue
        landed.append(point)
        left = set(stored_titles(killed))
        if point == "removal-written:1":  # killed inside the removal's transaction: as before it
            assert set(dropped) <= left
        if point == "removal-committed:1":  # killed after it: as after, the index's orphans left to the rerun
            assert not set(dropped) & left
    runs.finish()
    print(f"\n{len(landed)} kills in {runs.runs} runs, at: {', '.join(landed)}")
    for phase in ("removal-written", "removal-committed", "index-saved"):
        assert any(point.startswith(phase) for point in landed), (phase, landed)

    clean = sample_copy(sample_kb, tmp_path / "clean")
    ingest_dump(clean, dump, sync=True, progress=False, workers=1, embedder=Embedder(clean))
    killed_rows, clean_rows = _kb_rows(killed), _kb_rows(clean)
    for table, rows in clean_rows.items():
        assert killed_rows[table] == rows, table
    killed_vectors, clean_vectors = _vectors_by_passage(killed), _vectors_by_passage(clean)
    assert killed_vectors.keys() == clean_vectors.keys()
    assert all(np.array_equal(killed_vectors[pid], vector) for pid, vector in clean_vectors.items())
    assert not index_files.damaged(killed.index_dir) and not set(dropped) & set(stored_titles(killed))


def test_an_engine_running_through_a_delete_never_cites_the_removed_page(sample_kb, tmp_path):
    import time

    from kg.removal import delete_pages
    from qa.engine import QAEngine
    from retrieval.knowledge_base import KnowledgeBase
    from tests.qa.test_generation_limits import ScriptedGenerator

    settings = sample_copy(sample_kb, tmp_path / "data")
    kb = KnowledgeBase(settings)
    sentence = ["Anarchism", " is", " a", " political", " philosophy", " that", " rejects", " hierarchy", "."]
    engine = QAEngine(settings, generator=ScriptedGenerator(sentence), knowledge_base=kb)
    question = "What is anarchism?"

    def cited(result) -> set[str]:
        return ({c.title for c in result.citations} | {f.subject for f in result.facts}
                | {c.passage_id.split(":")[0] for c in result.citations if c.passage_id})

    def retrieved() -> set[str]:
        return {hit.passage_id.split(":")[0] for mode in ("dense", "sparse", "hybrid", "graph")
                for hit in engine.retrieve(question, k=20, mode=mode)}

    assert "12" in retrieved() and {"Anarchism", "12"} & cited(engine.ask(question))
    loaded = kb.generation
    delete_pages(settings, ["Anarchism"], embedder=kb.embedder)
    assert "12" not in retrieved() and not {"Anarchism", "12"} & cited(engine.ask(question))  # before the reload
    deadline = time.monotonic() + 120
    while kb.generation == loaded:
        assert time.monotonic() < deadline, "the engine's knowledge base never reloaded"
        retrieved()
        time.sleep(0.2)
    assert not kb.catalog.of_page(12) and kb.vector_index.ntotal == len(kb.catalog)
    assert "12" not in retrieved() and not {"Anarchism", "12"} & cited(engine.ask(question))
