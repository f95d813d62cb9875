"""Project a full English Wikipedia ingest, stage by stage, from the per-unit costs measured here.

    python bench/project_enwiki.py [--cores 16] [--ram-gb 64]

Reads bench/results/scale-1000000.json (``bench/scale.py --pages 1000000``) and
bench/results/ingest.json (``bench/ingest.py``), scales each stage to enwiki's size
and prints a Markdown table (the README's), writing bench/results/enwiki-projection.json.

Sizes: 6.9M articles and about 20M passages. Embedding runs on one GPU; its rate is
not measured here (no GPU on this machine) but taken from sentence-transformers'
published speed for all-MiniLM-L6-v2, 14,200 sentences/s on one V100 (the
"Speed" column of sbert.net's pretrained-models table), scaled by length: those
are sentences of about 20 tokens, a passage here averages 207 tokens (the sample's
2,661 passages, MiniLM's tokenizer, cut at 256), and an encoder's cost grows at
least linearly with length at these sizes, so 14,200 x 20 / 207 ~ 1,370 passages/s.
A newer GPU in fp16 (what ``Embedder`` runs on CUDA) is faster; the projection
keeps the older, conservative figure.

How stages combine: parsing runs in worker processes on every core but one, beside
the main process, which writes SQL and then embeds each batch; so the wall time of
the stream is the larger of parsing and (writing + embedding), then the finishing
steps run one after another.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ENWIKI_ARTICLES = 6_900_000
ENWIKI_PASSAGES = 20_000_000
GPU_SENTENCES_PER_S = 14_200  # sbert.net pretrained models table, all-MiniLM-L6-v2 on a V100
BENCHMARK_SENTENCE_TOKENS = 20  # a typical sentence of the sentence benchmarks
PASSAGE_TOKENS = 207  # mean MiniLM tokens of the sample's passages (cut at 256)
GPU_PASSAGES_PER_S = GPU_SENTENCES_PER_S * BENCHMARK_SENTENCE_TOKENS / PASSAGE_TOKENS


def project(scale: dict, ingest: dict, cores: int, ram_gb: float) -> dict:
    build = scale["build"]
    pages, passages = scale["pages"], build["passages"]
    by_pages, by_passages = ENWIKI_ARTICLES / pages, ENWIKI_PASSAGES / passages
    stages = build["stages_s"]
    write_s = stages["write and embed"] - build.get("stand_in_embedding_s", 0.0)
    parse_rate = ingest["parse_passages_per_s_per_core"]
    rows = [
        {"stage": "parse wikitext", "unit": f"{parse_rate:.0f} passages/s per core (sample dump)",
         "hours": ENWIKI_PASSAGES / (parse_rate * (cores - 1)) / 3600, "parallel": True},
        {"stage": "SQL writes + FAISS adds (SQLite, one writer)",
         "unit": f"{pages / write_s:.0f} pages/s at {pages:,} pages (bench/scale.py)",
         "hours": write_s * by_pages / 3600},
        {"stage": "embedding, one GPU", "unit": f"~{GPU_PASSAGES_PER_S:.0f} passages/s (published V100 speed, by length)",
         "hours": ENWIKI_PASSAGES / GPU_PASSAGES_PER_S / 3600},
    ]
    for name, scale_by in (("redirects", by_pages), ("fact graph", by_pages), ("link graph", by_pages),
                           ("bm25", by_passages)):
        if name in stages:
            rows.append({"stage": f"finish: {name}", "unit": f"{stages[name]:.0f} s at {pages:,} pages",
                         "hours": stages[name] * scale_by / 3600})
    stream = max(rows[0]["hours"], rows[1]["hours"] + rows[2]["hours"])
    finish = sum(row["hours"] for row in rows[3:])
    disk = {name: mb * (by_passages if name in ("bm25", "passages.faiss") else by_pages) / 1024
            for name, mb in scale["disk_mb"].items() if name != "total" and mb >= 1}
    serving = scale["serving"]
    memory = {
        "build peak RSS, scaled linearly: an upper bound (GB)": build["peak_rss_mb"] * by_pages / 1024,
        "server process, private (GB)": serving["first_process"]["private_mb"] / 1024,
        "index files a server maps (GB)": sum(v for k, v in disk.items() if k in ("bm25", "links", "passages.faiss")),
    }
    breaks = sorted(((memory["build peak RSS, scaled linearly: an upper bound (GB)"] / ram_gb, "the ingest's peak memory (fact graph built in "
                      "NetworkX at the end)"),
                     (memory["index files a server maps (GB)"] / ram_gb, "the page cache holding the "
                      "mapped indexes, which queries then read from disk"),
                     ((rows[1]["hours"] + rows[2]["hours"]) / 12, "the single SQL writer plus embedding, in series")),
                    reverse=True)
    return {"rows": rows, "stream_hours": stream, "finish_hours": finish, "total_hours": stream + finish,
            "disk_gb": disk, "memory_gb": memory, "first_to_break": breaks[0][1],
            "pressure": [{"what": what, "share_of_budget": share} for share, what in breaks],
            "assumptions": {"articles": ENWIKI_ARTICLES, "passages": ENWIKI_PASSAGES, "cores": cores,
                            "ram_gb": ram_gb, "gpu_passages_per_s": GPU_PASSAGES_PER_S}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--ram-gb", type=float, default=64.0)
    parser.add_argument("--scale", type=Path, default=RESULTS / "scale-1000000.json")
    args = parser.parse_args()
    scale = json.loads(args.scale.read_text())
    ingest = json.loads((RESULTS / "ingest.json").read_text())
    result = project(scale, ingest, args.cores, args.ram_gb)
    print(f"| stage | measured unit cost | enwiki on {args.cores} cores + 1 GPU (h) |\n|---|---|---|")
    for row in result["rows"]:
        note = " (beside the writer)" if row.get("parallel") else ""
        print(f"| {row['stage']} | {row['unit']} | {row['hours']:.2f}{note} |")
    print(f"| **total** | stream max(parse, write + embed) + finishing | **{result['total_hours']:.1f}** |")
    print("\n| component | enwiki disk (GB) |\n|---|---|")
    for name, gb in result["disk_gb"].items():
        print(f"| {name} | {gb:.1f} |")
    print("\n| memory | GB |\n|---|---|")
    for name, gb in result["memory_gb"].items():
        print(f"| {name} | {gb:.1f} |")
    print(f"\nfirst to break: {result['first_to_break']}")
    (RESULTS / "enwiki-projection.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
