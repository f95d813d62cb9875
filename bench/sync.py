"""What ``kgqa ingest --sync`` costs over the same ingest when it removes nothing, measured side by side.

Two cases, each on fresh copies of one starting point, the plain ingest and the sync of the
same dump alternating (plain, sync, sync, plain, ...) so that a burst of load from another
job on a shared machine falls on both:

- ``current``: the sample dump again into a copy of the knowledge base built from it (every
  page unchanged). Nothing is embedded, so the sync's own work (the page ids held, the
  stored ids read and compared, the removal's empty transaction and the forced index save)
  weighs most here;
- ``fresh``: the sample dump into an empty folder, embedding every passage.

The embedder is loaded once and shared, so neither side pays for loading it. Each figure is
the median of ``--repeats`` runs, with the best beside it and the median of the repeats' own
ratios (each repeat's two runs back to back, under the same load), in wall seconds and in CPU seconds
(this process and its parser processes: what the run itself spent, which other jobs on a shared
machine disturb far less than the wall clock); every run is kept in the JSON.

    python bench/sync.py [--repeats 5] [--fresh-repeats 2] [--kb data]

Prints a table and writes bench/results/sync.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kg import index_files  # noqa: E402
from kg.ingest import ingest_dump  # noqa: E402
from kgqa import assets  # noqa: E402
from kgqa.settings import Settings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sync.json"


def copy_kb(source: Settings, where: Path) -> Settings:
    """The knowledge base's store and index copied into ``where``; the models are linked, only read."""
    where.mkdir(parents=True)
    if (source.data_dir / "kgqa.db").is_file():
        shutil.copy2(source.data_dir / "kgqa.db", where / "kgqa.db")
        shutil.copytree(source.index_dir, where / "index", ignore=shutil.ignore_patterns("*.lock", ".*"))
        index_files.stamp(where / "index")
    (where / "models").symlink_to(source.models_dir.resolve(), target_is_directory=True)
    return source.with_overrides(data_dir=where, models_dir=where / "models")


def _cpu_seconds() -> float:
    """User and system CPU time of this process and of its children that ended (the parser pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_run(start: Settings, dump: Path, sync: bool, embedder, scratch: Path, workers: int | None) -> dict:
    settings = copy_kb(start, Path(tempfile.mkdtemp(dir=scratch)) / "data")
    cpu_began = _cpu_seconds()
    began = time.perf_counter()
    summary = ingest_dump(settings, dump, sync=sync, progress=False, workers=workers, embedder=embedder)
    seconds = time.perf_counter() - began
    cpu = _cpu_seconds() - cpu_began
    removed = summary.removed.pages + summary.removed.redirects if summary.removed is not None else 0
    shutil.rmtree(settings.data_dir.parent, ignore_errors=True)
    return {"sync": sync, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "pages": summary.pages, "unchanged": summary.unchanged,
            "passages": summary.passages, "removed": removed, "stages": summary.stages}


def measure(name: str, start: Settings, dump: Path, repeats: int, embedder, scratch: Path, workers) -> dict:
    runs = []
    for repeat in range(repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        for sync in order:
            run = one_run(start, dump, sync, embedder, scratch, workers)
            print(f"  {name} {'sync ' if sync else 'plain'} {run['seconds']:.2f}s wall, {run['cpu_seconds']:.2f}s cpu",
                  file=sys.stderr, flush=True)
            runs.append(run)
    assert all(r["removed"] == 0 for r in runs), "a sync of the dump the KB was built from removed pages"
    figures = {"case": name, "repeats": repeats}
    for unit, key in (("s", "seconds"), ("cpu_s", "cpu_seconds")):
        plain = [r[key] for r in runs if not r["sync"]]
        synced = [r[key] for r in runs if r["sync"]]
        figures |= {f"plain_median_{unit}": round(statistics.median(plain), 3),
                    f"sync_median_{unit}": round(statistics.median(synced), 3),
                    f"plain_best_{unit}": round(min(plain), 3), f"sync_best_{unit}": round(min(synced), 3),
                    f"overhead_median_{unit}": round(statistics.median(synced) / statistics.median(plain) - 1, 4),
                    f"overhead_best_{unit}": round(min(synced) / min(plain) - 1, 4),
                    f"overhead_paired_median_{unit}": round(statistics.median(_paired(runs, key)), 4)}
    return figures | {"sync_step_s": [r["stages"].get("sync") for r in runs if r["sync"]], "runs": runs}


def _paired(runs: list[dict], key: str) -> list[float]:
    """sync / plain - 1 of each repeat's two runs, which ran back to back: the load of other jobs on a shared
    machine changes from minute to minute, so a pair is compared under the same load."""
    pairs = [runs[at:at + 2] for at in range(0, len(runs), 2)]
    return [next(r for r in pair if r["sync"])[key] / next(r for r in pair if not r["sync"])[key] - 1
            for pair in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side on the current knowledge base")
    parser.add_argument("--fresh-repeats", type=int, default=2, help="runs of each side from an empty folder (0: skip)")
    parser.add_argument("--kb", type=Path, default=None, help="a knowledge base built from the sample (default: data)")
    parser.add_argument("--workers", type=int, default=None, help="parser processes (default: all cores)")
    args = parser.parse_args()
    assets.stay_offline()
    project = Settings()
    kb = project.with_overrides(data_dir=args.kb) if args.kb else project
    dump = assets.sample_dump_path(project)
    from models.embedding.embedder import Embedder

    embedder = Embedder(kb)
    embedder.warm_up()
    empty = project.with_overrides(data_dir=Path(tempfile.mkdtemp()) / "empty", models_dir=kb.models_dir)
    results = []
    with tempfile.TemporaryDirectory(prefix="kgqa-bench-sync-") as scratch:
        results.append(measure("current", kb, dump, args.repeats, embedder, Path(scratch), args.workers))
        if args.fresh_repeats:
            results.append(measure("fresh", empty, dump, args.fresh_repeats, embedder, Path(scratch), args.workers))
    print(f"{'case':<8} {'clock':<5} {'runs':>4} {'plain s (median/best)':>22} {'sync s (median/best)':>21} "
          f"{'overhead (median/best/paired)':>30}  sync step s (max)")
    for r in results:
        for unit, clock in (("s", "wall"), ("cpu_s", "cpu")):
            print(f"{r['case']:<8} {clock:<5} {r['repeats']:>4} {r[f'plain_median_{unit}']:>12.2f} / "
                  f"{r[f'plain_best_{unit}']:<7.2f} {r[f'sync_median_{unit}']:>11.2f} / {r[f'sync_best_{unit}']:<7.2f} "
                  f"{100 * r[f'overhead_median_{unit}']:>+10.1f}% / {100 * r[f'overhead_best_{unit}']:+.1f}% / "
                  f"{100 * r[f'overhead_paired_median_{unit}']:+.1f}%"
                  f"  {max(r['sync_step_s']):.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"dump": dump.name, "cpus": os.cpu_count(), "workers": args.workers,
                                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "results": results}, indent=2) + "\n")
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
