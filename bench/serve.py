"""Load, admission and streaming checks of the real server, on loopback only, every loop bounded.

Starts ``kgqa serve`` on 127.0.0.1 and a free port (or targets ``--url``), waits for
``/readyz``, then runs one of three measurements, prints a table and writes
``bench/results/<name>.json`` with the load average of the machine before and after:

- load (default): ``--clients`` threads POST questions in a loop for ``--duration``
  seconds. Reports the answered (admitted) requests' latency p50/p95, the refusals
  (503 + ``Retry-After``) and how fast they came, answers/s, and any other 5xx (there
  must be none: the run fails otherwise). A refused client waits ``Retry-After``.
- ``--sweep 1,2,4,8``: the server admits the largest level and nobody waits in line;
  for each level, that many clients ask in a closed loop for ``--duration`` seconds, so
  exactly that many answers are generated at once. Reports answers/s and latency per
  level, and the admission it suggests for a latency budget (``--budget``): the most
  concurrent answers whose p95 stays within it (when none does, the level with the
  lowest p95), and a waiting line of budget x answers/s at that level.
- ``--first-sentence``: each sample question once through the JSON API's SSE stream
  and once through the OpenAI stream, one at a time: time to the first verified
  sentence (the first ``sentence`` event / the first content) against the whole answer.

Admission tells clients apart by address and holds each below ``KGQA_MAX_CONCURRENT``, so
against a server on loopback every client thread connects from its own loopback address
(127.0.0.10 and up, ``bench/loopback.py``) and counts as a client of its own.

    python bench/serve.py --clients 32 --duration 300 --name soak
    python bench/serve.py --sweep 1,2,4,8 --duration 60
    python bench/serve.py --first-sentence
    python bench/serve.py --workers 2 --clients 4 --duration 60 --name serve-workers-2

``--workers N`` starts ``kgqa serve --workers N`` (gunicorn) and waits until every worker
answers ``/readyz``; every run then reports each server process's memory at its end from
``/proc/<pid>/smaps_rollup``: RSS, and PSS (shared pages divided among the processes that
map them, so the workers' PSS add up to what they cost together), anonymous and file-backed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from loopback import source_address  # bench/ is on the path of a script run from it

QUESTIONS = [
    "What is the capital of Alabama?",
    "Who wrote Animal Farm?",
    "When was Albert Einstein born?",
    "What is the capital of Algeria?",
    "Who was Aristotle's teacher?",
    "When did Apollo 11 land on the Moon?",
    "Where was Abraham Lincoln born?",
    "What is the largest city in Alabama?",
]
STREAM_QUESTIONS = [
    "Who was Albert Einstein married to?",
    "What is the capital of Alabama?",
    "What is anarchism?",
    "How many people live in Alabama?",
    "Who wrote Animal Farm?",
]
ASK, CHAT = "/api/v1/ask", "/v1/chat/completions"
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sample:
    """One request: status (0: connection failed, -1: client timeout), seconds to the end, and to the first sentence."""

    status: int
    seconds: float
    first_sentence: float | None = None
    engine_seconds: float | None = None
    retry_after: float | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def body_for(path: str, question: str, stream: bool) -> dict:
    if path == CHAT:
        return {"model": "kgqa", "messages": [{"role": "user", "content": question}], "stream": stream}
    return {"question": question, "stream": stream}


def _first_sentence_in(path: str, payload: str) -> bool:
    """Whether one SSE ``data:`` payload is a verified sentence: a sentence event, or a chunk whose content
    comes with its citations (an abstention's content has none)."""
    if payload == "[DONE]":
        return False
    event = json.loads(payload)
    if path == CHAT:
        return bool(event.get("choices") and event["choices"][0]["delta"].get("content") and event.get("citations"))
    return event.get("type") == "sentence"


def request(url: str, method: str, path: str, body: dict | None = None, timeout: float = 300.0,
            source: tuple[str, int] | None = None) -> Sample:
    """One request read to its end; for a stream, also the time its first verified sentence arrived.
    ``source``: the local (address, port) the connection leaves from (None: the system's choice)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout, source_address=source)
    started = time.perf_counter()
    first = None
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        if response.getheader("Content-Type", "").startswith("text/event-stream"):
            engine_seconds = None
            while line := response.readline():
                text = line.decode().rstrip("\n")
                if not text.startswith("data: "):
                    continue
                if first is None and _first_sentence_in(path, text[6:]):
                    first = time.perf_counter() - started
                if text.startswith('data: {"type":"result"'):
                    engine_seconds = json.loads(text[6:])["result"]["timings"]["total"]
            return Sample(response.status, time.perf_counter() - started, first, engine_seconds)
        data = response.read()
        retry_after = response.getheader("Retry-After")
        return Sample(response.status, time.perf_counter() - started, None, _engine_seconds(response.status, data),
                      float(retry_after) if retry_after else None)
    except TimeoutError:
        return Sample(-1, time.perf_counter() - started)
    except OSError:
        return Sample(0, time.perf_counter() - started)
    finally:
        conn.close()


def _engine_seconds(status: int, data: bytes) -> float | None:
    """The engine's own total time for a plain /api/v1/ask answer (the rest is queueing and HTTP)."""
    if status != 200:
        return None
    try:
        return float(json.loads(data)["timings"]["total"])
    except (ValueError, KeyError, TypeError):
        return None


def server_admission(url: str) -> dict:
    """What the server's ``/readyz`` says of its admission (running and waiting limits)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        conn.request("GET", "/readyz")
        body = json.loads(conn.getresponse().read())
        return {k: v for k, v in body.items() if k.startswith("max_")}
    except (OSError, ValueError):
        return {}
    finally:
        conn.close()


def wait_ready(url: str, timeout: float, server: subprocess.Popen | None = None, workers: int = 1) -> None:
    """Until ``/readyz`` says ready; with several workers (each its own readiness, behind one socket),
    until it says so ``READY_STREAK`` times in a row, so no worker is still warming."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode} before it was ready")
        streak = streak + 1 if request(url, "GET", "/readyz", timeout=5).status == 200 else 0
        if streak >= (1 if workers == 1 else READY_STREAK):
            return
        time.sleep(1 if streak == 0 else 0.05)
    raise SystemExit(f"server at {url} not ready after {timeout:.0f}s")


READY_STREAK = 20  # with 2 workers, 20 answers in a row from ready ones leave a warming one a 1e-6 chance


def server_processes(root: int) -> list[int]:
    """The process serving requests: ``root`` itself, or its children (gunicorn's workers) when it has any."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:  # the parent pid, after the state field
            children.append(int(stat.parent.name))
    return sorted(children) or [root]


def process_memory(pid: int) -> dict:
    """RSS and PSS (all, anonymous, file-backed) of one process, in MiB, from /proc/<pid>/smaps_rollup."""
    wanted = {"Rss": "rss_mib", "Pss": "pss_mib", "Pss_Anon": "pss_anon_mib", "Pss_File": "pss_file_mib"}
    memory: dict = {"pid": pid}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in wanted:
                memory[wanted[name]] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return memory


def run_clients(url: str, clients: int, duration: float, path: str, stream: bool, timeout: float) -> list[Sample]:
    """``clients`` threads asking in a loop until ``duration`` s have passed (a request under way is finished).
    Admission caps each client (address) below ``KGQA_MAX_CONCURRENT``, so against a loopback server each
    thread connects from its own loopback address (``loopback.source_address``) and counts as its own client."""
    samples: list[Sample] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client(index: int) -> None:
        turn = index
        source = source_address(index, urlparse(url).hostname)
        while time.monotonic() < stop_at:
            question = QUESTIONS[turn % len(QUESTIONS)]
            turn += 1
            sample = request(url, "POST", path, body_for(path, question, stream), timeout=timeout, source=source)
            with lock:
                samples.append(sample)
            if sample.status in (429, 503):  # what a polite client does: wait as Retry-After says
                time.sleep(min(sample.retry_after or 1.0, max(0.0, stop_at - time.monotonic())))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _r(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def summarise(samples: list[Sample], clients: int, duration: float, elapsed: float) -> dict:
    ok = [s.seconds for s in samples if s.status == 200]
    refused = [s.seconds for s in samples if s.status == 503]
    engine = [s.engine_seconds for s in samples if s.status == 200 and s.engine_seconds is not None]
    first = [s.first_sentence for s in samples if s.status == 200 and s.first_sentence is not None]
    statuses = [s.status for s in samples]
    return {
        "clients": clients,
        "duration_s": duration,
        "elapsed_s": round(elapsed, 2),
        "requests": len(samples),
        "answered": len(ok),
        "refused_503": len(refused),
        "status_5xx_other_than_503": sum(1 for s in statuses if s >= 500 and s != 503),
        "status_429": statuses.count(429),
        "connection_errors": statuses.count(0),
        "client_timeouts": statuses.count(-1),
        "answered_p50_s": _r(percentile(ok, 50)),
        "answered_p95_s": _r(percentile(ok, 95)),
        "answered_max_s": _r(max(ok, default=float("nan"))),
        "first_sentence_p50_s": _r(percentile(first, 50)),
        "first_sentence_p95_s": _r(percentile(first, 95)),
        "engine_time_p50_s": _r(percentile(engine, 50)),
        "refusal_p50_s": _r(percentile(refused, 50)),
        "refusal_p95_s": _r(percentile(refused, 95)),
        "refusal_max_s": _r(max(refused, default=float("nan"))),
        "answers_per_s": round(len(ok) / elapsed, 3),
    }


def sweep(url: str, levels: list[int], duration: float, path: str, stream: bool, timeout: float,
          budget: float) -> dict:
    rows = []
    for level in levels:
        load_before = load_average()
        started = time.perf_counter()
        samples = run_clients(url, level, duration, path, stream, timeout)
        row = summarise(samples, level, duration, time.perf_counter() - started)
        row["load_average_before"], row["load_average_after"] = load_before, load_average()
        rows.append(row)
        print(f"{level} at once: {row['answers_per_s']} answers/s, p50 {row['answered_p50_s']} s, "
              f"p95 {row['answered_p95_s']} s, {row['refused_503']} refused, load {row['load_average_after']}")
    within = [r for r in rows if r["answered_p95_s"] is not None and r["answered_p95_s"] <= budget]
    measured = [r for r in rows if r["answered_p95_s"] is not None]
    # the most answers at once within the budget; when none is, the level that comes closest to it
    chosen = max(within, key=lambda r: r["clients"]) if within else min(measured, key=lambda r: r["answered_p95_s"])
    return {
        "budget_s": budget,
        "levels": rows,
        "suggested_max_concurrent": chosen["clients"],
        "suggested_max_waiting": math.floor(budget * chosen["answers_per_s"]),
        "p95_within_budget_at": [r["clients"] for r in within],
    }


def first_sentences(url: str, timeout: float) -> dict:
    rows = []
    # All questions through one stream, then all through the other: five prompts outlast the
    # generator's cache of the last four, so no answer reuses the previous ask of its question.
    for path in (ASK, CHAT):
        for question in STREAM_QUESTIONS:
            sample = request(url, "POST", path, body_for(path, question, True), timeout=timeout)
            rows.append({"question": question, "path": path, "status": sample.status,
                         "first_sentence_s": _r(sample.first_sentence if sample.first_sentence is not None
                                                else float("nan")),
                         "total_s": round(sample.seconds, 3)})
            print(f"{path:<22} {question:<40} first sentence {rows[-1]['first_sentence_s']} s, "
                  f"total {rows[-1]['total_s']} s")
    return {"questions": rows}


def start_server(args) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "KGQA_RATE_LIMIT_PER_MINUTE": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.data_dir:
        env["KGQA_DATA_DIR"] = args.data_dir
    if args.sweep:  # exactly the level's clients run at once: admit the largest level, nobody waits in line
        env["KGQA_MAX_CONCURRENT"], env["KGQA_MAX_WAITING"] = str(max(args.sweep)), "0"
    if args.max_concurrent is not None:
        env["KGQA_MAX_CONCURRENT"] = str(args.max_concurrent)
    if args.max_waiting is not None:
        env["KGQA_MAX_WAITING"] = str(args.max_waiting)
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(args.workers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return f"http://127.0.0.1:{port}", subprocess.Popen(command, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server; default: start `kgqa serve`")
    parser.add_argument("--data-dir", help="KGQA_DATA_DIR for the started server (default: the project's)")
    parser.add_argument("--max-concurrent", type=int, help="KGQA_MAX_CONCURRENT for the started server")
    parser.add_argument("--max-waiting", type=int, help="KGQA_MAX_WAITING for the started server")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (per level with --sweep)")
    parser.add_argument("--path", default=ASK, choices=[ASK, CHAT])
    parser.add_argument("--stream", action="store_true", help="ask for SSE responses (read to the end)")
    parser.add_argument("--sweep", type=lambda text: [int(n) for n in text.split(",")],
                        help="concurrency levels to measure, e.g. 1,2,4,8")
    parser.add_argument("--budget", type=float, default=10.0, help="latency budget (s) for the sweep's suggestion")
    parser.add_argument("--first-sentence", action="store_true",
                        help="time to the first verified sentence of each sample question, both streams")
    parser.add_argument("--name", help="results file name (default: serve, serve-sweep, serve-first-sentence)")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: kgqa serve's)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (kgqa serve --workers)")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--request-timeout", type=float, default=600.0, help="client-side limit per request")
    args = parser.parse_args()

    server, url = None, args.url
    if url is None:
        url, server = start_server(args)
    load_before = load_average()
    try:
        wait_ready(url, args.ready_timeout, server, args.workers)
        started = time.perf_counter()
        if args.sweep:
            name, summary = "serve-sweep", sweep(url, args.sweep, args.duration, args.path, args.stream,
                                                  args.request_timeout, args.budget)
        elif args.first_sentence:
            name, summary = "serve-first-sentence", first_sentences(url, args.request_timeout)
        else:
            samples = run_clients(url, args.clients, args.duration, args.path, args.stream, args.request_timeout)
            name, summary = "serve", summarise(samples, args.clients, args.duration, time.perf_counter() - started)
            summary.update(path=args.path, stream=args.stream)
        admission = server_admission(url)
        memory = [process_memory(pid) for pid in server_processes(server.pid)] if server is not None else []
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    summary.update(load_average_before=load_before, load_average_after=load_average(), cpus=os.cpu_count(),
                   machine=platform.machine(), server=admission, workers=args.workers, memory=memory)
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if not isinstance(value, list):
            print(f"{key:<{width}}  {value}")
    for process in memory:
        print(f"process {process['pid']}: RSS {process.get('rss_mib')} MiB, PSS {process.get('pss_mib')} MiB "
              f"(anonymous {process.get('pss_anon_mib')}, file-backed {process.get('pss_file_mib')})")
    out = RESULTS / f"{args.name or name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")
    if summary.get("status_5xx_other_than_503") or any(
        row.get("status_5xx_other_than_503") for row in summary.get("levels", [])
    ):
        raise SystemExit("server errors (5xx other than 503) under load")


if __name__ == "__main__":
    main()
