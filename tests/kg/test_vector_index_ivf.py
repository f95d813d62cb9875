"""VectorIndex past its threshold: the compressed IVF-SQ8 index against exact search, removal,
memory-mapped loading, the automatic switch and re-clustering, and the older file formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kg.vector_index as vi
from kg.vector_index import VectorIndex

DIM = 32
CHUNK = 64  # kg/vectors.py adds this many at a time


def clustered(n: int, seed: int = 0, clusters: int = 2_000, spread: float = 0.5) -> np.ndarray:
    """Unit vectors around random centres: neighbours share a cluster, as passages share a topic.

    More clusters than lists, so probing matters: at 12k vectors and 256 lists, recall@10 is 0.50
    at nprobe 1, 0.79 at 8 and 0.94 at 32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM))
    vectors = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, DIM))
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


def grown(n: int, threshold: int, seed: int = 0) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    vectors = clustered(n, seed)
    ids = np.arange(n, dtype=np.int64) * 2 + 7  # not positions: ids must come back mapped
    index = VectorIndex.create(DIM, ivf_threshold=threshold)
    for start in range(0, n, CHUNK):
        index.add(ids[start:start + CHUNK], vectors[start:start + CHUNK])
    return index, ids, vectors


@pytest.fixture(scope="module")
def big() -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    return grown(12_000, threshold=3_000)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(12_200, seed=0)[12_000:]  # the same clusters, not in the index


def test_recall_at_10_against_exact_search(big, queries):
    index, ids, vectors = big
    assert index.kind == "ivf" and index.ntotal == len(ids)
    assert index.nprobe <= index.nlist / 8  # a real approximation: most lists stay unsearched
    scores, found = index.search(queries, 10)
    assert recall(found, exact_top(vectors, ids, queries, 10)) >= 0.9
    assert np.isin(found, ids).all()
    cosines = np.einsum("qd,qkd->qk", queries, vectors[(found - 7) // 2])
    np.testing.assert_allclose(scores, cosines, atol=0.05)  # SQ8 scores stay close to the true cosines


def test_an_ivf_index_takes_a_quarter_of_the_bytes(big, tmp_path: Path):
    index, ids, _ = big
    path = index.save(tmp_path / "passages.faiss")
    per_vector = path.stat().st_size / len(ids)
    assert per_vector < DIM * 4 * 0.6  # float32 would be 128 bytes; SQ8 codes 32 + an 8-byte id + centroids


def test_the_switch_trains_once_at_the_threshold_and_again_only_at_fourfold_growth(monkeypatch):
    trained: list[int] = []
    real = vi._ivf_sq8

    def counting(dim, nlist, train_vectors, sq=None):
        trained.append(len(train_vectors))
        return real(dim, nlist, train_vectors, sq=sq)

    monkeypatch.setattr(vi, "_ivf_sq8", counting)
    vectors = clustered(5_000, seed=1)
    ids = np.arange(5_000, dtype=np.int64)
    index = VectorIndex.create(DIM, ivf_threshold=1_000)
    kinds = []
    for start in range(0, 5_000, CHUNK):
        index.add(ids[start:start + CHUNK], vectors[start:start + CHUNK])
        kinds.append(index.kind)
    first_ivf = kinds.index("ivf")
    assert set(kinds[:first_ivf]) == {"flat"} and set(kinds[first_ivf:]) == {"ivf"}
    assert first_ivf * CHUNK <= 1_000 < (first_ivf + 1) * CHUNK  # switched by the add that crossed it
    assert trained[0] == (first_ivf + 1) * CHUNK  # trained on the vectors present at the switch
    assert len(trained) == 3  # 1,024 vectors: 16 lists; 32 lists from 1,280; 64 from 2,560 (not 5,120)
    assert index.nlist == vi._nlist_for(5_000) == 64
    _, found = index.search(vectors[:50], 1)
    assert (found[:, 0] == ids[:50]).mean() >= 0.9


def test_re_clustering_keeps_every_code(monkeypatch):
    vectors = clustered(3_000, seed=2)
    ids = np.arange(3_000, dtype=np.int64)
    index = VectorIndex.create(DIM, ivf_threshold=1_000)
    index.add(ids[:1_100], vectors[:1_100])
    before = {int(i): index.reconstruct(int(i)) for i in ids[:20]}
    nlist = index.nlist
    index.add(ids[1_100:], vectors[1_100:])
    assert index.nlist > nlist
    for i, vector in before.items():
        np.testing.assert_array_equal(index.reconstruct(i), vector)
    np.testing.assert_allclose(index.reconstruct(5), vectors[5], atol=0.02)


def test_removal_is_real_and_ids_can_return(tmp_path: Path):
    index, ids, vectors = grown(2_000, threshold=500, seed=3)
    removed = ids[:100]
    assert index.remove(np.concatenate([removed, [10**9]])) == 100
    assert index.ntotal == 1_900 and not np.isin(removed, index.ids()).any()
    _, found = index.search(vectors[:100], 10)
    assert not np.isin(found, removed).any() and (found >= 0).all()
    with pytest.raises(KeyError):
        index.reconstruct(int(removed[0]))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(ids[100:101], vectors[100:101])
    index.add(removed[:5], vectors[:5])  # a removed id can come back
    assert index.search(vectors[:1], 1)[1][0, 0] == removed[0]
    assert index.remove(removed[:5]) == 5 and index.remove(removed[:5]) == 0
    loaded = VectorIndex.load(index.save(tmp_path / "passages.faiss"))
    np.testing.assert_array_equal(np.sort(loaded.ids()), np.sort(ids[100:]))


def test_save_and_memory_mapped_load_search_alike(big, queries, tmp_path: Path):
    index, ids, vectors = big
    path = index.save(tmp_path / "passages.faiss")
    mapped = VectorIndex.load(path, ivf_threshold=3_000, mmap=True)
    copied = VectorIndex.load(path, ivf_threshold=3_000)
    assert mapped.kind == copied.kind == "ivf" and mapped.read_only and mapped.ntotal == len(ids)
    expected_scores, expected = index.search(queries, 10)
    for loaded in (mapped, copied):
        scores, found = loaded.search(queries, 10)
        np.testing.assert_array_equal(found, expected)
        np.testing.assert_array_equal(scores, expected_scores)
    np.testing.assert_array_equal(np.sort(mapped.ids()), np.sort(ids))
    with pytest.raises(ValueError, match="memory-mapped read-only"):
        mapped.add(np.array([1], dtype=np.int64), vectors[:1])
    copied.add(np.array([1], dtype=np.int64), vectors[:1])  # a copied load stays writable
    assert copied.search(vectors[:1], 1)[1][0, 0] in (1, ids[0])


def test_fewer_results_than_k_pad_with_minus_one():
    index, ids, vectors = grown(700, threshold=600, seed=4)
    index.remove(ids[10:])
    scores, found = index.search(vectors[:1], 20)
    assert index.kind == "ivf" and (found[0, 10:] == -1).all() and np.isneginf(scores[0, 10:]).all()


@pytest.mark.parametrize("inner", ["flat", "hnsw"])
def test_files_saved_by_the_earlier_format_load(tmp_path: Path, inner: str):
    """Before IVF, every index file was an IndexIDMap2 over IndexFlatIP or IndexHNSWFlat."""
    import faiss

    vectors = clustered(500, seed=5)
    ids = np.arange(500, dtype=np.int64) + 100
    raw = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM) if inner == "flat"
                            else faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT))
    raw.add_with_ids(vectors, ids)
    faiss.write_index(raw, str(tmp_path / "old.faiss"))
    for mmap in (False, True):
        index = VectorIndex.load(tmp_path / "old.faiss", mmap=mmap)
        assert index.kind == inner and index.ntotal == 500
        assert index.search(vectors[:10], 1)[1][:, 0].tolist() == ids[:10].tolist()


def test_nlist_grows_with_the_square_root_and_never_outruns_its_training_sample():
    assert vi._nlist_for(20_000) == 256
    assert vi._nlist_for(1_000_000) == 2_048
    assert vi._nlist_for(3_000_000) == 4_096
    for n in (1, 50, 700, 20_000, 10**6):
        assert vi._nlist_for(n) * vi.IVF_TRAIN_PER_LIST <= max(n, vi.IVF_TRAIN_PER_LIST)


def test_max_id_follows_adds_and_removals(tmp_path: Path):
    index, ids, vectors = grown(1_000, threshold=500, seed=6)
    assert index.max_id() == ids.max()
    index.remove(ids[-3:])
    assert index.max_id() == ids[-4]
    index.add(np.array([10**6], dtype=np.int64), vectors[:1])
    assert index.max_id() == 10**6
    index.remove(np.array([10**6], dtype=np.int64))
    assert index.max_id() == ids[-4]
    assert VectorIndex.load(index.save(tmp_path / "passages.faiss"), mmap=True).max_id() == ids[-4]
    assert VectorIndex.create(DIM).max_id() == -1


def test_nprobe_is_a_sixteenth_of_the_lists_within_bounds_unless_pinned(big, queries, monkeypatch):
    index, ids, vectors = big
    assert index.nlist == 256 and index.nprobe == 32  # 256 / 16 = 16, raised to the floor of 32
    assert VectorIndex.create(DIM).nprobe == 0
    exact = exact_top(vectors, ids, queries, 10)
    monkeypatch.setattr(vi, "IVF_NPROBE", 1)
    assert index.nprobe == 1
    assert recall(index.search(queries, 10)[1], exact) < 0.8  # the setting reaches the search
