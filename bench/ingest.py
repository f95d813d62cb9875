"""Ingestion speed: end-to-end ingest against the embedder alone on the same passages, in one run.

For each dump (the sample, whose articles are long, and a dump of short pages made
from the sample's paragraphs, ``bench/short_pages.py``) it ingests from scratch into
a temporary folder, then embeds exactly the passages that ingest stored, with the
same warm ``Embedder`` and the same chunking, and reports both rates and their ratio:
the share of the embedder's own speed that the whole pipeline (reading, parsing,
revision checks, SQL writes, index saves, the graphs and indexes at the end) keeps.
The halves alternate (ingest, embed, embed, ingest, ...) and each rate is the best of
its ``--repeats`` runs, so a burst of load from another job on a shared machine
lowers one run, not the ratio; every run is kept in the JSON.
It also times parsing (one process against all cores) and the Embedder against plain
sentence-transformers ``encode``.

    python bench/ingest.py [--short-pages 3000] [--repeats 1] [--passages 512]

Prints a table and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.short_pages import write_short_page_dump  # noqa: E402
from kg.dump_reader import iter_pages  # noqa: E402
from kg.page_parser import is_list_page, parse_page  # noqa: E402
from kgqa import assets  # noqa: E402
from kgqa.settings import Settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"


class TimedEmbedder:
    """The real embedder, with the time spent inside ``encode_documents`` added up."""

    def __init__(self, embedder) -> None:
        self.inner = embedder
        self.identity, self.batch_size = embedder.identity, embedder.batch_size
        self.seconds = 0.0

    def encode_documents(self, texts):
        started = time.perf_counter()
        try:
            return self.inner.encode_documents(texts)
        finally:
            self.seconds += time.perf_counter() - started


def articles(dump: Path, limit: int | None):
    pages = [p for p in iter_pages(dump) if p.ns == 0 and p.redirect is None and not is_list_page(p.title)]
    return pages[:limit] if limit else pages


def time_parse(pages, workers: int) -> float:
    started = time.perf_counter()
    if workers == 1:
        for page in pages:
            parse_page(page)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            list(pool.imap(parse_page, pages, chunksize=2))
    return time.perf_counter() - started


def compare_plain_encode(settings: Settings, texts: list[str], embedder) -> dict:
    """Plain ``SentenceTransformer.encode(texts, batch_size=64)`` against the pipeline's Embedder, same texts."""
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
    queries = min(100, len(base))  # each passage as a query over the whole set
    top_base = np.argsort(-(base[:queries] @ base.T), axis=1)[:, :10]
    top_fast = np.argsort(-(fast[:queries] @ fast.T), axis=1)[:, :10]
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_base, top_fast)]))
    return {"passages": len(texts), "plain_passages_per_s": len(texts) / base_s,
            "embedder_passages_per_s": len(texts) / fast_s, "speedup": base_s / fast_s, "top10_overlap": overlap,
            "backend": embedder.backend}


def ingest_and_embed(settings: Settings, dump: Path, embedder, *, known_texts: list[str] | None = None) -> dict:
    """Ingest ``dump`` from scratch and embed the very passages it stored, both on a warm embedder.

    Given ``known_texts`` (what an earlier ingest of the same dump stored: ingest is
    deterministic), the embedder runs alone first, so runs can alternate their order.
    """
    embed_first = known_texts is not None
    alone_s = time_alone(embedder, known_texts) if embed_first else None
    timed = TimedEmbedder(embedder)
    (summary, ingest_s), stored = stored_texts(settings, dump, timed)
    if embed_first and stored != known_texts:
        raise RuntimeError("two ingests of one dump stored different passages")
    if alone_s is None:
        alone_s = time_alone(embedder, stored)
    pipeline = summary.passages / ingest_s
    alone = len(stored) / alone_s
    return {"order": "embed, ingest" if embed_first else "ingest, embed",
            "pages_read": summary.pages + summary.redirects + summary.skipped + summary.unchanged,
            "articles": summary.pages, "passages": summary.passages, "ingest_s": ingest_s,
            "ingest_pages_per_s": summary.pages / ingest_s, "ingest_passages_per_s": pipeline,
            "embedding_share_of_ingest": timed.seconds / ingest_s,
            "embedder_in_ingest_passages_per_s": summary.passages / timed.seconds,
            "embedder_alone_s": alone_s, "embedder_alone_passages_per_s": alone, "ratio": pipeline / alone,
            "stages_s": summary.stages, "texts": stored}


def stored_texts(settings: Settings, dump: Path, embedder):
    """Ingest ``dump`` into a temporary folder: ((summary, seconds), the stored passages' embedded texts)."""
    from kg.ingest import ingest_dump
    from models.embedding.embedder import document_text

    with tempfile.TemporaryDirectory(prefix="kgqa-bench-") as folder:
        run_settings = settings.with_overrides(data_dir=Path(folder) / "data", models_dir=settings.models_dir,
                                               database_url="")
        run_settings.data_dir.mkdir(parents=True)
        started = time.perf_counter()
        summary = ingest_dump(run_settings, dump, progress=False, embedder=embedder)
        seconds = time.perf_counter() - started
        with sqlite3.connect(run_settings.data_dir / "kgqa.db") as db:
            texts = [document_text(*row) for row in
                     db.execute("SELECT title, section, text FROM passages ORDER BY vector_id")]
    return (summary, seconds), texts


def time_alone(embedder, texts: list[str]) -> float:
    """Seconds the embedder takes over ``texts``, in the chunks ingestion hands it."""
    from kg.vectors import EMBED_CHUNK

    step = max(EMBED_CHUNK, embedder.batch_size)
    started = time.perf_counter()
    for start in range(0, len(texts), step):
        embedder.encode_documents(texts[start:start + step])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-pages", type=int, default=3000, help="pages in the short-page dump (0: skip it)")
    parser.add_argument("--repeats", type=int, default=2, help="ingest/embed pairs per dump")
    parser.add_argument("--passages", type=int, default=512, help="passages for the plain-encode comparison (0: skip)")
    args = parser.parse_args()
    settings = Settings()
    sample = assets.sample_dump_path(settings)
    from models.embedding.embedder import Embedder

    embedder = Embedder(settings)
    embedder.warm_up()
    result: dict = {"cpu_count": os.cpu_count(), "embedder_backend": embedder.backend, "dumps": {}}
    with tempfile.TemporaryDirectory(prefix="kgqa-short-") as folder:
        dumps = {"sample": sample}
        if args.short_pages:
            dumps[f"short pages ({args.short_pages})"] = write_short_page_dump(
                sample, Path(folder) / "short.xml.bz2", args.short_pages)
        for name, dump in dumps.items():
            runs, texts = [], None
            for _ in range(args.repeats):
                runs.append(ingest_and_embed(settings, dump, embedder, known_texts=texts))
                texts = runs[-1].pop("texts")
            best_ingest = max(run["ingest_passages_per_s"] for run in runs)
            best_alone = max(run["embedder_alone_passages_per_s"] for run in runs)
            result["dumps"][name] = {"runs": runs, "best_ingest_passages_per_s": best_ingest,
                                     "best_embedder_alone_passages_per_s": best_alone,
                                     "ratio_of_best": best_ingest / best_alone, "load_average": os.getloadavg()}
    pages = articles(sample, None)
    workers = os.cpu_count() or 1
    one_s = time_parse(pages, 1)
    result["parse_articles_per_s"] = {"1 process": len(pages) / one_s,
                                      f"{workers} workers": len(pages) / time_parse(pages, workers)}
    passages = sum(len(parse_page(p).passages) for p in pages)
    result["parse_passages_per_s_per_core"] = passages / one_s  # the unit bench/scale.py's projection uses
    if args.passages:
        parsed = [parse_page(p) for p in pages]
        from models.embedding.embedder import document_text

        texts = [document_text(p.title, d.section, d.text) for p in parsed for d in p.passages][: args.passages]
        result["plain_encode"] = compare_plain_encode(settings, texts, embedder)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


def print_table(result: dict) -> None:
    print(f"{'dump':<22} {'passages':>8} {'ingest s':>9} {'ingest p/s':>10} {'embed share':>11} "
          f"{'embedder alone p/s':>18} {'ratio':>6}")
    for name, entry in result["dumps"].items():
        for run in entry["runs"]:
            print(f"{name:<22} {run['passages']:>8} {run['ingest_s']:>9.1f} {run['ingest_passages_per_s']:>10.1f} "
                  f"{run['embedding_share_of_ingest']:>11.2f} {run['embedder_alone_passages_per_s']:>18.1f} "
                  f"{run['ratio']:>6.2f}")
        print(f"{name:<22} best ingest {entry['best_ingest_passages_per_s']:.1f} passages/s, best embedder alone "
              f"{entry['best_embedder_alone_passages_per_s']:.1f}/s: ratio {entry['ratio_of_best']:.2f}")
    for name, rate in result["parse_articles_per_s"].items():
        print(f"parse, {name}: {rate:.1f} articles/s")
    print(f"parse, 1 process: {result['parse_passages_per_s_per_core']:.0f} passages/s")
    plain = result.get("plain_encode")
    if plain:
        print(f"embedder [{plain['backend']}] {plain['embedder_passages_per_s']:.1f} passages/s against plain "
              f"encode {plain['plain_passages_per_s']:.1f}/s ({plain['speedup']:.2f}x), "
              f"top-10 overlap {plain['top10_overlap']:.3f}")
    print(f"peak RSS, main process: {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
