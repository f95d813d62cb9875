"""Every file under ``index/`` truncated, zeroed and overwritten at its start: under a running server and at start.

Works on a copy of a built knowledge base (``--data-dir``, default the project's
``data/``: its ``kgqa.db`` and ``index/`` are copied, its models only read), never
on the original. Two phases, each file x each damage:

- running: one ``kgqa serve`` on the copy; the file is damaged in place (the inode
  a memory mapping would hold), then one question and one ``/readyz`` are sent and
  the process is checked; the file is put back before the next case. A dead server
  counts as a crash and is started again.
- start: a fresh copy with the file damaged, then a process that loads the knowledge
  base as the server's warm-up does (the real embedder; the LM is not loaded: it
  reads nothing under ``index/``) and runs one retrieval. It ends repaired (loaded,
  and every file matches its stamp again), reported (``DamagedIndexFile`` naming the
  file relative to the data folder: the server's ``/readyz`` 503), or crashed (a
  signal, or any other exception: the server would answer 500 or die).

    python bench/index_damage.py                 # both phases, table + bench/results/index_damage.json
    python bench/index_damage.py --phase start
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.index_damage import KINDS, damage  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
QUESTION = "Who wrote Animal Farm?"
LOAD = """
import sys
from kg import index_files
from kg.index_files import DamagedIndexFile
from kgqa.settings import Settings
from retrieval.knowledge_base import KnowledgeBase
settings = Settings()
try:
    kb = KnowledgeBase(settings)
    kb.warm_up()
    assert kb.sparse.search("Animal Farm Orwell", 3) and kb.linker.link("Who wrote Animal Farm?")
    kb.vector_index.search(kb.embedder.encode_query("Who wrote Animal Farm?")[None, :], 3)
except DamagedIndexFile as exc:
    print("reported", exc)
    sys.exit(3)
print("repaired" if not index_files.damaged(settings.index_dir) else "loaded, still damaged")
"""


def copy_kb(source: Path, dest: Path) -> Path:
    data = dest / "data"
    data.mkdir(parents=True)
    shutil.copy2(source / "kgqa.db", data / "kgqa.db")
    shutil.copytree(source / "index", data / "index", ignore=shutil.ignore_patterns("*.lock", ".*"))
    return data


def index_names(data: Path) -> list[str]:
    from kg import index_files

    index_files.stamp(data / "index")
    return [p.relative_to(data / "index").as_posix() for p in index_files.index_files(data / "index")] + [
        index_files.MANIFEST]


def environment(data: Path, models: Path) -> dict:
    return {**os.environ, "KGQA_DATA_DIR": str(data), "KGQA_MODELS_DIR": str(models),
            "KGQA_RATE_LIMIT_PER_MINUTE": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def start_server(data: Path, models: Path, port: int, log) -> tuple[str, subprocess.Popen]:
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=environment(data, models), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, server)
    return url, server


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 600) -> None:
    """Until ``/readyz`` answers 200; exits when the server dies or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server did not become ready (exit {server.poll()})")


def running_phase(source: Path, models: Path, work: Path) -> list[dict]:
    data = copy_kb(source, work / "running")
    names = index_names(data)
    port = 5300 + os.getpid() % 500
    log = open(work / "server.log", "ab")
    url, server = start_server(data, models, port, log)
    rows = []
    try:
        for name in names:
            for kind in KINDS:
                path = data / "index" / name
                original = path.read_bytes()
                damage(path, kind)
                row = {"file": name, "damage": kind, "phase": "running"}
                try:
                    row["ask"] = requests.post(f"{url}/api/v1/ask", json={"question": QUESTION}, timeout=120).status_code
                    row["readyz"] = requests.get(f"{url}/readyz", timeout=10).status_code
                except requests.RequestException as exc:
                    row["error"] = type(exc).__name__
                time.sleep(0.2)
                row["crashed"] = server.poll() is not None
                with open(path, "r+b") as handle:  # put back, in place
                    handle.write(original)
                    handle.truncate(len(original))
                if row["crashed"]:
                    row["exit"] = server.returncode
                    url, server = start_server(data, models, port, log)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(30)
    return rows


def start_phase(source: Path, models: Path, work: Path) -> list[dict]:
    pristine = copy_kb(source, work / "pristine")
    names = index_names(pristine)
    rows = []
    for name in names:
        for kind in KINDS:
            case = work / "case"
            shutil.rmtree(case, ignore_errors=True)
            shutil.copytree(pristine.parent, case)
            damage(case / "data" / "index" / name, kind)
            done = subprocess.run([sys.executable, "-c", LOAD], env=environment(case / "data", models),
                                  capture_output=True, text=True, timeout=600)
            lines = done.stdout.strip().splitlines()
            row = {"file": name, "damage": kind, "phase": "start", "exit": done.returncode,
                   "outcome": lines[-1][:200] if lines else done.stderr.strip().splitlines()[-1][:200],
                   "logged": [line[:200] for line in done.stderr.splitlines() if f"index/{name}" in line][:2]}
            row["crashed"] = done.returncode not in (0, 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    # running: "served" is both answers 200 (the process holds what it loaded; the file is checked at the next start)
    lines = ["| phase | damage | cases | crashes | HTTP 500 | served / repaired | reported (503 naming the file) | other |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for phase in ("running", "start"):
        for kind in KINDS:
            case = [r for r in rows if r["phase"] == phase and r["damage"] == kind]
            if not case:
                continue
            counts = Counter()
            for r in case:
                if r["crashed"]:
                    counts["crash"] += 1
                elif phase == "running":
                    counts["500"] += 500 in (r.get("ask"), r.get("readyz"))
                    counts["repaired"] += r.get("ask") == 200 and r.get("readyz") == 200  # served as before
                    counts["other"] += not (r.get("ask") == 200 and r.get("readyz") == 200)
                elif r["outcome"].startswith("repaired"):
                    counts["repaired"] += 1
                elif r["outcome"].startswith(f"reported index/{r['file']} "):
                    counts["reported"] += 1
                else:
                    counts["other"] += 1
            lines.append(f"| {phase} | {kind} | {len(case)} | {counts['crash']} | {counts['500']} | "
                         f"{counts['repaired']} | {counts['reported']} | {counts['other']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[1] / "data")
    parser.add_argument("--models-dir", type=Path, default=None, help="default: <data-dir>/models")
    parser.add_argument("--phase", choices=["running", "start", "both"], default="both")
    parser.add_argument("--name", default="index_damage")
    args = parser.parse_args()
    models = args.models_dir or args.data_dir / "models"
    rows = []
    with tempfile.TemporaryDirectory(prefix="kgqa-index-damage-") as work:
        if args.phase in ("running", "both"):
            rows += running_phase(args.data_dir, models, Path(work))
        if args.phase in ("start", "both"):
            rows += start_phase(args.data_dir, models, Path(work))
    print(table(rows))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"rows": rows, "table": table(rows)}, indent=1))


if __name__ == "__main__":
    main()
