"""``kgqa kg repair``: check every file under ``index/`` against its stamp and rebuild what is damaged from SQL.

The BM25 index and the link graph are rebuilt by loading them (a damaged folder
fails its check and is rebuilt), the graph pickle is dropped (rebuilt on first use),
and a damaged FAISS index is re-embedded from the passages' text through the
ingest's own repair (``PassageVectors.reconcile``: a fresh index, every passage
embedded again, checkpointed as it goes; it also drops the orphan vectors of a
removal killed before its index save). The manifest is written last, then the
generation is bumped so running servers reload.
"""

from __future__ import annotations

import logging

from kg import index_files
from kg.link_graph import load_link_graph
from kg.sparse_index import load_sparse_index
from kg.store import ingest_lock, open_knowledge_base, session_factory
from kgqa.settings import Settings

log = logging.getLogger(__name__)


def repair_index(settings: Settings, *, embedder=None) -> dict:
    """Rebuild the damaged index files of the knowledge base; returns what was damaged and what was done."""
    index_dir = settings.index_dir
    damaged = [exc.name for exc in index_files.damaged(index_dir)]
    for name in damaged:
        log.warning("%s is damaged; rebuilding it from the SQL store", name)
    engine = open_knowledge_base(settings, require_passages=True)
    try:
        with ingest_lock(engine):  # the index is written as an ingest writes it: one writer at a time
            sessions = session_factory(engine)
            with sessions() as session:
                load_link_graph(settings, session)
                load_sparse_index(settings, session)
            if settings.graph_path.is_file() and _is_damaged(index_dir, settings.graph_path):
                settings.graph_path.unlink()  # built again from SQL on first use
            vectors = _repair_vectors(settings, sessions, embedder)
    finally:
        engine.dispose()
    index_files.complete(index_dir)
    index_files.bump_generation(index_dir, "repair")  # rewritten whole (so never left damaged); servers reload
    return {"damaged": damaged, "vectors": vectors}


def _is_damaged(index_dir, path) -> bool:
    try:
        index_files.check(index_dir, path)
        return False
    except index_files.DamagedIndexFile:
        return True


def _repair_vectors(settings: Settings, sessions, embedder) -> dict:
    """The FAISS index brought back in line with SQL: a damaged one is started afresh and every passage re-embedded."""
    from kg.vectors import PassageVectors

    if embedder is None:
        from models.embedding.embedder import Embedder

        embedder = Embedder(settings)
    vectors = PassageVectors(settings, embedder, sessions)
    try:
        return vectors.reconcile()
    finally:
        vectors.close()
