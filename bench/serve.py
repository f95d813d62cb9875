"""Load check of the real server: N concurrent clients asking questions for a fixed time.

Starts ``kgqa serve`` on 127.0.0.1 and a free port (or targets ``--url``), waits
for ``/readyz``, then runs ``--clients`` threads that each POST questions in a
loop until ``--duration`` seconds have passed. Reports p50/p95 latency,
throughput and the counts of 5xx and 503; prints a table and writes
``bench/results/serve.json``. Loopback only; every loop is bounded.

    python bench/serve.py --clients 16 --duration 60
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

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
RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, method: str, path: str, body: dict | None = None, timeout: float = 300.0):
    """(status, seconds, engine seconds or None); status 0: the connection failed, -1: the client timed out."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    started = time.perf_counter()
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        data = response.read()
        return response.status, time.perf_counter() - started, _engine_seconds(response.status, data)
    except TimeoutError:
        return -1, time.perf_counter() - started, None
    except OSError:
        return 0, time.perf_counter() - started, None
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


def wait_ready(url: str, timeout: float, server: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode} before it was ready")
        status, _, _ = request(url, "GET", "/readyz", timeout=5)
        if status == 200:
            return
        time.sleep(1)
    raise SystemExit(f"server at {url} not ready after {timeout:.0f}s")


def run_clients(url: str, clients: int, duration: float, path: str, stream: bool, timeout: float) -> list[tuple]:
    samples: list[tuple] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client(index: int) -> None:
        turn = index
        while time.monotonic() < stop_at:
            question = QUESTIONS[turn % len(QUESTIONS)]
            turn += 1
            if path == "/v1/chat/completions":
                body = {"model": "kgqa", "messages": [{"role": "user", "content": question}], "stream": stream}
            else:
                body = {"question": question, "stream": stream}
            sample = request(url, "POST", path, body, timeout=timeout)
            with lock:
                samples.append(sample)
            if sample[0] in (429, 503):
                time.sleep(1)  # what a polite client does on Retry-After

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


def summarise(samples, clients: int, duration: float, elapsed: float) -> dict:
    ok = [s for status, s, _ in samples if status == 200]
    engine = [e for status, _, e in samples if status == 200 and e is not None]
    statuses = [status for status, _, _ in samples]
    return {
        "clients": clients,
        "duration_s": duration,
        "elapsed_s": round(elapsed, 2),
        "requests": len(samples),
        "ok": len(ok),
        "status_5xx": sum(1 for s in statuses if s >= 500),
        "status_503": statuses.count(503),
        "status_5xx_other_than_503": sum(1 for s in statuses if s >= 500 and s != 503),
        "status_429": statuses.count(429),
        "connection_errors": statuses.count(0),
        "client_timeouts": statuses.count(-1),
        "latency_p50_s": round(percentile(ok, 50), 3),
        "latency_p95_s": round(percentile(ok, 95), 3),
        "engine_time_p50_s": round(percentile(engine, 50), 3),
        "throughput_rps": round(len(ok) / elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server; default: start `kgqa serve`")
    parser.add_argument("--data-dir", help="KGQA_DATA_DIR for the started server (default: the project's)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--path", default="/api/v1/ask", choices=["/api/v1/ask", "/v1/chat/completions"])
    parser.add_argument("--stream", action="store_true", help="ask for SSE responses (read to the end)")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: kgqa serve's)")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--request-timeout", type=float, default=600.0, help="client-side limit per request")
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "KGQA_RATE_LIMIT_PER_MINUTE": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if args.data_dir:
            env["KGQA_DATA_DIR"] = args.data_dir
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        server = subprocess.Popen(command, env=env)
    try:
        wait_ready(url, args.ready_timeout, server)
        started = time.perf_counter()
        samples = run_clients(url, args.clients, args.duration, args.path, args.stream, args.request_timeout)
        summary = summarise(samples, args.clients, args.duration, time.perf_counter() - started)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    summary.update(path=args.path, stream=args.stream, cpus=os.cpu_count(), machine=platform.machine())
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if summary["status_5xx_other_than_503"]:
        raise SystemExit("server errors (5xx other than 503) under load")


if __name__ == "__main__":
    main()
