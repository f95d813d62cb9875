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

A running process follows the knowledge base as writers change it: every finished ingest,
sync (``kgqa ingest --sync``) and ``kgqa kg delete`` bumps ``index/generation.json``, and at
most every ``RELOAD_CHECK_S`` a read of a component checks that number; a new one loads the
files again in a background thread, and the loaded components are swapped in whole, so a
request never mixes two loads. Until then the old ones answer, and a passage removed
meanwhile is never cited: passages are fetched from SQL, which no longer has it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kgqa.settings import Settings
from kg.store import open_knowledge_base, session_factory
from retrieval.catalog import PassageCatalog

log = logging.getLogger(__name__)

REPAIR_HINT = "rebuild it from the SQL store with `kgqa kg repair`"
RELOAD_CHECK_S = 1.0  # how often a read of the components looks for a newer generation (one small file read)


@dataclass(frozen=True)
class Loaded:
    """One load of the knowledge base's files, swapped in whole."""

    catalog: PassageCatalog
    sparse: object = None
    vector_index: object = None
    linker: object = None
    expander: object = None
    generation: int | None = None  # of index/generation.json when it was loaded


class KnowledgeBase:
    """The loaded knowledge base; shared read-only by request threads after ``warm_up``, reloaded when a writer
    bumps its generation."""

    def __init__(self, settings: Settings, *, embedder=None, reload_check_s: float = RELOAD_CHECK_S):
        self.settings = settings
        self.embedder = embedder
        self.reload_check_s = reload_check_s
        self._loaded = Loaded(PassageCatalog())
        self._sessions = None
        self._lock = threading.Lock()  # held by a load
        self._start_lock = threading.Lock()  # held only to start a background reload: never waits on a load
        self._ready = False
        self._checked_at = 0.0
        self._reloading: threading.Thread | None = None
        self._failed_generation: int | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def generation(self) -> int | None:
        """The generation of the files in use (None: loaded before any writer counted one)."""
        return self._loaded.generation

    # The components, from the latest load; reading them may start a reload (``_current``).
    @property
    def catalog(self) -> PassageCatalog:
        return self._current().catalog

    @property
    def sparse(self):
        return self._current().sparse

    @property
    def vector_index(self):
        return self._current().vector_index

    @property
    def linker(self):
        return self._current().linker

    @property
    def expander(self):
        return self._current().expander

    def warm_up(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self._loaded = self._load()
                self._ready = True
                self._checked_at = time.monotonic()

    def reload(self) -> bool:
        """Load the files again now if a writer bumped the generation since; whether it did. Raises what loading
        raises (the loaded components stay as they were)."""
        from kg.index_files import read_generation

        with self._lock:
            if not self._ready or read_generation(self.settings.index_dir) == self._loaded.generation:
                return False
            self._loaded = self._load()
            return True

    def _current(self) -> Loaded:
        """The loaded components; once every ``reload_check_s``, a newer generation starts a reload in the
        background (one at a time; one that failed is not retried until the generation moves again)."""
        loaded = self._loaded
        now = time.monotonic()
        if not self._ready or now - self._checked_at < self.reload_check_s:
            return loaded
        self._checked_at = now
        from kg.index_files import read_generation

        generation = read_generation(self.settings.index_dir)
        if generation in (loaded.generation, self._failed_generation):
            return loaded
        with self._start_lock:
            if self._reloading is None or not self._reloading.is_alive():
                self._reloading = threading.Thread(target=self._reload_in_background, args=(generation,),
                                                   name="kgqa-kb-reload", daemon=True)
                self._reloading.start()
        return loaded

    def _reload_in_background(self, generation: int | None) -> None:
        try:
            if self.reload():
                log.info("knowledge base reloaded at generation %s", self._loaded.generation)
        except Exception as exc:  # the old components keep answering; logged once per generation
            self._failed_generation = generation
            log.error("reloading the knowledge base failed, the loaded one keeps answering: %s", exc)

    @contextmanager
    def session(self) -> Iterator:
        session = self._sessions()
        try:
            yield session
        finally:
            session.close()

    def _load(self) -> Loaded:
        from kg.index_files import read_generation

        generation = read_generation(self.settings.index_dir)  # before the files: a later bump reloads again
        if self._sessions is None:
            self._sessions = session_factory(open_knowledge_base(self.settings, require_passages=True))
        with self.session() as session:
            catalog, sparse = self._load_sparse(session)
            link_graph = self._load_link_graph(session)
        linker = self._build_linker(self._sessions, link_graph)
        from retrieval.graph_expansion import GraphExpander

        if self.embedder is None:
            from models.embedding.embedder import Embedder

            self.embedder = Embedder(self.settings)
        vector_index = self._load_vectors()
        self._drop_damaged_graph_snapshot()
        self.embedder.warm_up()
        log.info("knowledge base loaded: %d passages, %d linked entities", len(catalog), len(link_graph))
        return Loaded(catalog, sparse, vector_index, linker, GraphExpander(link_graph), generation)

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
