"""An LM server down when ``kgqa serve`` starts, back after ``--down`` seconds: what the service answers meanwhile.

Starts ``kgqa serve`` on loopback with ``KGQA_LM_URL`` naming a free port where nothing
listens yet, waits for ``/readyz`` (200, ``degraded``), then once a second asks a question
an infobox fact answers (``--fact``) and probes ``/readyz``, and every few seconds a question
only the LM can draft (``--drafted``). After ``--down`` seconds it starts the real server
(``python -m models.lm.llamacpp`` on the bundled GGUF) on that port; the moment it prints that
it serves is its return. From then on the drafted question is asked back to back until it
is answered with generated text, and the run goes on ``--up`` seconds more. Prints a table
and writes ``bench/results/<name>.json``.

    python bench/lm_outage.py --down 30 --up 20
    python bench/lm_outage.py --down 30 --up 20 --lm fake --name lm-outage-fake
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve import free_port, load_average, wait_ready  # noqa: E402 (bench/serve.py)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ASK = "/api/v1/ask"


def call(url: str, method: str, path: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict, float]:
    """One request: its status (0: no connection), its JSON body and its seconds."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    started = time.perf_counter()
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}"), time.perf_counter() - started
    except (OSError, ValueError):
        return 0, {}, time.perf_counter() - started
    finally:
        conn.close()


def ask(url: str, question: str) -> dict:
    """One plain ask: its status, seconds, and whether the LM wrote any of it."""
    status, body, seconds = call(url, "POST", ASK, {"question": question})
    timings = body.get("timings") or {}
    return {"status": status, "seconds": seconds, "generated": bool(body.get("generated")),
            "code": (body.get("error") or {}).get("code"), "first_token_s": timings.get("first_token"),
            "generate_s": timings.get("generate")}


def readiness(url: str) -> str:
    status, body, _ = call(url, "GET", "/readyz", timeout=5)
    return body.get("status", "") if status == 200 else f"http {status}"


def start_lm_server(port: int, kind: str):
    """The LM server on ``port`` (``stop()``/``terminate()`` ends it) and the moment it serves.

    ``llamacpp``: the bundled GGUF under llama.cpp's server, a real model whose first prompt
    is prefilled cold; ``fake``: the tests' stand-in, which answers at once, so what remains
    is the service's own time to use a server that came back.
    """
    if kind == "fake":
        sys.path.insert(0, str(PROJECT_ROOT))
        from tests.helpers.fake_lm_server import FakeLMServer

        return FakeLMServer(port=port).start(), time.monotonic()
    from kgqa.assets import bundled_gguf_path

    process = subprocess.Popen(
        [sys.executable, "-m", "models.lm.llamacpp", str(bundled_gguf_path()), "--port", str(port), "--slots", "1"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if "serving" not in line:
        raise SystemExit(f"the LM server did not start: {line!r}")
    return process, time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=30.0, help="seconds the LM server stays down after readiness")
    parser.add_argument("--up", type=float, default=20.0, help="seconds to go on after the first generated answer")
    parser.add_argument("--fact", default="Who wrote Animal Farm?")
    parser.add_argument("--drafted", default="What did Albert Einstein develop?")
    parser.add_argument("--lm", choices=["llamacpp", "fake"], default="llamacpp", help="the LM server that returns")
    parser.add_argument("--name", default="lm-outage")
    args = parser.parse_args()

    lm_port, port = free_port(), free_port()
    env = {**os.environ, "KGQA_RATE_LIMIT_PER_MINUTE": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "KGQA_LM_URL": f"http://127.0.0.1:{lm_port}/v1"}
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=PROJECT_ROOT)
    lm = None
    load_before = load_average()
    log: list[dict] = []
    try:
        wait_ready(url, 600, server)
        started = time.monotonic()
        returned = first_generated = first_answer = None
        next_drafted = started
        while first_generated is None or time.monotonic() < first_generated + args.up:
            now = time.monotonic()
            if lm is None and now - started >= args.down:
                lm, returned = start_lm_server(lm_port, args.lm)
            phase = "down" if returned is None else "up"
            if now >= next_drafted or (returned is not None and first_generated is None):
                sent = time.monotonic()
                answer = ask(url, args.drafted)
                log.append({"t": round(sent - started, 2), "phase": phase, "kind": "drafted", **answer})
                if returned is not None and first_generated is None and answer["status"] == 200 and answer["generated"]:
                    first_generated = time.monotonic()
                    first_answer = {**answer, "sent_after_return_s": round(sent - returned, 2)}
                next_drafted = time.monotonic() + 5
            sent = time.monotonic()
            log.append({"t": round(sent - started, 2), "phase": phase, "kind": "fact", **ask(url, args.fact),
                        "readyz": readiness(url)})
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
    finally:
        server.terminate()
        server.wait(30)
        if isinstance(lm, subprocess.Popen):
            lm.terminate()
            lm.wait(30)
        elif lm is not None:
            lm.stop()

    def rows(phase: str, kind: str) -> list[dict]:
        return [entry for entry in log if entry["phase"] == phase and entry["kind"] == kind]

    summary = {
        "down_s": args.down,
        "first_generated_after_return_s": round(first_generated - returned, 2),
        "first_generated": first_answer,  # when it was sent, and the LM server's own share (first_token_s, generate_s)
        "drafted_failures_after_return": sum(e["status"] != 200 for e in rows("up", "drafted")),
        "phases": {
            phase: {
                "fact_answered": f"{sum(e['status'] == 200 for e in rows(phase, 'fact'))}/{len(rows(phase, 'fact'))}",
                "fact_p95_s": round(sorted(e["seconds"] for e in rows(phase, "fact"))[int(0.95 * (len(rows(phase, "fact")) - 1))], 2),
                "drafted": sorted({f"{e['status']} {e['code'] or ('generated' if e['generated'] else '')}".strip()
                                   for e in rows(phase, "drafted")}),
                "readyz": sorted({e["readyz"] for e in rows(phase, "fact")}),
            } for phase in ("down", "up")
        },
        "load_average": {"before": load_before, "after": load_average()},
    }
    print(f"{'phase':6} {'fact answered':>14} {'fact p95 s':>10}  drafted question            readyz")
    for phase, row in summary["phases"].items():
        print(f"{phase:6} {row['fact_answered']:>14} {row['fact_p95_s']:>10}  {', '.join(row['drafted']):27} {', '.join(row['readyz'])}")
    first = summary["first_generated"]
    print(f"first generated answer {summary['first_generated_after_return_s']} s after the LM server returned "
          f"(sent {first['sent_after_return_s']} s after it, took {first['seconds']:.2f} s: LM first token "
          f"{first['first_token_s'] or 0:.2f} s, generation {first['generate_s'] or 0:.2f} s); drafted questions refused after "
          f"its return: {summary['drafted_failures_after_return']}")
    out = PROJECT_ROOT / "bench" / "results" / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "log": log}, indent=2))


if __name__ == "__main__":
    main()
