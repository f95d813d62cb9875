"""Embedding benchmark: fast embedder vs plain sentence-transformers, and whether a passage's vector
depends on the passages embedded with it (the vector index has its own: ``bench/vector_index.py``).

    python bench/embed.py [--kb DATA_DIR] [--passages 256]

Prints tables and writes ``bench/results/embed.json``. ``compare_embedding`` is
importable (the ingestion benchmark reuses it). All ratios come from one run.
"""

from __future__ import annotations

import argparse
import bz2
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from kgqa.assets import resolve_embedder, sample_dump_path
from kgqa.settings import Settings
from models.embedding.embedder import Embedder, document_text

RESULTS = Path(__file__).resolve().parent / "results" / "embed.json"
QUERIES = [
    "What is the capital of Alabama?", "Who wrote Animal Farm?", "When did Apollo 11 land on the Moon?",
    "Where was Albert Einstein born?", "What did Aristotle teach?", "Who assassinated Abraham Lincoln?",
    "What language is spoken in Algeria?", "What is anarchism?", "Which river flows through Alabama?",
    "What is the theory of relativity?", "Who was Alexander the Great's teacher?", "What is an atom?",
    "When did Algeria become independent?", "What is the plot of Animal Farm?",
    "Who was the first man on the Moon?", "What is Aristotle's Poetics about?",
    "What happened at the Battle of Gettysburg?", "What is the population of Alabama?",
    "What are the properties of aluminium?", "What is an academy award?",
]


def sample_passages(settings: Settings, n: int) -> list[str]:
    """Real passages from the knowledge base if one is built, else ~180-word chunks of the sample dump."""
    db = settings.data_dir / "kgqa.db"
    if db.is_file():
        import sqlite3

        with sqlite3.connect(db) as conn:
            rows = conn.execute("select title, section, text from passages order by vector_id").fetchall()
        if rows:
            step = max(1, len(rows) // n)
            return [document_text(*row) for row in rows[::step][:n]]
    import xml.etree.ElementTree as ET

    import mwparserfromhell

    texts: list[str] = []
    for _, element in ET.iterparse(bz2.open(sample_dump_path(settings))):
        if element.tag.endswith("}page"):
            ns = element.tag[:-4]
            title, wikitext = element.findtext(f"{ns}title"), element.findtext(f".//{ns}text") or ""
            if not wikitext.lower().startswith("#redirect"):
                words = mwparserfromhell.parse(wikitext).strip_code().split()
                texts += [document_text(title, "", " ".join(words[i:i + 180]))
                          for i in range(0, len(words) - 60, 180)]
            element.clear()
        if len(texts) >= n:
            break
    return texts[:n]


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _query_p50_ms(encode, queries: list[str], repeats: int = 2) -> float:
    encode(queries[0])
    times = []
    for _ in range(repeats):
        for query in queries:
            start = time.perf_counter()
            encode(query)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def top_k_overlap(queries_a, docs_a, queries_b, docs_b, k: int = 10) -> float:
    top_a = np.argsort(-(queries_a @ docs_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ docs_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_a, top_b)]))


def compare_embedding(settings: Settings, texts: list[str], embedder: Embedder | None = None,
                      queries: list[str] = QUERIES) -> dict:
    """Plain ``SentenceTransformer(folder).encode(texts, batch_size=64)`` vs the project's Embedder, same texts."""
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(resolve_embedder(settings)), device="cpu", local_files_only=True)
    fast = embedder or Embedder(settings.with_overrides(device="cpu"))
    fast.warm_up()
    plain.encode(texts[:8])
    fast.encode_documents(texts[:8])
    base, base_wall, base_cpu = _timed(lambda: plain.encode(texts, batch_size=64, normalize_embeddings=True))
    vecs, fast_wall, fast_cpu = _timed(lambda: fast.encode_documents(texts))
    plain_queries = plain.encode(queries, normalize_embeddings=True)
    fast_queries = np.stack([fast.encode_query(q) for q in queries])
    cosine = (base * vecs).sum(axis=1)
    return {
        "passages": len(texts), "mean_words": float(np.mean([len(t.split()) for t in texts])),
        "fast_backend": fast.backend, "backend": fast.backend,
        "baseline_passages_per_s": len(texts) / base_wall, "fast_passages_per_s": len(texts) / fast_wall,
        "ratio_wall": base_wall / fast_wall, "ratio": base_wall / fast_wall, "ratio_cpu": base_cpu / fast_cpu,
        "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
        "top10_overlap": top_k_overlap(fast_queries, vecs, plain_queries, base),
        "query_p50_ms_fast": _query_p50_ms(fast.encode_query, queries),
        "query_p50_ms_baseline": _query_p50_ms(lambda q: plain.encode([q], normalize_embeddings=True), queries),
    }


def batch_independence(embedder: Embedder, texts: list[str], seed: int = 0) -> dict:
    """The same passages embedded alone, together, reversed, shuffled and in halves: how far apart.

    A crash repair embeds passages with other neighbours than a clean run did, so anything
    but bit-identical rows means a repaired index differs from a clean one.
    """
    together = embedder.encode_documents(texts)
    shuffle = np.random.default_rng(seed).permutation(len(texts))
    shuffled = np.empty_like(together)
    shuffled[shuffle] = embedder.encode_documents([texts[i] for i in shuffle])
    half = len(texts) // 2
    arrangements = {
        "alone": np.stack([embedder.encode_query(text) for text in texts]),
        "reversed": embedder.encode_documents(texts[::-1])[::-1],
        "shuffled": shuffled,
        "halves": np.concatenate([embedder.encode_documents(texts[:half]), embedder.encode_documents(texts[half:])]),
    }
    return {name: {"max_abs_diff": float(np.abs(together - other).max()),
                   "cosine_min": float((together * other).sum(axis=1).min()),
                   "identical_rows": int(sum(np.array_equal(a, b) for a, b in zip(together, other))),
                   "rows": len(texts)}
            for name, other in arrangements.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, help="data folder of a built knowledge base (real passages)")
    parser.add_argument("--passages", type=int, default=256)
    args = parser.parse_args()
    settings = Settings(data_dir=args.kb) if args.kb else Settings()
    texts = sample_passages(settings, args.passages)
    embed = compare_embedding(settings, texts)
    print(f"\n{'passages':>9} {'words':>6} {'baseline/s':>11} {'fast/s':>8} {'ratio':>6} {'cpu ratio':>9}"
          f" {'top10':>6} {'cos min':>8} {'q p50 fast':>11} {'q p50 base':>11}")
    print(f"{embed['passages']:>9} {embed['mean_words']:>6.0f} {embed['baseline_passages_per_s']:>11.1f}"
          f" {embed['fast_passages_per_s']:>8.1f} {embed['ratio_wall']:>6.2f} {embed['ratio_cpu']:>9.2f}"
          f" {embed['top10_overlap']:>6.3f} {embed['cosine_min']:>8.4f} {embed['query_p50_ms_fast']:>9.1f}ms"
          f" {embed['query_p50_ms_baseline']:>9.1f}ms  ({embed['fast_backend']})\n", flush=True)
    independence = batch_independence(Embedder(settings.with_overrides(device="cpu")), texts)
    for name, row in independence.items():
        print(f"{name:>9} vs together: identical rows {row['identical_rows']}/{row['rows']}"
              f"  max |diff| {row['max_abs_diff']:.2e}  cosine min {row['cosine_min']:.6f}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "embedding": embed,
                                   "batch_independence": independence},
                                  indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
