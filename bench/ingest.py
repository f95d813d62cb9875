"""Ingestion speed on the sample dump: parsing (one process vs all cores), embedding vs the plain
sentence-transformers baseline (same run), end-to-end pages/s, and peak memory.

    python bench/ingest.py [--passages 512] [--limit N]

Prints a table and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kg.dump_reader import iter_pages  # noqa: E402
from kg.page_parser import is_list_page, parse_page  # noqa: E402
from kgqa import assets  # noqa: E402
from kgqa.settings import Settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"


def articles(dump: Path, limit: int | None):
    pages = [p for p in iter_pages(dump) if p.ns == 0 and p.redirect is None and not is_list_page(p.title)]
    return pages[:limit] if limit else pages


def time_parse(pages, workers: int) -> tuple[float, list]:
    started = time.perf_counter()
    if workers == 1:
        parsed = [parse_page(p) for p in pages]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parsed = list(pool.imap(parse_page, pages, chunksize=2))
    return time.perf_counter() - started, parsed


def compare_embedding(settings: Settings, texts: list[str], embedder) -> dict:
    """Plain ``model.encode(texts, batch_size=64)`` against the pipeline's Embedder, same texts, same run."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(assets.resolve_embedder(settings)), device="cpu", local_files_only=True)
    plain.encode(texts[:64], batch_size=64)  # warm both
    embedder.encode_documents(texts[:64])
    started = time.perf_counter()
    base = plain.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    base_s = time.perf_counter() - started
    started = time.perf_counter()
    fast = embedder.encode_documents(texts)
    fast_s = time.perf_counter() - started
    queries = base[: min(100, len(base))]  # each passage as a query over the whole set
    top_base = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    top_fast = np.argsort(-(fast[: len(queries)] @ fast.T), axis=1)[:, :10]
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_base, top_fast)]))
    return {"passages": len(texts), "baseline_passages_per_s": len(texts) / base_s,
            "fast_passages_per_s": len(texts) / fast_s, "ratio": base_s / fast_s, "top10_overlap": overlap,
            "backend": getattr(embedder, "backend", "?")}


def end_to_end(settings: Settings, dump: Path, limit: int | None, embedder) -> dict:
    from kg.ingest import ingest_dump

    with tempfile.TemporaryDirectory(prefix="kgqa-bench-") as folder:
        run_settings = settings.with_overrides(data_dir=Path(folder) / "data")
        run_settings.data_dir.mkdir(parents=True)
        if settings.models_dir.is_dir():  # reuse prepared embedder files
            (run_settings.data_dir / "models").symlink_to(settings.models_dir.resolve())
        started = time.perf_counter()
        summary = ingest_dump(run_settings, dump, limit=limit, progress=False, embedder=embedder)
        elapsed = time.perf_counter() - started
    read = summary.pages + summary.redirects + summary.skipped + summary.unchanged
    return {"pages_read": read, "articles": summary.pages, "passages": summary.passages, "seconds": elapsed,
            "pages_per_s": read / elapsed, "articles_per_s": summary.pages / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=512, help="passages embedded by both encoders")
    parser.add_argument("--limit", type=int, default=None, help="articles parsed (default: all)")
    parser.add_argument("--e2e-pages", type=int, default=None, help="dump pages ingested end to end (default: all)")
    args = parser.parse_args()
    settings = Settings()
    dump = assets.sample_dump_path(settings)
    from models.embedding.embedder import Embedder, document_text

    pages = articles(dump, args.limit)
    one_s, parsed = time_parse(pages, 1)
    workers = os.cpu_count() or 1
    many_s, _ = time_parse(pages, workers)
    texts = [document_text(p.title, d.section, d.text) for p in parsed for d in p.passages][: args.passages]
    embedder = Embedder(settings)
    embedder.warm_up()
    embedding = compare_embedding(settings, texts, embedder)
    e2e = end_to_end(settings, dump, args.e2e_pages, embedder)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    result = {
        "cpu_count": workers, "articles": len(pages),
        "parse_pages_per_s_1_process": len(pages) / one_s, f"parse_pages_per_s_{workers}_workers": len(pages) / many_s,
        "embedding": embedding, "end_to_end": e2e,
        "peak_rss_mb": peak_mb,
    }
    rows = [
        ("parse, 1 process (articles/s)", f"{result['parse_pages_per_s_1_process']:.1f}"),
        (f"parse, {workers} workers (articles/s)", f"{len(pages) / many_s:.1f}"),
        ("embed, plain encode (passages/s)", f"{embedding['baseline_passages_per_s']:.1f}"),
        (f"embed, Embedder [{embedding['backend']}] (passages/s)", f"{embedding['fast_passages_per_s']:.1f}"),
        ("embed speed-up (same run)", f"{embedding['ratio']:.2f}x"),
        ("embed top-10 overlap", f"{embedding['top10_overlap']:.3f}"),
        ("end-to-end (pages read/s)", f"{e2e['pages_per_s']:.1f}"),
        ("end-to-end (articles/s)", f"{e2e['articles_per_s']:.1f}"),
        ("peak RSS, main process (MB)", f"{peak_mb:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
