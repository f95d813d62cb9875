"""VectorIndex: id mapping, flat search, legacy HNSW files, removal, atomic persistence, input checks, threads.

The compressed (IVF-SQ8) index has its own tests in ``test_vector_index_ivf.py``."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from kg.vector_index import VectorIndex

DIM = 16


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


@pytest.fixture
def filled() -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    vectors = unit_vectors(200)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index = VectorIndex.create(DIM)
    index.add(ids, vectors)
    return index, ids, vectors


def test_search_returns_mapped_ids_and_exact_scores(filled):
    index, ids, vectors = filled
    scores, found = index.search(vectors[:5], 10)
    assert found.dtype == np.int64 and scores.shape == found.shape == (5, 10)
    assert found[:, 0].tolist() == ids[:5].tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    np.testing.assert_array_equal(found, exact_top(vectors, ids, vectors[:5], 10))
    assert index.ntotal == 200 and index.kind == "flat"


def test_fewer_vectors_than_k_pads_with_minus_one():
    index = VectorIndex.create(DIM)
    scores, found = index.search(unit_vectors(2), 3)
    assert (found == -1).all() and np.isneginf(scores).all()
    index.add(np.array([7], dtype=np.int64), unit_vectors(1))
    scores, found = index.search(unit_vectors(1), 3)
    assert found[0].tolist() == [7, -1, -1] and np.isneginf(scores[0, 1:]).all()


def test_remove_flat(filled):
    index, ids, vectors = filled
    assert index.remove(np.array([1000, 1001, 99999], dtype=np.int64)) == 2
    assert index.ntotal == 198 and 1000 not in index.ids()
    _, found = index.search(vectors[:2], 5)
    assert 1000 not in found and 1001 not in found
    index.add(np.array([1000], dtype=np.int64), vectors[:1])  # a removed id can come back
    assert index.search(vectors[:1], 1)[1][0, 0] == 1000


def legacy_hnsw(tmp_path: Path, ids: np.ndarray, vectors: np.ndarray) -> Path:
    """An HNSW index file as earlier versions saved it: IndexIDMap2 over IndexHNSWFlat."""
    import faiss

    inner = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, ids)
    path = tmp_path / "legacy.faiss"
    faiss.write_index(index, str(path))
    return path


def test_a_legacy_hnsw_index_loads_searches_and_removes_with_tombstones(tmp_path: Path):
    vectors = unit_vectors(400, seed=1)
    ids = np.arange(400, dtype=np.int64) * 3
    index = VectorIndex.load(legacy_hnsw(tmp_path, ids, vectors), ivf_threshold=1000)
    assert index.kind == "hnsw" and index.ntotal == 400
    _, found = index.search(vectors[:20], 1)
    assert found[:, 0].tolist() == ids[:20].tolist()

    removed = ids[:50]
    assert index.remove(removed) == 50
    assert index.kind == "hnsw" and index.ntotal == 350
    _, found = index.search(vectors[:50], 10)
    assert not np.isin(found, removed).any()
    assert (found >= 0).all()  # tombstones never show up as -1 holes either
    with pytest.raises(KeyError):
        index.reconstruct(int(removed[0]))

    path = index.save(tmp_path / "index.faiss")
    loaded = VectorIndex.load(path, ivf_threshold=1000)
    assert loaded.kind == "hnsw" and loaded.ntotal == 350
    np.testing.assert_array_equal(np.sort(loaded.ids()), np.sort(ids[50:]))
    _, found = loaded.search(vectors[:50], 10)
    assert not np.isin(found, removed).any()
    mapped = VectorIndex.load(path, mmap=True)
    np.testing.assert_array_equal(mapped.search(vectors[50:60], 5)[1], loaded.search(vectors[50:60], 5)[1])

    loaded.add(removed[:5], vectors[:5])  # re-adding a tombstoned id works
    assert loaded.search(vectors[:1], 1)[1][0, 0] == removed[0]


def test_many_tombstones_compact_a_legacy_hnsw_index(tmp_path: Path):
    vectors = unit_vectors(300, seed=2)
    ids = np.arange(300, dtype=np.int64)
    index = VectorIndex.load(legacy_hnsw(tmp_path, ids, vectors), ivf_threshold=1000)
    index.remove(ids[:200])  # 2/3 tombstones: rebuilt, and small enough to be flat
    assert index.kind == "flat" and index.ntotal == 100
    _, found = index.search(vectors[200:210], 1)
    assert found[:, 0].tolist() == ids[200:210].tolist()


def test_a_legacy_hnsw_index_grown_past_the_threshold_becomes_ivf(tmp_path: Path):
    vectors = unit_vectors(700, seed=4)
    ids = np.arange(700, dtype=np.int64)
    index = VectorIndex.load(legacy_hnsw(tmp_path, ids[:400], vectors[:400]), ivf_threshold=500)
    index.remove(ids[:10])
    index.add(ids[400:], vectors[400:])
    assert index.kind == "ivf" and index.ntotal == 690
    np.testing.assert_array_equal(np.sort(index.ids()), ids[10:])


def test_save_load_round_trip(filled, tmp_path: Path):
    index, ids, vectors = filled
    path = index.save(tmp_path / "sub" / "passages.faiss")
    loaded = VectorIndex.load(path)
    np.testing.assert_array_equal(loaded.ids(), ids)
    np.testing.assert_array_equal(loaded.search(vectors[:3], 4)[1], index.search(vectors[:3], 4)[1])
    np.testing.assert_allclose(loaded.reconstruct(1005), vectors[5], atol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["passages.faiss"]


@pytest.mark.parametrize("threshold", [10_000, 100], ids=["flat", "ivf"])
def test_a_memory_mapped_index_searches_alike_and_refuses_changes(tmp_path: Path, threshold: int):
    vectors, ids = unit_vectors(300, seed=3), np.arange(300, dtype=np.int64)
    index = VectorIndex.create(DIM, ivf_threshold=threshold)
    index.add(ids, vectors)
    mapped = VectorIndex.load(index.save(tmp_path / "passages.faiss"), ivf_threshold=threshold, mmap=True)
    assert mapped.kind == index.kind and mapped.read_only
    np.testing.assert_array_equal(mapped.search(vectors[:5], 3)[1], index.search(vectors[:5], 3)[1])
    with pytest.raises(ValueError, match="memory-mapped read-only"):
        mapped.add(np.array([999]), vectors[:1])
    with pytest.raises(ValueError, match="memory-mapped read-only"):
        mapped.remove(ids[:1])


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(filled, tmp_path: Path, monkeypatch):
    import faiss

    index, ids, _ = filled
    path = index.save(tmp_path / "passages.faiss")
    before = path.read_bytes()
    index.add(np.array([5000], dtype=np.int64), unit_vectors(1, seed=9))

    def broken_write(idx, name):
        Path(name).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["passages.faiss"]
    monkeypatch.undo()
    assert VectorIndex.load(path).ntotal == len(ids)


def test_load_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "missing.faiss")
    import faiss

    faiss.write_index(faiss.IndexFlatIP(DIM), str(tmp_path / "plain.faiss"))
    with pytest.raises(ValueError, match="id-mapped"):
        VectorIndex.load(tmp_path / "plain.faiss")


@pytest.mark.parametrize(
    "ids, vectors, error, message",
    [
        (np.arange(2, dtype=np.int64), unit_vectors(2).astype(np.float64), TypeError, "float32"),
        (np.arange(2, dtype=np.int32), unit_vectors(2), TypeError, "int64"),
        ([0, 1], unit_vectors(2), TypeError, "numpy array"),
        (np.arange(2, dtype=np.int64), unit_vectors(2)[:, :8].copy(), ValueError, "shape"),
        (np.arange(3, dtype=np.int64), unit_vectors(2), ValueError, "3 ids for 2 vectors"),
        (np.array([4, 4], dtype=np.int64), unit_vectors(2), ValueError, "duplicates"),
        (np.array([-1, 4], dtype=np.int64), unit_vectors(2), ValueError, "non-negative"),
        (np.arange(2, dtype=np.int64), np.full((2, DIM), np.nan, dtype=np.float32), ValueError, "NaN"),
    ],
)
def test_add_rejects_bad_input_and_changes_nothing(filled, ids, vectors, error, message):
    index, _, _ = filled
    with pytest.raises(error, match=message):
        index.add(ids, vectors)
    assert index.ntotal == 200


def test_add_rejects_ids_already_present(filled):
    index, _, vectors = filled
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.array([1003, 5000], dtype=np.int64), vectors[:2])
    assert index.ntotal == 200 and 5000 not in index.ids()


def test_search_rejects_bad_queries(filled):
    index, _, vectors = filled
    with pytest.raises(TypeError, match="float32"):
        index.search(vectors[:1].astype(np.float64), 3)
    with pytest.raises(ValueError, match="shape"):
        index.search(vectors[0], 3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(vectors[:1], 0)
    with pytest.raises(ValueError, match="dim"):
        VectorIndex.create(0)


def test_concurrent_searches_and_writes_stay_consistent():
    """Readers run while a writer adds and removes; every answer is an id that was live and correct."""
    vectors = unit_vectors(1200, seed=3)
    ids = np.arange(1200, dtype=np.int64)
    index = VectorIndex.create(DIM, ivf_threshold=600)
    index.add(ids[:500], vectors[:500])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                picks = rng.integers(0, 100, size=4)  # ids 0..99 are never removed
                _, found = index.search(vectors[picks], 3)
                assert found[:, 0].tolist() == ids[picks].tolist()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    try:
        for start in range(500, 1200, 100):  # crosses the IVF threshold mid-way
            index.add(ids[start:start + 100], vectors[start:start + 100])
            index.remove(ids[start:start + 20])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors[0]
    assert index.kind == "ivf" and index.ntotal == 1200 - 7 * 20
