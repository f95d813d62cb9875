"""What the densest questions cost the real server, and what a normal question waits while they are sent.

Starts ``kgqa serve`` on 127.0.0.1 (rate limit off) on the project's knowledge base (or
``--data-dir``), then:

- singles: each question below sent alone, ``--repeat`` times: status and seconds. The
  audit's questions (1,000 characters of CJK or combining marks) and the heaviest ones the
  token limit lets through (``KGQA_MAX_QUESTION_TOKENS`` of them, by the LM's tokenizer).
- load: ``--clients`` clients send the heaviest allowed question in a closed loop for
  ``--duration`` seconds while one client asks normal questions; a refused (503) request
  waits its ``Retry-After`` and is sent again. Reports the normal question's time to its
  answer (retries included) p50/p95, and what the heavy clients got. Admission tells
  clients apart by address, so each client connects from its own loopback address
  (127.0.0.2 the normal one, 127.0.0.10 and up the heavy ones); ``--one-address`` sends
  every heavy client from one address (one host opening many connections). The result lists
  each normal answer's seconds (cold ones stand out) and each heavy client's answers, so a
  heavy client that was never served shows.

    python bench/heavy_questions.py --clients 8 --duration 60
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from index_damage import wait_ready  # bench/ is on the path of a script run from it
from loopback import client_address, client_from

RESULTS = Path(__file__).resolve().parent / "results"
NORMAL = ["Who wrote Animal Farm?", "What is the capital of Alabama?", "Where was Albert Einstein born?"]
QUESTIONS = {
    "normal": NORMAL[0],
    "audit: CJK, 993 chars": "Who wrote Animal Farm? " + "\u9f98" * 970,
    "audit: combining marks, 1000 chars": "a" + "\u0301" * 999,
    "heaviest allowed: CJK": "Who wrote Animal Farm? " + "\u9f98" * 82,
    "heaviest allowed: combining marks": "Who wrote Animal Farm? a" + "\u0301" * 125,
}
HEAVY = QUESTIONS["heaviest allowed: CJK"]


def start_server(data_dir: str | None) -> tuple[str, subprocess.Popen]:
    port = 5800 + os.getpid() % 150
    env = {**os.environ, "KGQA_RATE_LIMIT_PER_MINUTE": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if data_dir:
        env["KGQA_DATA_DIR"] = data_dir
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, server)
    return url, server


def ask(url: str, question: str, client=requests) -> tuple[int, float, dict]:
    started = time.monotonic()
    response = client.post(f"{url}/api/v1/ask", json={"question": question}, timeout=600)
    return response.status_code, time.monotonic() - started, response.headers


def answered(url: str, question: str, stop: threading.Event, client, refusals: Counter) -> float | None:
    """Seconds until the question is answered, waiting out 503s; None if stopped first."""
    started = time.monotonic()
    while not stop.is_set():
        status, _, headers = ask(url, question, client)
        if status != 503:
            return time.monotonic() - started if status == 200 else None
        refusals[status] += 1
        time.sleep(float(headers.get("Retry-After", 1)))
    return None


def singles(url: str, repeat: int) -> list[dict]:
    rows = []
    for name, question in QUESTIONS.items():
        for _ in range(repeat):
            status, seconds, _ = ask(url, question)
            rows.append({"question": name, "chars": len(question), "status": status, "seconds": round(seconds, 2)})
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    return rows


def load(url: str, clients: int, duration: float, one_address: bool = False) -> dict:
    stop = threading.Event()
    heavy: Counter = Counter()
    heavy_answered: Counter = Counter()  # 200s per heavy client (address and thread)
    normal: list[float] = []
    refusals: Counter = Counter()

    def heavy_client(name: str, address: str) -> None:
        client = client_from(address)
        while not stop.is_set():
            status, _, headers = ask(url, HEAVY, client)
            heavy[status] += 1
            heavy_answered[name] += status == 200
            if status == 503:
                time.sleep(float(headers.get("Retry-After", 1)))

    def normal_client() -> None:
        client = client_from("127.0.0.2")
        turn = 0
        while not stop.is_set():
            seconds = answered(url, NORMAL[turn % len(NORMAL)], stop, client, refusals)
            if seconds is not None:
                normal.append(seconds)
            turn += 1

    addresses = [client_address(0 if one_address else n) for n in range(clients)]
    threads = [threading.Thread(target=heavy_client, args=(f"{n}@{address}", address))
               for n, address in enumerate(addresses)]
    threads.append(threading.Thread(target=normal_client))
    for thread in threads:
        thread.start()
    time.sleep(duration)
    stop.set()
    for thread in threads:
        thread.join(timeout=600)
    in_order = [round(seconds, 2) for seconds in normal]
    normal.sort()
    p95 = normal[min(len(normal) - 1, int(0.95 * len(normal)))] if normal else None
    return {"clients": clients, "heavy_addresses": len(set(addresses)), "duration_s": duration,
            "heavy_statuses": dict(heavy), "normal_answered": len(normal), "normal_503s": sum(refusals.values()), "normal_p50_s": round(statistics.median(normal), 2) if normal else None,
            "normal_p95_s": round(p95, 2) if p95 is not None else None, "normal_max_s": round(max(normal), 2) if normal else None,
            "normal_seconds": in_order, "heavy_answered": dict(heavy_answered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="KGQA_DATA_DIR for the server (default: the project's)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--one-address", action="store_true", help="every heavy client from one address")
    parser.add_argument("--name", default="heavy_questions")
    args = parser.parse_args()
    url, server = start_server(args.data_dir)
    try:
        result = {"singles": singles(url, args.repeat), "load_average_before": os.getloadavg(),
                  "load": load(url, args.clients, args.duration, args.one_address),
                  "load_average": os.getloadavg()}
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps({**result["load"], "load_average": result["load_average"]}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
