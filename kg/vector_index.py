"""The FAISS passage index: int64 vector ids (``passages.vector_id``) to normalised vectors.

Small corpora use an exact flat inner-product index; past ``HNSW_THRESHOLD``
vectors the index is rebuilt as HNSW (see ``bench/embed.py`` for the measurement
behind the threshold). Both sit inside ``IndexIDMap2`` so ids survive and
vectors can be reconstructed.

HNSW cannot delete a node, so ``remove`` on an HNSW index writes -1 over the
id in the id map (a tombstone). Searches pass a selector that skips negative
ids, so removed vectors are never returned; the tombstones live in the FAISS
file itself, and once they pass ``COMPACT_FRACTION`` of the index it is rebuilt
without them.

The index records which embedder made its vectors (``EmbedderIdentity``) in
``<index file>.json`` beside it, saved with it. ``load(path, embedder=...)``
refuses an index built by another embedder (``EmbedderMismatch``); an index saved
before the record existed is taken as built by the given embedder when the widths
agree, and the record is written at its next save.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from kg.rwlock import ReadWriteLock
from kgqa.errors import EmbedderMismatch
from models.embedding.identity import EmbedderIdentity

logger = logging.getLogger(__name__)

# Vectors. Single-query flat search costs ~1.4 ms per 10k vectors on one busy CPU core
# (bench/embed.py), so past ~20k it eats the 25 ms retrieval budget and HNSW takes over.
HNSW_THRESHOLD = 20_000
HNSW_M = 32  # graph neighbours per node
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # at 20k clustered vectors: recall@10 0.97 in 0.8 ms (128: 0.93 in 0.5 ms)
COMPACT_FRACTION = 0.25  # rebuild an HNSW index once this share of it is tombstones
_MAX_ID = np.iinfo(np.int64).max
# Up to this many queries, search on the calling thread only: OpenMP threads splitting one
# query wait on each other, which on a busy machine made a 10k flat search 40x slower.
# Concurrent requests still run in parallel, each on its own thread.
SMALL_BATCH = 4


class VectorIndex:
    """A thread-safe id-mapped FAISS index: many concurrent searches, one writer at a time."""

    def __init__(self, index, *, embedder: EmbedderIdentity | None = None,
                 hnsw_threshold: int = HNSW_THRESHOLD, read_only: bool = False) -> None:
        """Wrap an existing ``IndexIDMap2``; use ``create`` or ``load`` instead of calling this."""
        import faiss

        if not isinstance(index, faiss.IndexIDMap2):
            raise TypeError(f"expected faiss.IndexIDMap2, got {type(index).__name__}")
        if embedder is not None and embedder.dim != index.d:
            raise ValueError(f"a {index.d}-d index cannot hold the vectors of {embedder}")
        self._index = index
        self._embedder = embedder
        self.hnsw_threshold = hnsw_threshold
        self.read_only = read_only  # memory-mapped: searches only
        self._lock = ReadWriteLock()
        self._write_lock = threading.Lock()  # serialises save() with writers

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, *, embedder: EmbedderIdentity | None = None,
               hnsw_threshold: int = HNSW_THRESHOLD) -> "VectorIndex":
        """An empty flat index (for ``embedder``'s vectors, recorded at save); it turns into HNSW by itself
        when it grows past the threshold."""
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        return cls(_new_id_map(_flat(int(dim))), embedder=embedder, hnsw_threshold=hnsw_threshold)

    @classmethod
    def load(cls, path: str | os.PathLike, *, embedder: EmbedderIdentity | None = None,
             hnsw_threshold: int = HNSW_THRESHOLD, mmap: bool = False) -> "VectorIndex":
        """Read a saved index and its embedder record; with ``embedder``, refuse an index another one built.

        ``mmap`` maps the vectors (flat or HNSW) from the file instead of copying them
        (``IO_FLAG_MMAP_IFC``): page cache that every process serving the same index shares,
        for a read-only index (``add``/``remove`` refuse).
        """
        import faiss

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no vector index at {path}")
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0)
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path} holds a {type(index).__name__}, not an id-mapped index")
        recorded = _read_embedder_record(path)
        if recorded is not None and recorded.dim != index.d:
            raise ValueError(f"{embedder_record_path(path)} says {recorded.dim}-d, the index holds {index.d}-d vectors")
        if embedder is not None:
            _check_embedder(path, index.d, recorded, embedder)
            if recorded is None:
                logger.warning("the vector index %s records no embedder (saved before indexes recorded one); "
                               "taking it as built by %s, recorded at its next save", path, embedder)
        return cls(index, embedder=recorded or embedder, hnsw_threshold=hnsw_threshold, read_only=mmap)

    # -- properties ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._index.d

    @property
    def embedder(self) -> EmbedderIdentity | None:
        """The embedder whose vectors this index holds (None: an index saved before indexes recorded it)."""
        return self._embedder

    @property
    def kind(self) -> str:
        """"flat" or "hnsw": which FAISS index sits inside the id map."""
        return "hnsw" if _is_hnsw(self._index) else "flat"

    @property
    def ntotal(self) -> int:
        """Live vectors (tombstones excluded)."""
        with self._lock.reading():
            return int(np.count_nonzero(self._id_map_view() >= 0))

    def ids(self) -> np.ndarray:
        """The live vector ids, int64, in insertion order."""
        with self._lock.reading():
            id_map = self._id_map_view()
            return id_map[id_map >= 0].copy()

    def __len__(self) -> int:
        return self.ntotal

    # -- writes -------------------------------------------------------------------------------
    def add(self, vector_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new, non-negative, unique ids."""
        self._check_writable()
        vectors = _check_vectors(vectors, self.dim, "vectors")
        vector_ids = _check_ids(vector_ids, "vector_ids")
        if len(vector_ids) != len(vectors):
            raise ValueError(f"{len(vector_ids)} ids for {len(vectors)} vectors")
        if len(np.unique(vector_ids)) != len(vector_ids):
            raise ValueError("vector_ids contains duplicates")
        with self._write_lock, self._lock.writing():
            taken = np.isin(vector_ids, self._id_map_view())
            if taken.any():
                raise ValueError(f"vector ids already in the index: {vector_ids[taken][:10].tolist()}")
            if self.kind == "flat" and self._index.ntotal + len(vector_ids) > self.hnsw_threshold:
                self._rebuild(extra_ids=vector_ids, extra_vectors=vectors)
            else:
                self._index.add_with_ids(vectors, vector_ids)

    def remove(self, vector_ids: np.ndarray) -> int:
        """Remove these ids (unknown ids are ignored); returns how many were removed."""
        self._check_writable()
        vector_ids = _check_ids(vector_ids, "vector_ids")
        if len(vector_ids) == 0:
            return 0
        import faiss

        with self._write_lock, self._lock.writing():
            if self.kind == "flat":
                return int(self._index.remove_ids(faiss.IDSelectorBatch(vector_ids)))
            id_map = self._id_map_view()
            hit = np.isin(id_map, vector_ids) & (id_map >= 0)
            removed = int(np.count_nonzero(hit))
            if removed:
                id_map[hit] = -1
                self._index.construct_rev_map()
                if np.count_nonzero(id_map < 0) > COMPACT_FRACTION * len(id_map):
                    self._rebuild()
            return removed

    def _check_writable(self) -> None:
        if self.read_only:
            raise ValueError("this vector index is memory-mapped read-only; load it without mmap to change it")

    # -- reads --------------------------------------------------------------------------------
    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores (m, k) float32, ids (m, k) int64); id -1 (score -inf) fills
        the rows when fewer than k vectors exist."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        queries = _check_vectors(query_vectors, self.dim, "query_vectors")
        with self._lock.reading():
            if self._index.ntotal == 0 or len(queries) == 0:
                return (np.full((len(queries), k), -np.inf, dtype=np.float32),
                        np.full((len(queries), k), -1, dtype=np.int64))
            params = self._search_params()
            with _single_threaded(len(queries) <= SMALL_BATCH):
                scores, ids = self._index.search(queries, int(k), params=params)
        scores[ids < 0] = -np.inf
        return scores, ids

    def reconstruct(self, vector_id: int) -> np.ndarray:
        """The stored vector of one id (KeyError if absent)."""
        with self._lock.reading():
            if vector_id < 0 or vector_id not in self._id_map_view():
                raise KeyError(vector_id)
            return self._index.reconstruct(int(vector_id))

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the index and its embedder record atomically: temp files in the same folder, fsync,
        then ``os.replace`` each (the record never changes once written, so their order is safe)."""
        import faiss

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        targets = [path] + ([embedder_record_path(path)] if self._embedder is not None else [])
        temps = []
        try:
            for target in targets:
                fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=path.parent)
                os.close(fd)
                temps.append(Path(tmp_name))
            with self._write_lock, self._lock.reading():
                faiss.write_index(self._index, str(temps[0]))
            if self._embedder is not None:
                temps[1].write_text(self._embedder.model_dump_json(indent=2) + "\n")
            for tmp in temps:
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            for tmp, target in zip(temps, targets):
                os.replace(tmp, target)
        except BaseException:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
            raise
        return path

    # -- internals ----------------------------------------------------------------------------
    def _id_map_view(self) -> np.ndarray:
        """A writable numpy view of the id map (no copy)."""
        import faiss

        n = self._index.id_map.size()
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.rev_swig_ptr(self._index.id_map.data(), n)

    def _search_params(self):
        import faiss

        if self.kind == "flat":
            return None
        if np.any(self._id_map_view() < 0):
            # Tombstones carry id -1; the selector sees the mapped ids and keeps only real ones.
            # Passed as a keyword, the params object keeps the selector alive.
            return faiss.SearchParametersHNSW(efSearch=HNSW_EF_SEARCH, sel=faiss.IDSelectorRange(0, _MAX_ID))
        return faiss.SearchParametersHNSW(efSearch=HNSW_EF_SEARCH)

    def _rebuild(self, extra_ids: np.ndarray | None = None, extra_vectors: np.ndarray | None = None):
        """Rebuild the inner index without tombstones, as flat or HNSW by size (caller holds the write lock)."""
        id_map = self._id_map_view()
        live = np.flatnonzero(id_map >= 0)
        ids = id_map[live].copy()
        vectors = (self._index.index.reconstruct_batch(live) if len(live)
                   else np.zeros((0, self.dim), dtype=np.float32))
        if extra_ids is not None:
            ids = np.concatenate([ids, extra_ids])
            vectors = np.concatenate([vectors, extra_vectors])
        inner = _hnsw(self.dim) if len(ids) > self.hnsw_threshold else _flat(self.dim)
        rebuilt = _new_id_map(inner)
        if len(ids):
            rebuilt.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self._index = rebuilt


def embedder_record_path(index_path: str | os.PathLike) -> Path:
    """Where the embedder record of an index file lives: ``passages.faiss`` -> ``passages.faiss.json``."""
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + ".json")


def _read_embedder_record(index_path: str | os.PathLike) -> EmbedderIdentity | None:
    """The embedder an index file records, or None for an index saved before indexes recorded one."""
    record = embedder_record_path(index_path)
    if not record.is_file():
        return None
    try:
        return EmbedderIdentity.model_validate_json(record.read_text())
    except ValidationError as exc:
        raise ValueError(f"{record} is not an embedder record: {exc.errors()[0]['msg']}") from None


def _check_embedder(path: Path, dim: int, recorded: EmbedderIdentity | None, embedder: EmbedderIdentity) -> None:
    if recorded is not None and recorded.same_vectors(embedder):
        return
    if recorded is None and dim == embedder.dim:
        return
    built = f"was built with {recorded}" if recorded else f"holds {dim}-d vectors of an unrecorded embedder"
    raise EmbedderMismatch(
        f"the index {path} {built}; the configured embedder is {embedder}: re-ingest into a new data folder "
        "(KGQA_DATA_DIR), or set KGQA_EMBEDDER_PATH back to the embedder that built it")


@contextmanager
def _single_threaded(enabled: bool) -> Iterator[None]:
    """OpenMP's thread count is per calling thread, so this leaves other threads alone."""
    if not enabled:
        yield
        return
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _flat(dim: int):
    import faiss

    return faiss.IndexFlatIP(dim)


def _hnsw(dim: int):
    import faiss

    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def _new_id_map(inner):
    import faiss

    # The python wrapper keeps a reference to ``inner`` for as long as the id map lives.
    return faiss.IndexIDMap2(inner)


def _is_hnsw(index) -> bool:
    import faiss

    return isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW)


def _check_vectors(vectors: np.ndarray, dim: int, name: str) -> np.ndarray:
    if not isinstance(vectors, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(vectors).__name__}")
    if vectors.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {vectors.dtype}")
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(vectors)


def _check_ids(vector_ids: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(vector_ids, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(vector_ids).__name__}")
    if vector_ids.dtype != np.int64:
        raise TypeError(f"{name} must be int64, got {vector_ids.dtype}")
    if vector_ids.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {vector_ids.shape}")
    if len(vector_ids) and vector_ids.min() < 0:
        raise ValueError(f"{name} must be non-negative (-1 means 'no result')")
    return np.ascontiguousarray(vector_ids)
