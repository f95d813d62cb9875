"""Everything retrieval reads, loaded once per process: SQL store, passage catalog, BM25, FAISS, graph, linker.

``__init__`` only stores settings; ``warm_up()`` loads (idempotent, thread-safe).
The catalog, BM25, link graph and FAISS index are files under ``index/``, each
checked against the size and checksum stamped when it was written (kg/index_files.py),
then read into memory, or memory-mapped when large so that processes serving one
knowledge base share one copy. A stale or damaged BM25 or link-graph folder is
rebuilt from SQL; a damaged FAISS index fails the warm-up with ``DamagedIndexFile``
naming the file (``/readyz`` answers 503) until ``kgqa kg repair`` rebuilds it; a
damaged graph pickle (not read here) is removed, to be rebuilt by its next load.
Aliases are looked up in SQL, question by question.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kgqa.settings import Settings
from kg.store import open_knowledge_base, session_factory
from retrieval.catalog import PassageCatalog

log = logging.getLogger(__name__)

REPAIR_HINT = "rebuild it from the SQL store with `kgqa kg repair`"


class KnowledgeBase:
    """The loaded knowledge base; shared read-only by request threads after ``warm_up``."""

    def __init__(self, settings: Settings, *, embedder=None):
        self.settings = settings
        self.embedder = embedder
        self.catalog = PassageCatalog()
        self.sparse = None
        self.vector_index = None
        self.linker = None
        self.expander = None
        self._sessions = None
        self._lock = threading.Lock()
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    def warm_up(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self._load()
                self._ready = True

    @contextmanager
    def session(self) -> Iterator:
        session = self._sessions()
        try:
            yield session
        finally:
            session.close()

    def _load(self) -> None:
        self._sessions = session_factory(open_knowledge_base(self.settings, require_passages=True))
        with self.session() as session:
            self.catalog, self.sparse = self._load_sparse(session)
            link_graph = self._load_link_graph(session)
        self.linker = self._build_linker(self._sessions, link_graph)
        from retrieval.graph_expansion import GraphExpander

        self.expander = GraphExpander(link_graph)
        if self.embedder is None:
            from models.embedding.embedder import Embedder

            self.embedder = Embedder(self.settings)
        self.vector_index = self._load_vectors()
        self._drop_damaged_graph_snapshot()
        self.embedder.warm_up()
        log.info("knowledge base loaded: %d passages, %d linked entities", len(self.catalog), len(link_graph))

    def _load_sparse(self, session) -> tuple[PassageCatalog, object]:
        """The catalog and BM25 index under ``index/bm25/``, memory-mapped (shared by processes), rebuilt when stale."""
        from kg.sparse_index import load_sparse_index
        from retrieval.sparse import SparseIndex

        arrays = load_sparse_index(self.settings, session)
        catalog = PassageCatalog(arrays)
        return catalog, SparseIndex().open(arrays, catalog.passage_id)

    def _load_link_graph(self, session):
        """The CSR link graph under ``index/links/``, memory-mapped (shared by processes), rebuilt when stale."""
        from kg.link_graph import load_link_graph

        return load_link_graph(self.settings, session)

    @staticmethod
    def _build_linker(sessions, link_graph):
        from kg.queries import normalize_alias
        from kg.store import wikipedia_url
        from retrieval.linking import EntityLinker, sql_alias_lookup

        def popularity(entry) -> float:  # distinct linked articles (the unweighted degree); 0 outside the graph
            node = link_graph.node(entry.title)
            return 0.0 if node is None else float(link_graph.indptr[node + 1] - link_graph.indptr[node])

        return EntityLinker(sql_alias_lookup(sessions), normalize_alias, wikipedia_url, popularity=popularity)

    def _drop_damaged_graph_snapshot(self) -> None:
        """The fact graph's pickle is not read here, but checked like every index file: a damaged one is logged
        and removed, so its next load (``kg.graph.load_graph``) builds it from SQL."""
        from kg import index_files

        path = self.settings.graph_path
        if not path.is_file():
            return
        try:
            index_files.check(path.parent, path)
        except index_files.DamagedIndexFile as exc:
            log.warning("%s; removed, it is rebuilt from the SQL store on its next load", exc)
            try:
                path.unlink()
                index_files.stamp(path.parent, [path])  # drops its stamp
            except OSError as error:  # a read-only index: kg.graph.load_graph still refuses it by its stamp
                log.warning("cannot remove %s (%s)", index_files.display_name(path.parent, path), error)

    def _load_vectors(self):
        from kg import index_files
        from kg.vector_index import VectorIndex

        path = self.settings.faiss_path
        if not path.is_file() and not index_files.stamped(path.parent, path):
            log.warning("no vector index at %s; dense retrieval is off", path)
            return None
        # Checked against its stamp; a large one memory-mapped, shared by serving processes (kgqa serve --workers N).
        try:
            return VectorIndex.load(path, embedder=self.embedder.identity, mmap=True, checked=True,
                                    repair=REPAIR_HINT)  # refuses another's index
        except index_files.DamagedIndexFile as exc:
            log.error("%s", exc)
            raise
