"""Everything retrieval reads, loaded once per process: SQL store, passage catalog, BM25, FAISS, graph, aliases.

``__init__`` only stores settings; ``warm_up()`` loads (idempotent, thread-safe).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from kgqa.settings import Settings
from kg.store import open_knowledge_base, session_factory
from retrieval.catalog import PassageCatalog, PassageRef

log = logging.getLogger(__name__)


class KnowledgeBase:
    """The loaded knowledge base; shared read-only by request threads after ``warm_up``."""

    def __init__(self, settings: Settings, *, embedder=None):
        self.settings = settings
        self.embedder = embedder
        self.catalog = PassageCatalog([])
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
            refs, texts = self._read_passages(session)
            self.catalog = PassageCatalog(refs)
            self.sparse = self._build_sparse(refs, texts)
            link_graph = self._load_link_graph(session)
            self.linker = self._build_linker(session, link_graph)
        from retrieval.graph_expansion import GraphExpander

        self.expander = GraphExpander(link_graph)
        if self.embedder is None:
            from models.embedding.embedder import Embedder

            self.embedder = Embedder(self.settings)
        self.vector_index = self._load_vectors()
        self.embedder.warm_up()
        log.info("knowledge base loaded: %d passages, %d aliases", len(refs), len(self.linker))

    @staticmethod
    def _read_passages(session) -> tuple[list[PassageRef], list[str]]:
        from sqlalchemy import select

        from kg.store import Passage

        refs, texts = [], []
        rows = session.execute(
            select(Passage.id, Passage.vector_id, Passage.page_id, Passage.title, Passage.section,
                   Passage.ordinal, Passage.text).order_by(Passage.page_id, Passage.ordinal)
        )
        for pid, vid, page_id, title, section, ordinal, text in rows:
            refs.append(PassageRef(pid, vid, page_id, title, section or "", ordinal))
            texts.append(f"{title} {section or ''} {text}")  # the title makes "Alabama" find Alabama's passages
        return refs, texts

    @staticmethod
    def _build_sparse(refs: Sequence[PassageRef], texts: Sequence[str]):
        from retrieval.sparse import SparseIndex

        return SparseIndex().build([r.passage_id for r in refs], texts)

    def _load_link_graph(self, session):
        """The CSR link graph under ``index/links/``, memory-mapped (shared by processes), rebuilt when stale."""
        from kg.link_graph import load_link_graph

        return load_link_graph(self.settings, session)

    @staticmethod
    def _build_linker(session, link_graph):
        import numpy as np
        from sqlalchemy import select

        from kg.queries import normalize_alias
        from kg.store import Alias, Entity, wikipedia_url
        from retrieval.linking import AliasEntry, EntityLinker

        rows = session.execute(
            select(Alias.norm, Alias.alias, Alias.entity_id, Entity.title, Alias.source, Entity.is_disambiguation)
            .join(Entity, Entity.entity_id == Alias.entity_id)
        )
        entries = [AliasEntry(*row) for row in rows]
        degrees = link_graph.degrees()  # distinct linked articles, unweighted
        linked = np.flatnonzero(degrees)
        popularity = dict(zip(link_graph.ids[linked].tolist(), degrees[linked].astype(float).tolist()))
        return EntityLinker(entries, normalize_alias, wikipedia_url, popularity=popularity)

    def _load_vectors(self):
        from kg.vector_index import VectorIndex

        if not self.settings.faiss_path.is_file():
            log.warning("no vector index at %s; dense retrieval is off", self.settings.faiss_path)
            return None
        # Memory-mapped: serving processes (kgqa serve --workers N) share one copy in the page cache.
        return VectorIndex.load(self.settings.faiss_path, embedder=self.embedder.identity, mmap=True)  # refuses another's index
