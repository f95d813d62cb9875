"""The BM25 index and passage catalog built from SQL: ranks as bm25s in memory, chunking changes nothing,
memory-mapped, rebuilt when the passages change or the files break."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import select

from kg import index_files
from kg.sparse_index import ARRAYS, build_sparse_index, load_sparse_index, open_sparse_index, sparse_dir
from kg.store import Passage
from retrieval.catalog import PassageCatalog
from retrieval.sparse import SparseIndex
from tests.helpers.tiny_kb import (  # noqa: F401 (fixture)
    ALABAMA, PAGES, article, open_store, tiny_store, write_article,
)

PASSAGES = sum(len(page.passages) for page in PAGES)
QUERIES = ["Huntsville convention", "Albert", "capital of Alabama capital", "Orwell novella farm animals",
           "rivers Gulf Mexico", "relativity physicist", "nothing matches zzz", "1819 1819 1945"]


@pytest.fixture
def store(tiny_store):
    return tiny_store


def in_memory(sessions) -> SparseIndex:
    """The index as bm25s builds it in memory from the same texts (what each process used to build)."""
    with sessions() as session:
        rows = session.execute(select(Passage.id, Passage.title, Passage.section, Passage.text)
                               .order_by(Passage.page_id, Passage.ordinal)).all()
    return SparseIndex().build([r.id for r in rows], [f"{r.title} {r.section or ''} {r.text}" for r in rows])


def mapped(settings, sessions) -> tuple[SparseIndex, PassageCatalog]:
    with sessions() as session:
        arrays = load_sparse_index(settings, session)
    catalog = PassageCatalog(arrays)
    return SparseIndex().open(arrays, catalog.passage_id), catalog


def test_the_saved_index_ranks_every_query_as_the_in_memory_build(store):
    settings, sessions = store
    saved, _ = mapped(settings, sessions)
    memory = in_memory(sessions)
    assert saved.size == memory.size == PASSAGES
    for query in QUERIES:
        expected = memory.search(query, 10)
        got = saved.search(query, 10)
        assert [key for key, _ in got] == [key for key, _ in expected], query
        assert [score for _, score in got] == pytest.approx([score for _, score in expected], rel=1e-6), query
    assert saved.search("Huntsville convention", 3)[0][0] == "303:1001:2:2"
    assert saved.search("zzz", 3) == [] and saved.search("the of", 3) == []


def test_chunking_changes_no_array_and_bm25s_maps_the_scores_itself(store, tmp_path, monkeypatch):
    monkeypatch.setattr(index_files, "COPY_MAX_BYTES", 0)  # mapped, as a large index is
    import bm25s

    _, sessions = store
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    whole.mkdir(), chunked.mkdir()
    with sessions() as session:
        stats = build_sparse_index(session, whole)
        build_sparse_index(session, chunked, chunk_rows=2)
    assert stats["passages"] == PASSAGES and stats["pairs"] > stats["words"] > 0
    one, other = open_sparse_index(whole, checked=False), open_sparse_index(chunked, checked=False)
    for name in ARRAYS[:-3]:
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name), err_msg=name)
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(one.scores[name], other.scores[name], err_msg=name)
    assert isinstance(one.scores["data"].base, np.memmap)
    retriever = bm25s.BM25()
    retriever.load_scores(whole, mmap=True, num_docs=len(one))
    np.testing.assert_array_equal(retriever.scores["data"], one.scores["data"])


def test_the_catalog_columns_are_in_reading_order_with_sorted_lookups(store):
    settings, sessions = store
    with sessions() as session:
        arrays = load_sparse_index(settings, session)
        rows = session.execute(select(Passage.id, Passage.vector_id, Passage.page_id, Passage.ordinal)
                               .order_by(Passage.page_id, Passage.ordinal)).all()
    catalog = PassageCatalog(arrays)
    assert [dataclasses.astuple(catalog.ref(at)) for at in range(len(catalog))] == [tuple(r) for r in rows]
    assert sorted(catalog.by_id) == sorted(r.id for r in rows)
    assert [catalog.passage_id(int(at)) for at in arrays.id_order] == sorted(r.id for r in rows)
    assert np.all(np.diff(arrays.vector_ids[arrays.vector_order]) > 0)
    assert [catalog.by_vector[r.vector_id].passage_id for r in rows] == [r.id for r in rows]
    titles = [arrays.title_bytes[a:b].tobytes().decode() for a, b in zip(arrays.title_offsets, arrays.title_offsets[1:])]
    assert titles == sorted(page.title for page in PAGES)
    assert [ref.ordinal for ref in catalog.of_title("Alabama")] == [0, 1, 2]


def test_changed_passages_make_the_stamp_stale_and_the_index_is_rebuilt(store):
    settings, sessions = store
    mapped(settings, sessions)
    stamp_file = sparse_dir(settings) / "stamp.json"
    built = stamp_file.stat().st_mtime_ns
    mapped(settings, sessions)
    assert stamp_file.stat().st_mtime_ns == built  # current: mapped, not rebuilt
    write_article(sessions, article(9001, "Atlantis", 1, [("", "Atlantis is a fictional island in Plato's works.")]))
    index, catalog = mapped(settings, sessions)
    assert index.size == len(catalog) == PASSAGES + 1
    assert index.search("Plato island", 1)[0][0] == catalog.of_title("Atlantis")[0].passage_id
    # a new revision rewrites a page's passages (new vector ids): same count, still stale
    write_article(sessions, dataclasses.replace(ALABAMA, rev_id=1002))
    index, catalog = mapped(settings, sessions)
    assert [ref.passage_id for ref in catalog.of_title("Alabama")] == ["303:1002:0:0", "303:1002:1:1", "303:1002:2:2"]
    assert index.search("Huntsville convention", 1)[0][0] == "303:1002:2:2"


def test_a_broken_file_is_rebuilt_and_an_unwritable_folder_builds_for_this_process(store):
    settings, sessions = store
    mapped(settings, sessions)
    (sparse_dir(settings) / "vector_ids.npy").write_bytes(b"cut short")
    index, catalog = mapped(settings, sessions)
    assert len(catalog) == PASSAGES and index.search("Huntsville convention", 1)[0][0] == "303:1001:2:2"

    settings.index_dir.joinpath("bm25.lock").unlink()
    settings.index_dir.joinpath("bm25.lock").mkdir()  # no lock file can be made, so nothing can be saved
    write_article(sessions, article(9001, "Atlantis", 1, [("", "Atlantis is a fictional island.")]))
    index, catalog = mapped(settings, sessions)
    assert len(catalog) == PASSAGES + 1 and index.search("fictional island", 1)[0][0] == "9001:1:0:0"


def test_a_store_without_passages_gives_an_index_that_finds_nothing(tmp_path):
    from tests.helpers.tiny_kb import tiny_settings

    settings = tiny_settings(tmp_path / "data")
    sessions = open_store(settings)
    index, catalog = mapped(settings, sessions)
    assert index.size == len(catalog) == len(PassageCatalog()) == 0
    assert index.search("Alabama", 5) == [] and catalog.of_title("Alabama") == [] and 0 not in catalog.by_vector
    sessions.kw["bind"].dispose()
