"""Retrieval latency on the sample knowledge base, its growth with corpus size, and the engine's time to first token.

    python bench/retrieve.py [--data-dir DIR] [--sizes 10000 100000] [--no-ttft]

Sample KB: p50/p95 of ``QAEngine.retrieve`` (query embedding included) per mode.
Scale: the same components (query embedding, FAISS, BM25, fusion) over synthetic
passages with Zipf-distributed words and random unit vectors; linking, PPR and
the primary-key fetch do not depend on corpus size. TTFT: the whole engine with
a 512-token evidence budget and the real LM. Writes bench/results/retrieve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTIONS = [
    "What is the capital of Alabama?", "Who wrote Animal Farm?", "Where was Albert Einstein born?",
    "What is the largest city of Algeria?", "When did Apollo 11 land on the Moon?", "Who was Aristotle's teacher?",
    "When was Abraham Lincoln president?", "What language is spoken in Algeria?", "Who won the 2030 FIFA World Cup?",
    "What is anarchism?", "Which river flows through Alabama?", "What did Aristotle write about ethics?",
]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
            "n": len(ordered)}


def bench_sample_kb(settings, repeats: int) -> dict:
    from qa.engine import QAEngine

    engine = QAEngine(settings)
    engine.retrieve("warm up", k=10, mode="graph")
    results = {}
    for mode in ("dense", "sparse", "hybrid", "graph"):
        samples = []
        for _ in range(repeats):
            for question in QUESTIONS:
                started = time.perf_counter()
                engine.retrieve(question, k=10, mode=mode)
                samples.append(time.perf_counter() - started)
        results[mode] = percentiles(samples)
    embedder = engine._kb.embedder
    samples = []
    for question in QUESTIONS * repeats:
        started = time.perf_counter()
        embedder.encode_query(question)
        samples.append(time.perf_counter() - started)
    results["query_embedding_only"] = percentiles(samples)
    results["passages"] = len(engine._kb.catalog)
    return results


def synthetic_corpus(n: int, rng: np.random.Generator, vocab: int = 30_000, length: int = 90) -> list[str]:
    ranks = rng.zipf(1.3, size=n * length) % vocab
    words = np.char.add("w", ranks.astype(str))
    return [" ".join(words[i * length : (i + 1) * length]) for i in range(n)]


def bench_scale(settings, size: int, repeats: int) -> dict:
    from models.embedding.embedder import Embedder
    from retrieval.fusion import reciprocal_rank_fusion
    from retrieval.sparse import SparseIndex
    from kg.vector_index import VectorIndex

    rng = np.random.default_rng(size)
    texts = synthetic_corpus(size, rng)
    keys = [str(i) for i in range(size)]
    started = time.perf_counter()
    sparse = SparseIndex().build(keys, texts)
    bm25_build_s = time.perf_counter() - started
    vectors = rng.standard_normal((size, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    index = VectorIndex.create(384)
    index.add(np.arange(size, dtype=np.int64), vectors)
    faiss_build_s = time.perf_counter() - started
    embedder = Embedder(settings)
    embedder.warm_up()
    queries = [" ".join(texts[int(i)].split()[5:9]) + " " + q for i, q in zip(rng.integers(0, size, 50), QUESTIONS * 5)]
    stage = {"embed": [], "dense": [], "sparse": [], "fuse": [], "total": []}
    for _ in range(repeats):
        for query in queries:
            t0 = time.perf_counter()
            vector = embedder.encode_query(query)
            t1 = time.perf_counter()
            _scores, ids = index.search(vector.reshape(1, -1), 50)
            t2 = time.perf_counter()
            sparse_hits = sparse.search(query, 50)
            t3 = time.perf_counter()
            reciprocal_rank_fusion({"dense": [str(i) for i in ids[0]], "sparse": [k for k, _ in sparse_hits]})
            t4 = time.perf_counter()
            for name, value in zip(stage, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                stage[name].append(value)
    return {"passages": size, "faiss_kind": index.kind, "bm25_build_s": bm25_build_s, "faiss_build_s": faiss_build_s,
            **{f"{name}_p50_ms": 1000 * statistics.median(values) for name, values in stage.items()},
            "total_p95_ms": percentiles(stage["total"])["p95_ms"]}


def bench_ttft(settings, evidence_tokens: int) -> dict:
    from qa.engine import QAEngine
    from qa.prompt import build_messages

    engine = QAEngine(settings.with_overrides(evidence_tokens=evidence_tokens, max_new_tokens=8))
    engine.warm_up()
    engine.ask(QUESTIONS[9])  # warm-up on a question outside the measured ones: only the instructions are cached
    prefixes = getattr(engine.generator, "prefixes", None)
    rows = []
    for question in QUESTIONS[:6]:
        reused_before = prefixes.reused_tokens if prefixes is not None else 0
        retrieval = engine._pipeline.retrieve(question, k=10, mode="graph")
        evidence = engine._choose_evidence(retrieval)
        prompt_tokens = len(engine.generator.prompt_ids(build_messages(question, evidence)))  # chat template included
        result = engine.ask(question)
        rows.append({"question": question, "evidence_tokens": evidence.tokens, "prompt_tokens": prompt_tokens,
                     "retrieve_s": result.timings.link + result.timings.retrieve,
                     "first_token_s": result.timings.first_token, "abstained": result.abstained,
                     "cached_prompt_tokens": (prefixes.reused_tokens - reused_before) if prefixes is not None else 0})
    answered = [r["first_token_s"] for r in rows if r["first_token_s"] > 0]
    return {"evidence_budget": evidence_tokens, "model": engine.generator.model_name,
            "device": str(engine.generator.device), "rows": rows,
            "first_token_p50_s": statistics.median(answered) if answered else None}


def main() -> None:
    from kgqa.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="a data folder with an ingested knowledge base")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ttft", action="store_true")
    parser.add_argument("--ttft-budgets", type=int, nargs="*", default=[384, 512],
                        help="evidence budgets (prompt tokens) for the engine's time to first token")
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir) if args.data_dir else Settings()
    report: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    report["sample_kb"] = bench_sample_kb(settings, args.repeats)
    print(f"{'sample KB (' + str(report['sample_kb']['passages']) + ' passages)':<34}{'p50 ms':>10}{'p95 ms':>10}")
    for mode in ("query_embedding_only", "dense", "sparse", "hybrid", "graph"):
        row = report["sample_kb"][mode]
        print(f"  {mode:<32}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}")
    report["scale"] = [bench_scale(settings, size, 1) for size in args.sizes]
    print(f"\n{'passages':>10}{'index':>7}{'embed':>8}{'dense':>8}{'bm25':>8}{'fuse':>8}{'total p50':>11}{'p95':>8}  (ms)")
    for row in report["scale"]:
        print(f"{row['passages']:>10}{row['faiss_kind']:>7}{row['embed_p50_ms']:>8.1f}{row['dense_p50_ms']:>8.2f}"
              f"{row['sparse_p50_ms']:>8.2f}{row['fuse_p50_ms']:>8.2f}{row['total_p50_ms']:>11.1f}{row['total_p95_ms']:>8.1f}")
    if not args.no_ttft:
        report["ttft"] = [bench_ttft(settings, budget) for budget in args.ttft_budgets]
        for ttft in report["ttft"]:
            print(f"\nengine time to first token, {ttft['evidence_budget']}-token evidence budget "
                  f"({ttft['model']} on {ttft['device']})")
            for row in ttft["rows"]:
                print(f"  {row['question']:<42} prompt {row['prompt_tokens']:>4} tok ({row['cached_prompt_tokens']:>3} cached)"
                      f"  first token {row['first_token_s']:.2f}s")
            print(f"  p50 first token: {ttft['first_token_p50_s']:.2f}s")
    out = Path(__file__).resolve().parent / "results" / "retrieve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
