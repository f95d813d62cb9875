"""Slow clients against ``kgqa serve``: do readiness probes and a normal question still get through?

Starts ``kgqa serve`` on loopback (or targets ``--url``), waits for ``/readyz``, then holds
``--connections`` slow connections for ``--duration`` seconds, each sending one byte every
``--interval`` seconds: of its header block (``--mode headers``, slowloris) or of a body
whose ``Content-Length`` is under the limit (``--mode body``). A connection the server
closes is opened again at once, so the pressure stays. Meanwhile a probe asks ``/readyz``
once a second (answered means a 200 within ``--probe-timeout`` seconds, connecting
included) and a normal question is asked every 5 s. Prints a table and writes
``bench/results/<name>.json``.

    python bench/slowloris.py --connections 300 --duration 60
    python bench/slowloris.py --connections 300 --duration 60 --mode body --name slowloris-body
    python bench/slowloris.py --workers 2 --connections 300 --duration 60 --name slowloris-workers-2
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lm_outage import call  # noqa: E402 (bench/lm_outage.py)
from serve import free_port, load_average, wait_ready  # noqa: E402 (bench/serve.py)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who wrote Animal Farm?"


class SlowClients:
    """``count`` connections, each sending its request one byte per ``interval`` seconds; reopened when closed."""

    def __init__(self, host: str, port: int, count: int, interval: float, mode: str):
        self.address, self.count, self.interval, self.mode = (host, port), count, interval, mode
        self.opened = self.closed_by_server = self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def _request(self) -> bytes:
        if self.mode == "body":
            return (b"POST /api/v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 60000\r\n\r\n" + b" " * 60000)
        return b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 20) for i in range(4000))

    def _open(self) -> list | None:
        try:
            sock = socket.create_connection(self.address, timeout=2)
        except OSError:
            self.refused += 1
            return None
        sock.setblocking(False)
        self.opened += 1
        data = self._request()
        head = data.index(b"\r\n\r\n") + 4 if self.mode == "body" else data.index(b"\r\n") + 2
        try:
            sock.send(data[:head])  # body mode: the headers at once, then the body byte by byte
        except OSError:
            pass
        return [sock, data, head]

    def _run(self) -> None:
        conns = [c for c in (self._open() for _ in range(self.count)) if c]
        while not self._stop.is_set():
            started = time.monotonic()
            for conn in conns:
                sock, data, sent = conn
                try:
                    if sock.recv(4096, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass  # nothing from the server: still open
                except OSError:
                    sock.close()
                    self.closed_by_server += 1
                    conn[:] = self._open() or [None, data, len(data)]
                    continue
                if sock is None:
                    conn[:] = self._open() or [None, data, len(data)]
                    continue
                try:
                    sock.send(data[sent:sent + 1])
                    conn[2] = sent + 1
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    self.closed_by_server += 1
                    conn[:] = self._open() or [None, data, len(data)]
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        for sock, _, _ in conns:
            if sock is not None:
                sock.close()

    def start(self) -> SlowClients:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running server; default: start `kgqa serve`")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two bytes of a slow client")
    parser.add_argument("--mode", choices=["headers", "body"], default="headers")
    parser.add_argument("--probe-timeout", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1, help="`kgqa serve --workers N`; with --url, how many the server runs (readiness waits for all)")
    parser.add_argument("--name", default="slowloris")
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(args.workers)]
        server = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**__import__("os").environ, "KGQA_RATE_LIMIT_PER_MINUTE": "0"})
    load_before = load_average()
    probes: list[dict] = []
    questions: list[dict] = []
    try:
        wait_ready(url, 600, server, workers=args.workers)
        host, port = url.split("//")[1].split(":")
        slow = SlowClients(host, int(port), args.connections, args.interval, args.mode).start()
        time.sleep(min(5.0, args.duration / 4))  # let the slow connections pile up first
        started = time.monotonic()
        done = threading.Event()

        def ask_now_and_then():  # its own thread: a slow answer never delays a probe
            while not done.is_set():
                tick = time.monotonic()
                status, _, seconds = call(url, "POST", "/api/v1/ask", {"question": QUESTION}, timeout=30)
                questions.append({"t": round(tick - started, 2), "status": status, "seconds": round(seconds, 3)})
                done.wait(max(0.0, 5.0 - (time.monotonic() - tick)))

        asker = threading.Thread(target=ask_now_and_then, daemon=True)
        asker.start()
        while time.monotonic() - started < args.duration:
            tick = time.monotonic()
            status, _, seconds = call(url, "GET", "/readyz", timeout=args.probe_timeout)
            probes.append({"t": round(tick - started, 2), "status": status, "seconds": round(seconds, 3)})
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        done.set()
        asker.join(35)
        slow.stop()
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)

    answered = [p for p in probes if p["status"] == 200 and p["seconds"] <= args.probe_timeout]
    asked = sorted(q["seconds"] for q in questions if q["status"] == 200)
    summary = {
        "mode": args.mode, "workers": args.workers, "connections": args.connections, "interval_s": args.interval,
        "duration_s": args.duration,
        "readyz_answered": f"{len(answered)}/{len(probes)}",
        "readyz_answered_share": round(len(answered) / max(1, len(probes)), 3),
        "question_answered": f"{len(asked)}/{len(questions)}",
        "question_max_s": asked[-1] if asked else None,
        "slow_connections_opened": slow.opened, "closed_by_server": slow.closed_by_server, "refused": slow.refused,
        "load_average": {"before": load_before, "after": load_average()},
    }
    print(f"{args.connections} slow connections ({args.mode}, a byte every {args.interval:g} s) for {args.duration:g} s:")
    print(f"  /readyz answered within {args.probe_timeout:g} s: {summary['readyz_answered']}"
          f" ({100 * summary['readyz_answered_share']:.0f}%)")
    print(f"  normal question answered: {summary['question_answered']}, slowest {summary['question_max_s']} s")
    print(f"  slow connections opened {slow.opened}, closed by the server {slow.closed_by_server}, refused {slow.refused}")
    out = PROJECT_ROOT / "bench" / "results" / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "probes": probes, "questions": questions}, indent=2))


if __name__ == "__main__":
    main()
