"""Gather every bench/results/*.json (ingest, embed, retrieve, generate, serve, ...) into one markdown report.

Each bench script writes its own JSON shape, so the report reads them generically:
scalar fields become "metric | value" rows, lists of records become tables. The
machine's details head the report, because a number means little without them.

    python bench/report.py [--results bench/results] [--out bench/results/report.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def machine_details() -> dict[str, str]:
    details = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    for distribution in ("torch", "transformers", "sentence-transformers", "faiss-cpu", "flask"):
        details[distribution] = _version(distribution)
    try:
        import torch

        details["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # noqa: BLE001
        details["gpu"] = "unknown"
    return details


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)[:80]
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _flatten(data: dict, prefix: str = "") -> tuple[list[tuple[str, object]], list[tuple[str, list[dict]]]]:
    """Scalars as dotted keys, and every list of records found along the way."""
    scalars, tables = [], []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            inner_scalars, inner_tables = _flatten(value, f"{name}.")
            scalars += inner_scalars
            tables += inner_tables
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((name, value))
        else:
            scalars.append((name, value))
    return scalars, tables


def read_bench(path: Path) -> tuple[list[tuple[str, object]], list[tuple[str, list[dict]]]]:
    """A bench file's scalars and record tables; an unreadable file says so instead of failing the report."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [("unreadable", str(exc).splitlines()[0])], []
    if isinstance(data, list):
        data = {"rows": data}
    if not isinstance(data, dict):
        data = {"value": data}
    return _flatten(data)


def build_report(results_dir: Path) -> str:
    """One summary table (bench, metric, value) over every file, then each file's record tables."""
    files = sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []
    lines = ["# kgqa benchmark report", "", "## Machine", ""]
    lines += _table(["", ""], [[k, v] for k, v in machine_details().items()]) + [""]
    if not files:
        return "\n".join(lines + [f"No benchmark results in {results_dir}: run the bench scripts first (`make bench`)."])
    parsed = {path.stem: read_bench(path) for path in files}
    summary = [[bench, key, _cell(value)] for bench, (scalars, _) in parsed.items() for key, value in scalars]
    lines += ["## Results", ""] + _table(["bench", "metric", "value"], summary) + [""]
    for bench, (_, tables) in parsed.items():
        for name, records in tables:
            header = list(dict.fromkeys(key for record in records for key in record))
            lines += [f"### {bench}: {name}", ""]
            lines += _table(header, [[_cell(r.get(h, "")) for h in header] for r in records]) + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=None, help="default: <results>/report.md")
    args = parser.parse_args()
    markdown = build_report(args.results)
    out = args.out or args.results / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n", encoding="utf-8")
    print(markdown)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
