"""`kgqa ingest --sync` and `kgqa kg delete` on hand-written dumps: what goes, what stays byte for byte, the refusals.

A tiny wiki of four articles and two redirects is ingested (hashing embedder, one worker),
then synced with a newer dump that lost an article and a redirect and turned an article into
a redirect; every file derived from SQL is checked for the removed pages.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from kg import index_files
from kg.graph import load_graph
from kg.ingest import ingest_dump
from kg.link_graph import link_graph_dir, open_link_graph
from kg.removal import PageNotFound, SyncRefused, delete_pages, page_range
from kg.sparse_index import open_sparse_index, sparse_dir
from kg.stats import kb_stats
from kg.store import Alias, Entity, Page, Passage, Redirect, Triple, make_engine, session_factory
from kg.vector_index import VectorIndex
from kgqa.settings import Settings
from tests.helpers.kg_dumps import page_xml
from tests.helpers.tiny_kb import HashingEmbedder

WORDS = ("river valley mountain harbour railway castle museum festival bridge forest island desert glacier "
         "canyon meadow temple garden market").split()


def _text(title: str, links: list[str], seed: int) -> str:
    """An article long enough for a few passages, linking ``links``, with an infobox and a category."""
    paragraphs = []
    for n in range(3):
        words = " ".join(WORDS[(seed * 7 + n * 3 + i) % len(WORDS)] for i in range(60))
        paragraphs.append(f"== Part {n} ==\n'''{title}''' has a {words}. " + " ".join(f"[[{t}]]" for t in links) + ".")
    infobox = "{{Infobox settlement\n| name = " + title + "\n| capital = [[" + (links or ["Nowhere"])[0] + "]]\n}}\n"
    return infobox + "\n\n".join(paragraphs) + f"\n[[Category:Places of {title}]]"


ARTICLES = {1: ("Alpha", ["Beta", "Gamma"]), 2: ("Beta", ["Alpha"]), 3: ("Gamma", ["Alpha", "Beta"]),
            4: ("Delta", ["Gamma", "Alpha"])}
REDIRECTS = {10: ("Gama", "Gamma"), 11: ("Alfa", "Alpha")}


def _dump(path, *, drop=(), redirected=(), wiki="enwiki"):
    """The tiny wiki as a dump: without the page ids in ``drop``; articles in ``redirected`` now redirect to Beta."""
    pages = []
    for page_id, (title, links) in ARTICLES.items():
        if page_id in drop:
            continue
        if page_id in redirected:
            pages.append(page_xml(page_id, title, 200 + page_id, "#REDIRECT [[Beta]]", redirect="Beta"))
        else:
            pages.append(page_xml(page_id, title, 100 + page_id, _text(title, links, page_id)))
    pages += [page_xml(pid, title, 100 + pid, f"#REDIRECT [[{target}]]", redirect=target)
              for pid, (title, target) in REDIRECTS.items() if pid not in drop]
    pages.append(page_xml(50, "Talk:Alpha", 150, "talk", ns=1))
    header = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">\n'
              f"<siteinfo><sitename>Wikipedia</sitename><dbname>{wiki}</dbname></siteinfo>\n")
    path.write_text(header + "".join(pages) + "</mediawiki>\n", encoding="utf-8")
    return path


def _settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url="")


def _ingest(settings, dump, **kwargs):
    return ingest_dump(settings, dump, progress=False, workers=1, embedder=HashingEmbedder(), **kwargs)


def _rows(settings) -> dict[str, list[tuple]]:
    """Every row of every table, ids included, sorted."""
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            return {model.__tablename__: sorted(tuple(getattr(row, c.key) for c in model.__table__.columns)
                                                for row in session.scalars(select(model)))
                    for model in (Page, Passage, Entity, Alias, Triple, Redirect)}
    finally:
        engine.dispose()


def _vectors(settings) -> dict[int, bytes]:
    index = VectorIndex.load(settings.faiss_path)
    return {vid: index.reconstruct(vid).tobytes() for vid in index.ids().tolist()}


def _of_pages(rows: dict, page_ids: set[int]) -> dict:
    """The rows that belong to these pages (by their page or entity id)."""
    column = {"pages": 0, "passages": 2, "entities": 0, "aliases": 3, "triples": 1, "redirects": 0}
    return {table: [row for row in table_rows if row[column[table]] in page_ids] for table, table_rows in rows.items()}


@pytest.fixture
def synced(tmp_path):
    """(settings, rows and vectors before, summary): the tiny wiki ingested, then synced with a dump that lost
    Gamma (3) and the redirect Alfa (11) and in which Delta (4) became a redirect to Beta."""
    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    before = _rows(settings), _vectors(settings)
    generation = index_files.read_generation(settings.index_dir)
    summary = _ingest(settings, _dump(tmp_path / "new.xml", drop={3, 11}, redirected={4}), sync=True)
    assert index_files.read_generation(settings.index_dir) == generation + 1
    return settings, before, summary


def test_sync_removes_every_trace_of_the_pages_the_dump_lost(synced):
    settings, (rows_before, _), summary = synced
    assert (summary.removed.pages, summary.removed.redirects, summary.redirected) == (1, 1, 1)
    assert summary.removed.titles == ["Gamma"]
    rows = _rows(settings)
    assert [row[0] for row in rows["pages"]] == [1, 2]
    assert {row[0] for row in rows["entities"]} == {1, 2}
    assert not _of_pages(rows, {3, 4})["passages"] and not _of_pages(rows, {3, 4})["triples"]
    assert not [row for row in rows["aliases"] if row[3] in (3, 4) or row[2] == "Alfa"]
    assert [row[0] for row in rows["redirects"]] == [4, 10]  # Gama stays: the dump still holds it
    gone_vectors = {row[1] for row in rows_before["passages"] if row[2] in (3, 4)}
    assert gone_vectors and not gone_vectors & set(_vectors(settings))
    bm25 = open_sparse_index(sparse_dir(settings))
    assert set(bm25.page_ids.tolist()) == {1, 2}
    assert not gone_vectors & set(bm25.vector_ids.tolist())
    links = open_link_graph(link_graph_dir(settings))
    assert sorted(links.ids.tolist()) == [1, 2] and "Gamma" not in links and links.edge_count == 1
    graph = load_graph(settings)
    assert graph.nodes["Alpha"]["kind"] == "entity" and graph.nodes["Alpha"]["aliases"] == []
    assert "Gamma" not in graph or graph.nodes["Gamma"]["kind"] != "entity"
    assert not index_files.damaged(settings.index_dir)


def test_a_page_turned_into_a_redirect_becomes_an_alias_of_its_target(synced):
    settings, _, _ = synced
    rows = _rows(settings)
    assert ("delta", "Delta", 2, "redirect") in [row[1:] for row in rows["aliases"]]


def test_what_sync_keeps_is_byte_for_byte_what_it_held(synced):
    settings, (rows_before, vectors_before), _ = synced
    rows = _rows(settings)
    kept = _of_pages(rows_before, {1, 2})
    for table in ("pages", "passages", "entities", "triples"):
        assert _of_pages(rows, {1, 2})[table] == kept[table], table
    # the facts of kept pages that name a removed page stay as written, unlinked: no entity has the title
    assert [row for row in rows["triples"] if row[1] == 1 and row[3] == "Gamma"]
    kept_vectors = {row[1] for row in kept["passages"]}
    vectors = _vectors(settings)
    assert set(vectors) == kept_vectors
    assert all(vectors[vid] == vectors_before[vid] for vid in kept_vectors)


def test_stats_report_what_the_last_sync_removed(synced):
    settings, _, _ = synced
    stats = kb_stats(settings)
    assert "removed 1 page (Gamma), 1 redirect" in stats["last_sync"]
    assert "1 page turned into a redirect" in stats["last_sync"] and "last_delete" not in stats
    assert stats["orphan_vectors"] == stats["flagged_without_vector"] == 0


def test_a_sync_with_nothing_gone_removes_nothing_and_a_plain_ingest_never_removes(tmp_path):
    settings = _settings(tmp_path)
    dump = _dump(tmp_path / "old.xml")
    _ingest(settings, dump)
    before = _rows(settings), _vectors(settings)
    assert _ingest(settings, dump, sync=True).removed.pages == 0
    assert (_rows(settings), _vectors(settings)) == before
    assert _ingest(settings, _dump(tmp_path / "new.xml", drop={3, 11})).removed is None
    assert _rows(settings) == before[0]


def test_a_part_of_a_split_dump_removes_only_within_its_page_ids(tmp_path):
    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    part = _dump(tmp_path / "enwiki-pages-articles1.xml-p1p3.xml", drop={3, 4, 10, 11})
    assert page_range(part) == (1, 3)
    assert _ingest(settings, part, sync=True).removed.titles == ["Gamma"]
    assert [row[0] for row in _rows(settings)["redirects"]] == [10, 11]
    assert page_range(tmp_path / "enwiki-latest-pages-articles.xml.bz2") is None


def test_sync_refuses_a_limit_and_another_wiki(tmp_path):
    settings = _settings(tmp_path)
    dump = _dump(tmp_path / "old.xml")
    with pytest.raises(SyncRefused, match="drop --limit"):
        _ingest(settings, dump, sync=True, limit=3)
    assert not settings.data_dir.exists()  # refused before anything was touched
    _ingest(settings, dump, sync=True)
    before = _rows(settings)
    with pytest.raises(SyncRefused, match="synced with enwiki; the dump is dewiki"):
        _ingest(settings, _dump(tmp_path / "de.xml", drop={1, 2}, wiki="dewiki"), sync=True)
    assert _rows(settings) == before


def test_the_cli_refuses_sync_with_limit_in_one_line(tmp_path):
    from app.cli import main

    result = CliRunner().invoke(main, ["ingest", str(_dump(tmp_path / "old.xml")), "--sync", "--limit", "5"],
                                env={"KGQA_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 2 and "drop --limit" in result.output


def test_delete_by_title_and_id_removes_the_page_and_all_derived_from_it(tmp_path):
    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    rows_before, vectors_before = _rows(settings), _vectors(settings)
    removed = delete_pages(settings, ["gamma", "11"], embedder=HashingEmbedder())  # a title as a link writes it
    assert (removed.pages, removed.redirects, removed.titles) == (1, 1, ["Gamma"])
    rows = _rows(settings)
    assert [row[0] for row in rows["pages"]] == [1, 2, 4] and not _of_pages(rows, {3})["passages"]
    assert [row[0] for row in rows["redirects"]] == [10]
    assert _of_pages(rows, {1, 2, 4}) == {table: [r for r in table_rows if r[2] != "Alfa"] if table == "aliases"
                                          else table_rows for table, table_rows in
                                          _of_pages(rows_before, {1, 2, 4}).items()}
    kept = {row[1] for row in rows["passages"]}
    assert set(_vectors(settings)) == kept and all(_vectors(settings)[v] == vectors_before[v] for v in kept)
    assert set(open_sparse_index(sparse_dir(settings)).page_ids.tolist()) == {1, 2, 4}
    assert "Gamma" not in open_link_graph(link_graph_dir(settings))
    stats = kb_stats(settings)
    assert "removed 1 page (Gamma), 1 redirect" in stats["last_delete"] and "last_sync" not in stats
    assert not index_files.damaged(settings.index_dir)


def test_delete_of_an_unknown_name_removes_nothing(tmp_path):
    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    before = _rows(settings)
    with pytest.raises(PageNotFound, match="'Omega'; nothing was deleted"):
        delete_pages(settings, ["Alpha", "Omega"], embedder=HashingEmbedder())
    assert _rows(settings) == before


def test_the_cli_deletes_and_says_what_it_removed(tmp_path, monkeypatch):
    import kg.removal
    from app.cli import main

    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    real = kg.removal.delete_pages
    monkeypatch.setattr(kg.removal, "delete_pages", lambda s, names: real(s, names, embedder=HashingEmbedder()))
    env = {"KGQA_DATA_DIR": str(settings.data_dir), "KGQA_DATABASE_URL": ""}
    result = CliRunner().invoke(main, ["kg", "delete", "Delta", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert "removed 2 pages (Beta, Delta), 0 redirects" in result.output
    result = CliRunner().invoke(main, ["kg", "delete", "Delta"], env=env)
    assert result.exit_code == 2 and "no stored page or redirect is named 'Delta'" in result.output


def test_removal_records_keep_the_first_titles(tmp_path):
    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    delete_pages(settings, ["Alpha"], embedder=HashingEmbedder())
    engine = make_engine(settings.database_url)
    with engine.connect() as connection:
        assert json.loads(connection.exec_driver_sql("SELECT titles FROM removals").scalar()) == ["Alpha"]
    engine.dispose()


def test_an_ivf_index_loses_the_removed_vectors_for_real(tmp_path):
    from kg.vectors import PassageVectors

    settings = _settings(tmp_path)
    settings.index_dir.mkdir(parents=True)
    embedder = HashingEmbedder()
    index = VectorIndex.create(embedder.dim, embedder=embedder.identity, ivf_threshold=100)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.add(np.arange(400, dtype=np.int64), vectors)
    assert index.kind == "ivf"
    index.save(settings.faiss_path, stamp=True)
    passage_vectors = PassageVectors(settings, embedder, sessions=None)
    passage_vectors.warm_up()
    passage_vectors.remove(list(range(0, 400, 2)))
    passage_vectors.index.save(settings.faiss_path, stamp=True)
    saved = VectorIndex.load(settings.faiss_path, checked=True)
    assert saved.kind == "ivf" and saved.ntotal == 200
    assert sorted(saved.ids().tolist()) == list(range(1, 400, 2))
    _, found = saved.search(vectors[:50], 10)
    assert not (found[found >= 0] % 2 == 0).any()


def test_a_loaded_knowledge_base_follows_a_delete_and_never_cites_the_removed_page(tmp_path):
    import time

    from retrieval.knowledge_base import KnowledgeBase
    from retrieval.pipeline import RetrievalPipeline

    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    kb = KnowledgeBase(settings, embedder=HashingEmbedder(), reload_check_s=0.0)
    kb.warm_up()
    pipeline = RetrievalPipeline(kb)
    question = "Which Gamma river valley has a museum?"

    def titles(mode):
        return {hit.title for hit in pipeline.retrieve(question, k=20, mode=mode, with_facts=False).passages}

    assert "Gamma" in titles("hybrid") and kb.catalog.of_title("Gamma")
    loaded = kb.generation
    delete_pages(settings, ["Gamma"], embedder=HashingEmbedder())
    for mode in ("dense", "sparse", "hybrid", "graph"):  # before the reload too: passages come from SQL
        assert "Gamma" not in titles(mode), mode
    deadline = time.monotonic() + 30
    while kb.generation == loaded:
        assert time.monotonic() < deadline, "the knowledge base never reloaded"
        kb.catalog  # a read checks the generation
        time.sleep(0.05)
    assert kb.catalog.of_title("Gamma") == [] and "Gamma" not in [t for t, _ in kb.expander.expand(["Alpha"])]
    assert all(e.title != "Gamma" for e in kb.linker.link("Tell me about Gamma"))
    assert len(kb.catalog) == kb.vector_index.ntotal == kb.sparse.size
    assert "Gamma" not in titles("graph") and "Alpha" in titles("hybrid")


def test_a_reload_that_fails_keeps_the_loaded_knowledge_base(tmp_path, caplog):
    from retrieval.knowledge_base import KnowledgeBase

    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    kb = KnowledgeBase(settings, embedder=HashingEmbedder())
    kb.warm_up()
    catalog = kb.catalog
    assert not kb.reload()  # nothing changed
    delete_pages(settings, ["Gamma"], embedder=HashingEmbedder())
    settings.faiss_path.write_bytes(b"damaged")
    with pytest.raises(index_files.DamagedIndexFile):
        kb.reload()
    assert kb.catalog is catalog and kb.catalog.of_title("Gamma")


def test_the_entity_and_passage_pages_of_a_removed_page_answer_404(tmp_path):
    from tests.helpers.app_fakes import make_app

    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    client = make_app(settings.data_dir, database_url="").test_client()
    passage_id = next(row[0] for row in _rows(settings)["passages"] if row[2] == 3)
    assert client.get("/api/v1/entities/Gamma").status_code == 200
    assert client.get(f"/api/v1/passages/{passage_id}").status_code == 200
    delete_pages(settings, ["Gamma"], embedder=HashingEmbedder())
    for url in ("/api/v1/entities/Gamma", "/entity/Gamma", f"/api/v1/passages/{passage_id}", f"/passage/{passage_id}"):
        assert client.get(url).status_code == 404, url
    assert client.get("/api/v1/entities/Alpha").status_code == 200


DELETE_SCRIPT = """
import sys
from kg.removal import delete_pages
from kgqa.settings import Settings
from tests.helpers.tiny_kb import HashingEmbedder
delete_pages(Settings(data_dir=sys.argv[1], database_url=""), sys.argv[2:], embedder=HashingEmbedder())
"""


def _state(settings) -> tuple:
    """Rows, vectors, the BM25 catalog's pages and the link graph's entities: all a delete changes."""
    return (_rows(settings), _vectors(settings), sorted(open_sparse_index(sparse_dir(settings)).page_ids.tolist()),
            sorted(open_link_graph(link_graph_dir(settings)).ids.tolist()))


@pytest.mark.slow
@pytest.mark.parametrize("pause", ["repair:1", "removal-written:1", "removal-committed:1", "index-saved:1",
                                   "flagged:1", "finishing:1"])
def test_a_delete_killed_anywhere_leaves_the_store_as_before_or_after(tmp_path, pause):
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from kg.repair import repair_index
    from kg.vectors import PAUSE_ENV

    base = _settings(tmp_path / "base")
    _ingest(base, _dump(tmp_path / "old.xml"))
    before = _state(base)

    def copy(name: str) -> Settings:
        shutil.copytree(base.data_dir, tmp_path / name / "data", ignore=shutil.ignore_patterns("*.lock"))
        return _settings(tmp_path / name)

    reference = copy("reference")
    delete_pages(reference, ["Gamma", "Alfa"], embedder=HashingEmbedder())
    after = _state(reference)
    killed = copy("killed")
    log = tmp_path / "run.stderr"
    root = Path(__file__).resolve().parents[2]
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", DELETE_SCRIPT, str(killed.data_dir), "Gamma", "Alfa"],
                                   env={**os.environ, PAUSE_ENV: pause, "PYTHONPATH": str(root)}, cwd=root,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while "ingest paused at" not in log.read_text():
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"the delete never reached {pause}"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows = _rows(killed)
    committed = pause not in ("repair:1", "removal-written:1")
    assert rows == (after[0] if committed else before[0])
    if committed:  # the next writer finishes it: here a repair
        repair_index(killed, embedder=HashingEmbedder())
    else:
        delete_pages(killed, ["Gamma", "Alfa"], embedder=HashingEmbedder())
    assert _state(killed) == after
    assert not index_files.damaged(killed.index_dir)
    assert kb_stats(killed)["orphan_vectors"] == 0


def test_a_dump_without_a_single_page_to_keep_never_empties_the_knowledge_base(tmp_path):
    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    before = _rows(settings)
    only_talk = _dump(tmp_path / "talk.xml", drop={1, 2, 3, 4, 10, 11})
    with pytest.raises(SyncRefused, match="holds no page the knowledge base could keep"):
        _ingest(settings, only_talk, sync=True)
    assert _rows(settings) == before


def test_a_resumed_sync_keeps_the_pages_before_its_resume_point(tmp_path):
    from kg.store import IngestRun

    settings = _settings(tmp_path)
    _ingest(settings, _dump(tmp_path / "old.xml"))
    new = _dump(tmp_path / "new.xml", drop={3, 11}, redirected={4})
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:  # a sync of the new dump killed after page 2
        session.add(IngestRun(dump=str(new.resolve()), status="running", last_page_id=2))
        session.commit()
    engine.dispose()
    summary = _ingest(settings, new, sync=True, resume=True)
    assert summary.removed.titles == ["Gamma"] and summary.redirected == 1
    assert [row[0] for row in _rows(settings)["pages"]] == [1, 2]


def test_a_removal_is_described_in_the_singular_where_it_took_one():
    from kg.removal import Removed, counted

    assert counted(1, "alias", "aliases") == "1 alias" and counted(3, "alias", "aliases") == "3 aliases"
    assert Removed(pages=1, redirects=0, passages=2, triples=1, aliases=1, titles=["Aristotle"]).describe() == (
        "removed 1 page (Aristotle), 0 redirects; 2 passages and their vectors, 1 triple, 1 alias")
