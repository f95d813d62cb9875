"""The FAISS passage index: int64 vector ids (``passages.vector_id``) to normalised vectors.

Small corpora use an exact flat inner-product index inside ``IndexIDMap2`` (ids
survive, vectors can be reconstructed). Past ``IVF_THRESHOLD`` vectors the index
turns into a compressed IVF index: an inverted file over ``nlist`` k-means
centroids whose lists hold 8-bit scalar-quantised vectors (``IndexIVFScalarQuantizer``,
SQ8, not by residual), ~395 bytes a 384-d vector on disk instead of 1,544.
Measured with ``bench/vector_index.py`` (2 shared cores, 384-d unit vectors with a
MiniLM-like spectrum; figures in ``bench/results/vector_index.json``):

- At 1M vectors (2048 lists, nprobe 128 by the rule below) IVF-SQ8 answers one query
  in 3-4 ms p50 against 68 ms for exact flat search, with recall@10 vs exact 0.985 on
  topic-structured vectors and 0.946 on the hardest set, equal clusters of 50 with no
  larger structure (0.80 at nprobe 32, 0.89 at 64); at 100k (512 lists, nprobe 32)
  0.985 / 0.960 in 0.4 ms; the real sample's own 2.5k vectors: 0.99 at nprobe 16.
  At 3M (hardest set, 4096 lists, nprobe 128): 0.90 in 6.5 ms p50, 394 bytes a vector,
  a memory-mapped load in 0.06 s adding 8 MB of private memory (1.1 GB of shared lists).
- Ingestion-style adds (64 at a time) run at 14-26k vectors/s up to 3M (6-14k/s
  counting the re-clusterings: 27-47 s in all to 1M, 258 s to 3M); IVF-PQ (PQ48, PQ96x4fs: 66-68 bytes a
  vector) reached only 0.24-0.67 recall@10 at any nprobe at 200k, and a refinement
  stage costs the bytes PQ saved.
- HNSW over SQ8 added ~4,000 vectors/s on 2 cores at 200k (a 3M-passage index would
  take 12+ minutes, slowing as it grows), and an mmap load reads its graph into memory
  (~60 MB anonymous at 200k) where an IVF index maps entirely: ``IO_FLAG_MMAP_IFC``
  maps the quantizer and the ``ArrayInvertedLists`` (1M vectors: load 0.04 s, 7 MB of
  private memory; the 390 MB of lists are shared page cache, touched as searches go).
So the float HNSW tier is gone: indexes go flat -> IVF-SQ8. HNSW files saved by
earlier versions still load and search; an add past the threshold rebuilds them as IVF.

The IVF index stores its own ids (no ``IndexIDMap2``, whose reverse hash map every
process would build) and deletes for real. Its coarse quantizer is trained on the
vectors present when the threshold is crossed, and retrained (``_nlist_for``) each
time the index outgrows it by ~4x, so ingestion never trains on an ordinary add.
A retrain keeps the scalar quantizer, so every stored code stays bit-identical:
vectors are decoded, reassigned to the new lists and re-encoded to the same bytes.
An IVF index that shrinks stays IVF with its lists (searches only get cheaper).

A flat or HNSW index is an ``IndexIDMap2``. HNSW cannot delete a node, so ``remove``
on an HNSW index writes -1 over the id in the id map (a tombstone). Searches pass a
selector that skips negative ids, so removed vectors are never returned; once
tombstones pass ``COMPACT_FRACTION`` of the index it is rebuilt without them.

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

from kg import index_files
from kg.rwlock import ReadWriteLock
from kgqa.errors import EmbedderMismatch
from models.embedding.identity import EmbedderIdentity

logger = logging.getLogger(__name__)

# Vectors. Single-query flat search costs ~0.7-1.4 ms per 10k vectors on one busy CPU core
# (bench/embed.py, bench/vector_index.py), so past ~20k it eats the retrieval budget and IVF-SQ8 takes over.
IVF_THRESHOLD = 20_000
# Lists searched a query: a 16th of them, between 32 and 128 (None: that rule; an int pins it). On
# 384-d vectors in equal clusters of 50 (the hardest synthetic set, bench/vector_index.py) recall@10
# vs exact was 0.96 at 100k vectors (512 lists, nprobe 32) and 0.80 / 0.89 / 0.946 at 1M (2048 lists,
# nprobe 32 / 64 / 128, p50 1.1 / 2.3 / 3.8 ms); on topic-structured vectors 0.985 from nprobe 16.
IVF_NPROBE: int | None = None
IVF_NPROBE_SHARE = 16
IVF_NPROBE_MIN, IVF_NPROBE_MAX = 32, 128  # 128 of 4096 lists at 3M vectors: ~94k codes, ~6 ms by the 1M figures
IVF_LISTS_PER_SQRT = 2  # nlist ~ 2 sqrt(n), a power of two: 2048 lists at 1M, 4096 at 3M
IVF_MAX_LISTS = 65_536
IVF_TRAIN_PER_LIST = 40  # k-means sample: vectors per centroid (faiss warns below 39)
# The scalar quantizer's per-dimension range is the training sample's min..max widened by this
# share each side, so later vectors are rarely clipped: trained on 3k of 12k clustered 32-d vectors,
# the worst score error fell from 0.098 (no margin) to 0.028 (0.1), recall@10 0.937 -> 0.943.
IVF_SQ_RANGE_MARGIN = 0.1
# k-means iterations (faiss's IVF default). Re-clustering (bench/vector_index.py, 2 shared cores):
# 524k vectors into 2048 lists 23-39 s, 2.1M into 4096 lists 202 s; a 3M build by 64-vector adds
# took 467 s, 258 s of it training (14k adds/s besides).
IVF_TRAIN_ITERATIONS = 10
# HNSW: only for indexes saved by earlier versions, which still load, search and shrink.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # at 20k clustered vectors: recall@10 0.97 in 0.8 ms (128: 0.93 in 0.5 ms)
COMPACT_FRACTION = 0.25  # rebuild an HNSW index once this share of it is tombstones
_MAX_ID = np.iinfo(np.int64).max
# Up to this many queries, search on the calling thread only: OpenMP threads splitting one
# query wait on each other, which on a busy machine made a 10k flat search 40x slower.
# Concurrent requests still run in parallel, each on its own thread.
SMALL_BATCH = 4
# Adds of up to this many vectors run on the calling thread too: 64 at a time (as ingestion adds)
# into a 512-list IVF-SQ8 index, 57k vectors/s on one thread vs 10k/s on two, on a busy 2-core machine.
SMALL_ADD = 1024


class VectorIndex:
    """A thread-safe id-mapped FAISS index: many concurrent searches, one writer at a time."""

    def __init__(self, index, *, embedder: EmbedderIdentity | None = None,
                 ivf_threshold: int = IVF_THRESHOLD, read_only: bool = False) -> None:
        """Wrap an existing ``IndexIDMap2`` or ``IndexIVFScalarQuantizer``; use ``create`` or ``load`` instead."""
        import faiss

        if not isinstance(index, (faiss.IndexIDMap2, faiss.IndexIVFScalarQuantizer)):
            raise TypeError(f"expected faiss.IndexIDMap2 or IndexIVFScalarQuantizer, got {type(index).__name__}")
        if embedder is not None and embedder.dim != index.d:
            raise ValueError(f"a {index.d}-d index cannot hold the vectors of {embedder}")
        self._index = index
        self._embedder = embedder
        self.ivf_threshold = ivf_threshold
        self.read_only = read_only  # memory-mapped: searches only
        self._lock = ReadWriteLock()
        self._write_lock = threading.Lock()  # serialises save() with writers
        self._ivf_ids: _IdRegistry | None = None  # the writer's id set of an IVF index, built at its first write

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, *, embedder: EmbedderIdentity | None = None,
               ivf_threshold: int = IVF_THRESHOLD) -> "VectorIndex":
        """An empty flat index (for ``embedder``'s vectors, recorded at save); it turns into IVF-SQ8 by itself
        when it grows past the threshold."""
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        return cls(_new_id_map(_flat(int(dim))), embedder=embedder, ivf_threshold=ivf_threshold)

    @classmethod
    def load(cls, path: str | os.PathLike, *, embedder: EmbedderIdentity | None = None,
             ivf_threshold: int = IVF_THRESHOLD, mmap: bool = False, checked: bool = False,
             repair: str = "") -> "VectorIndex":
        """Read a saved index and its embedder record; with ``embedder``, refuse an index another one built.

        ``mmap`` maps the vectors (flat, HNSW or the IVF lists) from the file instead of copying
        them (``IO_FLAG_MMAP_IFC``): page cache that every process serving the same index shares,
        for a read-only index (``add``/``remove`` refuse).

        ``checked`` (for serving) first compares the index and its record with their stamps in the
        manifest of their folder (kg/index_files.py) and parses the very bytes checked: a file up to
        ``index_files.COPY_MAX_BYTES`` is read into memory even with ``mmap``, so nothing done to it
        later reaches the process; only a larger one is mapped. A missing, cut-short, changed or
        unparseable file raises ``DamagedIndexFile`` naming it by its place in the data folder,
        followed by ``repair`` (what to do about it).
        """
        import faiss

        path = Path(path)
        name, data, record_data = str(path), None, None
        if checked:
            name = index_files.display_name(path.parent, path)
            data = index_files.read_checked(path.parent, path, repair=repair)
            record = embedder_record_path(path)
            if record.is_file() or index_files.stamped(path.parent, record):
                record_data = index_files.read_checked(path.parent, record, repair=repair)
        elif not path.is_file():
            raise FileNotFoundError(f"no vector index at {path}")
        try:
            if data is not None:
                index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            else:
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0)
        except RuntimeError:
            if not checked:
                raise
            raise index_files.DamagedIndexFile(name, "cannot be read as a FAISS index", repair=repair) from None
        if not isinstance(index, (faiss.IndexIDMap2, faiss.IndexIVFScalarQuantizer)):
            raise ValueError(f"{name} holds a {type(index).__name__}, not an id-mapped index")
        recorded = _read_embedder_record(path, record_data, checked=checked, repair=repair)
        if recorded is not None and recorded.dim != index.d:
            raise ValueError(f"{name}.json says {recorded.dim}-d, the index holds {index.d}-d vectors")
        if embedder is not None:
            _check_embedder(name, index.d, recorded, embedder)
            if recorded is None:
                logger.warning("the vector index %s records no embedder (saved before indexes recorded one); "
                               "taking it as built by %s, recorded at its next save", name, embedder)
        return cls(index, embedder=recorded or embedder, ivf_threshold=ivf_threshold, read_only=mmap)

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
        """"flat", "ivf" (IVF-SQ8) or "hnsw" (an index saved by an earlier version)."""
        return _kind(self._index)

    @property
    def nlist(self) -> int:
        """Inverted lists of an IVF index (0 for flat and HNSW)."""
        return self._index.nlist if self.kind == "ivf" else 0

    @property
    def nprobe(self) -> int:
        """Lists an IVF search visits (0 for flat and HNSW)."""
        if self.kind != "ivf":
            return 0
        if IVF_NPROBE is not None:
            return IVF_NPROBE
        return min(self._index.nlist, max(IVF_NPROBE_MIN, min(IVF_NPROBE_MAX, self._index.nlist // IVF_NPROBE_SHARE)))

    @property
    def ntotal(self) -> int:
        """Live vectors (tombstones excluded)."""
        with self._lock.reading():
            if self.kind == "ivf":
                return int(self._index.ntotal)
            return int(np.count_nonzero(self._id_map_view() >= 0))

    def ids(self) -> np.ndarray:
        """The live vector ids, int64: in insertion order (flat, HNSW) or list by list (IVF)."""
        with self._lock.reading():
            if self.kind == "ivf":
                return _ivf_ids(self._index)
            id_map = self._id_map_view()
            return id_map[id_map >= 0].copy()

    def max_id(self) -> int:
        """The largest live id, -1 when empty; cheap for the writer of an IVF index (ingestion asks
        before every SQL batch)."""
        with self._lock.reading():
            if self.kind == "ivf" and self._ivf_ids is not None:
                return self._ivf_ids.max_id()
            if self.kind == "ivf":
                live = _ivf_ids(self._index)
            else:
                live = self._id_map_view()
            return int(live.max()) if len(live) else -1

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
            taken = self._present(vector_ids)
            if taken.any():
                raise ValueError(f"vector ids already in the index: {vector_ids[taken][:10].tolist()}")
            if self.kind == "ivf":
                with _single_threaded(len(vector_ids) <= SMALL_ADD):
                    self._index.add_with_ids(vectors, vector_ids)
                self._ivf_ids.add(vector_ids)
                if _nlist_for(self._index.ntotal) >= 2 * self._index.nlist:
                    self._retrain()
            elif self._index.ntotal + len(vector_ids) > self.ivf_threshold:
                self._rebuild(extra_ids=vector_ids, extra_vectors=vectors)
            else:
                with _single_threaded(len(vector_ids) <= SMALL_ADD):
                    self._index.add_with_ids(vectors, vector_ids)

    def remove(self, vector_ids: np.ndarray) -> int:
        """Remove these ids (unknown ids are ignored); returns how many were removed."""
        self._check_writable()
        vector_ids = _check_ids(vector_ids, "vector_ids")
        if len(vector_ids) == 0:
            return 0
        import faiss

        with self._write_lock, self._lock.writing():
            if self.kind == "ivf":
                removed = int(self._index.remove_ids(faiss.IDSelectorBatch(vector_ids)))
                self._registry().discard(vector_ids)
                return removed
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
        """The stored vector of one id (KeyError if absent); SQ8-decoded for an IVF index."""
        with self._lock.reading():
            if self.kind == "ivf":
                return _ivf_reconstruct(self._index, int(vector_id))
            if vector_id < 0 or vector_id not in self._id_map_view():
                raise KeyError(vector_id)
            return self._index.reconstruct(int(vector_id))

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, stamp: bool = False) -> Path:
        """Write the index and its embedder record atomically: temp files in the same folder, fsync,
        then ``os.replace`` each (the record never changes once written, so their order is safe).

        ``stamp`` records their sizes and checksums in the manifest of the folder (kg/index_files.py), so
        that a kill at any point leaves files that match their stamps.
        """
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
            if stamp:
                index_files.expect(path.parent, dict(zip(targets, temps)))
            for tmp, target in zip(temps, targets):
                os.replace(tmp, target)
            if stamp:
                index_files.stamp(path.parent, targets)
        except BaseException:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
            raise
        return path

    # -- internals ----------------------------------------------------------------------------
    def _id_map_view(self) -> np.ndarray:
        """A writable numpy view of the id map of a flat or HNSW index (no copy)."""
        import faiss

        n = self._index.id_map.size()
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.rev_swig_ptr(self._index.id_map.data(), n)

    def _registry(self) -> _IdRegistry:
        if self._ivf_ids is None:
            self._ivf_ids = _IdRegistry(_ivf_ids(self._index))
        return self._ivf_ids

    def _present(self, vector_ids: np.ndarray) -> np.ndarray:
        if self.kind == "ivf":
            return self._registry().contains(vector_ids)
        return np.isin(vector_ids, self._id_map_view())

    def _search_params(self):
        import faiss

        kind = self.kind
        if kind == "flat":
            return None
        if kind == "ivf":
            return faiss.SearchParametersIVF(nprobe=self.nprobe)
        if np.any(self._id_map_view() < 0):
            # Tombstones carry id -1; the selector sees the mapped ids and keeps only real ones.
            # Passed as a keyword, the params object keeps the selector alive.
            return faiss.SearchParametersHNSW(efSearch=HNSW_EF_SEARCH, sel=faiss.IDSelectorRange(0, _MAX_ID))
        return faiss.SearchParametersHNSW(efSearch=HNSW_EF_SEARCH)

    def _rebuild(self, extra_ids: np.ndarray | None = None, extra_vectors: np.ndarray | None = None):
        """Rebuild a flat or HNSW index without tombstones, as flat or IVF-SQ8 by size (caller holds the
        write lock); IVF trains on these vectors."""
        id_map = self._id_map_view()
        live = np.flatnonzero(id_map >= 0)
        ids = id_map[live].copy()
        vectors = (self._index.index.reconstruct_batch(live) if len(live)
                   else np.zeros((0, self.dim), dtype=np.float32))
        if extra_ids is not None:
            ids = np.concatenate([ids, extra_ids])
            vectors = np.concatenate([vectors, extra_vectors])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) > self.ivf_threshold:
            rebuilt = _ivf_sq8(self.dim, _nlist_for(len(ids)), vectors)
            rebuilt.add_with_ids(vectors, ids)
            self._ivf_ids = _IdRegistry(ids)
            logger.info("vector index: %d vectors, now IVF-SQ8 with %d lists", len(ids), rebuilt.nlist)
        else:
            rebuilt = _new_id_map(_flat(self.dim))
            if len(ids):
                rebuilt.add_with_ids(vectors, ids)
        self._index = rebuilt

    def _retrain(self) -> None:
        """Re-cluster an IVF index that outgrew its lists (caller holds the write lock).

        The scalar quantizer is kept, so each vector decodes and re-encodes to the same code;
        only its list changes. Lists are moved one at a time, so the float copy held at once
        is the k-means sample plus one list.
        """
        old = self._index
        nlist = _nlist_for(old.ntotal)
        sample = _ivf_sample(old, nlist * IVF_TRAIN_PER_LIST)
        new = _ivf_sq8(self.dim, nlist, sample, sq=old.sq)
        for list_ids, codes in _ivf_lists(old):
            if len(list_ids):
                new.add_with_ids(old.sq.decode(codes), list_ids.copy())
        self._index = new
        logger.info("vector index: %d vectors, re-clustered into %d lists", new.ntotal, nlist)


def embedder_record_path(index_path: str | os.PathLike) -> Path:
    """Where the embedder record of an index file lives: ``passages.faiss`` -> ``passages.faiss.json``."""
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + ".json")


def _read_embedder_record(index_path: Path, data: bytes | None = None, *, checked: bool = False,
                          repair: str = "") -> EmbedderIdentity | None:
    """The embedder an index file records (``data``: its checked bytes), or None for an index saved before
    indexes recorded one."""
    record = embedder_record_path(index_path)
    if data is None:
        if checked or not record.is_file():
            return None
        data = record.read_bytes()
    try:
        return EmbedderIdentity.model_validate_json(data)
    except ValidationError as exc:
        if checked:
            raise index_files.DamagedIndexFile(index_files.display_name(record.parent, record),
                                               "is not an embedder record", repair=repair) from None
        raise ValueError(f"{record} is not an embedder record: {exc.errors()[0]['msg']}") from None


def _check_embedder(name: str, dim: int, recorded: EmbedderIdentity | None, embedder: EmbedderIdentity) -> None:
    if recorded is not None and recorded.same_vectors(embedder):
        return
    if recorded is None and dim == embedder.dim:
        return
    built = f"was built with {recorded}" if recorded else f"holds {dim}-d vectors of an unrecorded embedder"
    raise EmbedderMismatch(
        f"the index {name} {built}; the configured embedder is {embedder}: re-ingest into a new data folder "
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


def _new_id_map(inner):
    import faiss

    # The python wrapper keeps a reference to ``inner`` for as long as the id map lives.
    return faiss.IndexIDMap2(inner)


def _kind(index) -> str:
    import faiss

    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "hnsw" if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW) else "flat"


def _nlist_for(n: int) -> int:
    """Inverted lists for ``n`` vectors: the power of two nearest ``IVF_LISTS_PER_SQRT * sqrt(n)``,
    with at least ``IVF_TRAIN_PER_LIST`` vectors to train each centroid."""
    target = IVF_LISTS_PER_SQRT * np.sqrt(max(n, 1))
    nlist = 2 ** round(float(np.log2(target)))
    while nlist > 1 and nlist * IVF_TRAIN_PER_LIST > n:
        nlist //= 2
    return int(min(nlist, IVF_MAX_LISTS))


def _ivf_sq8(dim: int, nlist: int, train_vectors: np.ndarray, sq=None):
    """An empty IVF-SQ8 index (codes not by residual, so they do not depend on the lists), its
    centroids trained on a sample of ``train_vectors``; with ``sq``, that scalar quantizer is kept."""
    import faiss

    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.cp.niter = IVF_TRAIN_ITERATIONS
    index.cp.max_points_per_centroid = IVF_TRAIN_PER_LIST
    sample = train_vectors
    if len(sample) > nlist * IVF_TRAIN_PER_LIST:
        picks = np.random.default_rng(0).choice(len(sample), nlist * IVF_TRAIN_PER_LIST, replace=False)
        sample = train_vectors[np.sort(picks)]
    if sq is None:
        index.sq.rangestat_arg = IVF_SQ_RANGE_MARGIN
        index.train(sample)
    else:
        clustering = faiss.Clustering(dim, nlist, index.cp)
        clustering.train(sample, quantizer)
        index.sq = sq
        index.is_trained = True
    return index  # the python wrapper keeps ``quantizer`` alive with the index


def _ivf_lists(index) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each non-empty inverted list as (ids, codes (n, code_size) uint8): views, valid while the
    index is unchanged."""
    import faiss

    invlists = index.invlists
    code_size = invlists.code_size
    for list_no in range(index.nlist):
        n = invlists.list_size(list_no)
        if n == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), n)
        codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), n * code_size).reshape(n, code_size)
        yield ids, codes


def _ivf_ids(index) -> np.ndarray:
    parts = [ids.copy() for ids, _ in _ivf_lists(index)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _ivf_sample(index, n: int) -> np.ndarray:
    """About ``n`` decoded vectors drawn uniformly from an IVF-SQ8 index, one list at a time."""
    share = min(1.0, n / max(index.ntotal, 1))
    rng = np.random.default_rng(0)
    parts = []
    for _, codes in _ivf_lists(index):
        picked = codes[rng.random(len(codes)) < share]
        if len(picked):
            parts.append(index.sq.decode(np.ascontiguousarray(picked)))
    return np.concatenate(parts) if parts else np.zeros((0, index.d), dtype=np.float32)


def _ivf_reconstruct(index, vector_id: int) -> np.ndarray:
    for ids, codes in _ivf_lists(index):
        hit = np.flatnonzero(ids == vector_id)
        if len(hit):
            return index.sq.decode(np.ascontiguousarray(codes[hit[:1]]))[0]
    raise KeyError(vector_id)


class _IdRegistry:
    """The writer's set of an IVF index's ids, 8 bytes an id: a sorted array plus the ids added and
    removed since it was last merged (merged once they reach an eighth of it), so checking a
    batch of new ids costs a binary search, not a scan of the index."""

    def __init__(self, ids: np.ndarray) -> None:
        self._base = np.sort(ids)
        self._added: set[int] = set()
        self._removed: set[int] = set()

    def contains(self, ids: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(self._base, ids), max(len(self._base) - 1, 0))
        in_base = (self._base[pos] == ids) if len(self._base) else np.zeros(len(ids), dtype=bool)
        return np.array([(hit and i not in self._removed) or i in self._added
                         for i, hit in zip(ids.tolist(), in_base.tolist())], dtype=bool)

    def add(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            if i in self._removed:
                self._removed.discard(i)
            else:
                self._added.add(i)
        self._maybe_merge()

    def discard(self, ids: np.ndarray) -> None:
        present = self.contains(ids)
        for i in ids[present].tolist():
            if i in self._added:
                self._added.discard(i)
            else:
                self._removed.add(i)
        self._maybe_merge()

    def max_id(self) -> int:
        """The largest id held (-1 when none), without merging: walks back over removed ids only."""
        best = max(self._added, default=-1)
        for i in self._base[::-1]:
            if int(i) not in self._removed:
                return max(best, int(i))
        return best

    def _maybe_merge(self) -> None:
        if len(self._added) + len(self._removed) > max(4096, len(self._base) // 8):
            base = self._base
            if self._removed:
                base = base[~np.isin(base, np.fromiter(self._removed, dtype=np.int64))]
            added = np.fromiter(self._added, dtype=np.int64, count=len(self._added))
            self._base = np.sort(np.concatenate([base, added]))
            self._added.clear()
            self._removed.clear()


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
