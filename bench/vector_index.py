"""Vector index benchmark: exact flat search vs the compressed IVF-SQ8 index that ``VectorIndex`` becomes
past ``IVF_THRESHOLD``, on synthetic passage-like vectors and on a built knowledge base's real vectors.

    python bench/vector_index.py [--data topics|clusters] [--sizes 100000,1000000] [--nprobes 16,32,64,128]
                                 [--kb /tmp/kb-sample] [--ivf-only]

For each size: add rate (``CHUNK`` vectors a call, as ingestion adds them, through the automatic
switch and every re-clustering), the time spent training, bytes a vector on disk, load time and RSS of a
fresh process that memory-maps the index (private vs shared file pages), single-query search
p50/p95 and recall@10 against exact search at each nprobe. Prints tables and writes
``bench/results/vector_index.json`` (keeping the sizes an earlier run measured), with the machine's
load average (2 shared cores) around each size.

Synthetic vectors (``--data``) live in a random 384-d basis whose variance spectrum decays like
MiniLM's (top 10/64/128 principal components: 29/68/82% of the variance; the real sample's 27/70/86%),
shifted off the origin and normalised. ``topics``: topics, subtopic clusters of lognormal sizes
around them, vectors around those. ``clusters``: equal clusters of 50 around independent centres,
the harder case for IVF. Spreads put the median nearest-neighbour cosine at 2,661 vectors near
the real sample's (0.72). Queries are held-out vectors of the same distribution; ``--kb`` adds the
real sample's own vectors (held-out passages as queries).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kg import vector_index as vi
from kg.vector_index import VectorIndex

RESULTS = Path(__file__).resolve().parent / "results" / "vector_index.json"
DIM = 384
CHUNK = 64  # kg/vectors.py EMBED_CHUNK
QUERIES = 200
K = 10
PER_TOPIC = 2_000  # vectors per topic, on average
PER_CLUSTER = 50  # vectors per subtopic cluster, on average; sizes vary lognormally:
CLUSTER_SIZE_SIGMA = 1.5  # a few clusters of thousands, many of a handful, as topics are in Wikipedia
SUBTOPIC_SPREAD = 0.7
SPREAD = 1.0
CLUSTERS_SPREAD = 0.7
SPECTRUM_POWER, SPECTRUM_OFFSET = 1.3, 10


def _space() -> tuple[np.ndarray, np.ndarray]:
    """The 384-d basis scaled by the MiniLM-like spectrum, and the offset from the origin."""
    basis_rng = np.random.default_rng(1234)  # one space for every size
    q, _ = np.linalg.qr(basis_rng.standard_normal((DIM, DIM)))
    spectrum = (np.arange(DIM) + SPECTRUM_OFFSET) ** -SPECTRUM_POWER
    scale = (q * np.sqrt(spectrum / spectrum.sum())).T.astype(np.float32)
    shift = basis_rng.standard_normal(DIM).astype(np.float32)
    shift *= 0.2 / np.linalg.norm(shift)
    return scale, shift


def _finish(centres: np.ndarray, weights: np.ndarray | None, spread: float, n: int, rng) -> np.ndarray:
    scale, shift = _space()
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(n, start + 100_000) - start
        picks = rng.choice(len(centres), m, p=None if weights is None else weights / weights.sum())
        block = centres[picks] + spread * (rng.standard_normal((m, DIM), dtype=np.float32) @ scale) + shift
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def topic_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Topics, subtopic clusters of lognormal sizes around them, vectors around those (float32)."""
    scale, _ = _space()
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(4, n // PER_TOPIC), DIM), dtype=np.float32) @ scale
    n_clusters = max(8, n // PER_CLUSTER)
    centres = topics[rng.integers(0, len(topics), n_clusters)]
    centres += SUBTOPIC_SPREAD * (rng.standard_normal((n_clusters, DIM), dtype=np.float32) @ scale)
    return _finish(centres, rng.lognormal(0.0, CLUSTER_SIZE_SIGMA, n_clusters), SPREAD, n, rng)


def cluster_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Equal-sized clusters of ``PER_CLUSTER`` around independent centres, no larger structure: the
    harder set, as neighbours scatter over many IVF lists (float32)."""
    scale, _ = _space()
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // PER_CLUSTER), DIM), dtype=np.float32) @ scale
    return _finish(centres, None, CLUSTERS_SPREAD, n, rng)


GENERATORS = {"topics": topic_vectors, "clusters": cluster_vectors}


def nn_median(vectors: np.ndarray) -> float:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    return float(np.median(sims.max(axis=1)))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build(vectors: np.ndarray, ids: np.ndarray, threshold: int, chunk: int = CHUNK) -> tuple[VectorIndex, dict]:
    """Add ``chunk`` at a time; the adds that switched or re-clustered the index count as training."""
    index = VectorIndex.create(DIM, ivf_threshold=threshold)
    train_s, trainings, started = 0.0, [], time.perf_counter()
    for start in range(0, len(ids), chunk):
        kind, nlist = index.kind, index.nlist
        t = time.perf_counter()
        index.add(ids[start:start + chunk], vectors[start:start + chunk])
        if (index.kind, index.nlist) != (kind, nlist):
            spent = time.perf_counter() - t
            train_s += spent
            trainings.append({"at": int(start + chunk), "nlist": index.nlist, "seconds": round(spent, 2)})
    wall = time.perf_counter() - started
    return index, {"chunk": chunk, "add_per_s": len(ids) / wall, "add_per_s_without_training": len(ids) / max(wall - train_s, 1e-9),
                   "train_s": train_s, "trainings": trainings, "build_s": wall}


def timed_searches(index: VectorIndex, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    found = np.empty((len(queries), K), dtype=np.int64)
    index.search(queries[:1], K)
    latencies = []
    for i in range(len(queries)):
        start = time.perf_counter()
        found[i] = index.search(queries[i:i + 1], K)[1][0]
        latencies.append((time.perf_counter() - start) * 1000)
    return found, latencies


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / K for a, b in zip(found, exact)]))


_MAPPED_PROBE = r"""
import json, sys, time
import numpy as np
from kg.vector_index import VectorIndex
def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon", "RssFile")}
before = status()
start = time.perf_counter()
index = VectorIndex.load(sys.argv[1], mmap=True)
load_s = time.perf_counter() - start
after_load = status()
queries = np.load(sys.argv[2])
for i in range(len(queries)):
    index.search(queries[i:i + 1], 10)
after = status()
print(json.dumps({"load_s": load_s, "rss_mb_after_load": after_load["VmRSS"],
                  "rss_mb_after_searches": after["VmRSS"],
                  "private_mb_added": after["RssAnon"] - before["RssAnon"],
                  "shared_file_mb": after["RssFile"] - before["RssFile"]}))
"""


def mapped_process(path: Path, queries: np.ndarray) -> dict:
    """A fresh process memory-maps the index and runs the queries: what one more server process costs."""
    query_file = path.with_suffix(".queries.npy")
    np.save(query_file, queries)
    out = subprocess.run([sys.executable, "-c", _MAPPED_PROBE, str(path), str(query_file)], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    query_file.unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, index: VectorIndex, queries: np.ndarray, exact: np.ndarray | None, workdir: Path,
            nprobes: list[int], extra: dict) -> list[dict]:
    path = index.save(workdir / f"{name}.faiss")
    base = {"kind": index.kind, "n": index.ntotal, "nlist": index.nlist,
            "bytes_per_vector": path.stat().st_size / index.ntotal, **extra, **mapped_process(path, queries)}
    path.unlink()
    rows = []
    for pinned in ([*nprobes, None] if index.kind == "ivf" else [None]):
        vi.IVF_NPROBE = pinned  # None: the index's own rule
        found, latencies = timed_searches(index, queries)
        rows.append({**base, "nprobe": index.nprobe, "default_nprobe": pinned is None, "search_p50_ms": statistics.median(latencies),
                     "search_p95_ms": float(np.percentile(latencies, 95)),
                     "recall_at_10": recall(found, exact) if exact is not None else 1.0, "found": found})
    return rows


def print_row(row: dict) -> None:
    nprobe = f"{row['nprobe']}{'*' if row.get('default_nprobe') and row['kind'] == 'ivf' else ''}"
    print(f"{row['n']:>9,} {row['kind']:4s} {row['nlist']:>6} {nprobe:>6} {row['add_per_s']:>9,.0f}"
          f" {row['train_s']:>7.1f} {row['bytes_per_vector']:>7.0f} {row['load_s']:>6.2f}"
          f" {row['private_mb_added']:>8.0f} {row['shared_file_mb']:>8.0f}"
          f" {row['search_p50_ms']:>7.2f} {row['search_p95_ms']:>7.2f} {row['recall_at_10']:>6.3f}", flush=True)


HEADER = (f"{'n':>9} {'kind':4s} {'nlist':>6} {'nprobe':>6} {'add/s':>9} {'train s':>7} {'B/vec':>7}"
          f" {'load s':>6} {'priv MB':>8} {'file MB':>8} {'p50 ms':>7} {'p95 ms':>7} {'R@10':>6}")


def run_size(n: int, data_kind: str, nprobes: list[int], workdir: Path, ivf_only: bool = False) -> list[dict]:
    data = GENERATORS[data_kind](n + QUERIES, seed=n)
    vectors, queries = data[:n], np.ascontiguousarray(data[n:])
    del data
    ids = np.arange(n, dtype=np.int64)
    if ivf_only:  # exact answers from one batched flat search, no flat-index rows
        import faiss

        flat = faiss.IndexFlatIP(DIM)
        flat.add(vectors)
        exact, rows = flat.search(queries, K)[1], []
    else:
        # The exact baseline adds 64k at a time: a flat index checks new ids against all it holds, and
        # it only ever holds up to IVF_THRESHOLD vectors in use.
        flat, flat_build = build(vectors, ids, threshold=n + 1, chunk=65_536)
        rows = measure("flat", flat, queries, None, workdir, nprobes, flat_build)
        exact = rows[0]["found"]
    del flat
    compressed, build_stats = build(vectors, ids, threshold=vi.IVF_THRESHOLD)
    del vectors
    rows += measure("ivf", compressed, queries, exact, workdir, nprobes, build_stats)
    for row in rows:
        print_row(row)
    return [{key: value for key, value in row.items() if key != "found"} for row in rows]


def real_sample(kb: Path, nprobes: list[int], workdir: Path) -> list[dict]:
    """The knowledge base's own MiniLM vectors: held-out passages as queries, IVF forced by a low threshold."""
    import faiss

    saved = faiss.read_index(str(kb / "index" / "passages.faiss"))
    n_all = saved.ntotal
    vectors = np.vstack([saved.reconstruct(int(i)) for i in faiss.vector_to_array(saved.id_map)])
    order = np.random.default_rng(0).permutation(n_all)
    queries, vectors = vectors[order[:QUERIES]], vectors[order[QUERIES:]]
    ids = np.arange(len(vectors), dtype=np.int64)
    exact = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :K]]
    index, stats = build(vectors, ids, threshold=len(vectors) // 2)
    rows = measure("real", index, queries, exact, workdir, nprobes, {**stats, "nn_median_cosine": nn_median(vectors)})
    for row in rows:
        print_row(row)
    return [{key: value for key, value in row.items() if key != "found"} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--nprobes", default="16,32,64,128")
    parser.add_argument("--data", choices=sorted(GENERATORS), default="topics")
    parser.add_argument("--ivf-only", action="store_true", help="skip the flat index rows (3M: 4.6 GB of floats)")
    parser.add_argument("--kb", type=Path, default=Path("/tmp/kb-sample"), help="a built knowledge base ('' skips)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-vector-index"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    nprobes = [int(x) for x in args.nprobes.split(",")]
    default_nprobe = vi.IVF_NPROBE
    result = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_average_start": load_average(),
              "ivf_threshold": vi.IVF_THRESHOLD, "chunk": CHUNK,
              "nn_median_cosine_at_2661": {kind: nn_median(make(2661, seed=1)) for kind, make in GENERATORS.items()},
              "sizes": {}}
    print(f"load average {result['load_average_start']}; nn-median cosine at 2,661 vectors "
          f"{result['nn_median_cosine_at_2661']} (real sample 0.72); * = the index's own nprobe\n{HEADER}",
          flush=True)
    if args.kb and str(args.kb) and (args.kb / "index" / "passages.faiss").is_file():
        result["real_sample"] = real_sample(args.kb, nprobes, args.workdir)
    if RESULTS.is_file():  # sizes measured by an earlier run (one run per size keeps each under 10 minutes)
        previous = json.loads(RESULTS.read_text())
        result["sizes"] = previous.get("sizes", {})
        if result.get("real_sample") is None:
            result["real_sample"] = previous.get("real_sample")
    for n in [int(x) for x in args.sizes.split(",") if x.strip()]:
        started = load_average()
        rows = run_size(n, args.data, nprobes, args.workdir, ivf_only=args.ivf_only)
        result["sizes"][f"{args.data}:{n}"] = [{**row, "load_average_start": started, "load_average_end": load_average()}
                                   for row in rows]
        vi.IVF_NPROBE = default_nprobe
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({**result, "load_average_end": load_average()}, indent=2))
    result["load_average_end"] = load_average()
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"load average {result['load_average_end']}\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
