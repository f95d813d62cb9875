"""``kgqa serve --workers N``: N gunicorn processes on one socket, each warming its own engine."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.app_fakes import ANSWER, QUESTION

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVE = """
import sys
from app import create_app
from app.serve import serve_workers
from kgqa.settings import Settings
from tests.helpers.app_fakes import FakeEngine

settings = Settings(data_dir=sys.argv[1], rate_limit_per_minute=0)
serve_workers(lambda: create_app(settings, engine=FakeEngine()), settings, host="127.0.0.1",
              port=int(sys.argv[2]), workers=2)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body) if body else None,
                     headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    except OSError:
        return 0, {}
    finally:
        conn.close()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


def test_two_workers_warm_themselves_answer_and_stop_on_sigterm(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path / "data"), str(port)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while ready < 20:  # 20 ready answers in a row: neither worker is still warming
            assert time.monotonic() < deadline, "the workers never became ready"
            assert server.poll() is None, server.stdout.read()
            ready = ready + 1 if call(port, "GET", "/readyz")[0] == 200 else 0
            time.sleep(0.05 if ready else 0.5)
        workers = children(server.pid)
        assert len(workers) == 2 and server.pid not in workers
        status, body = call(port, "POST", "/api/v1/ask", {"question": QUESTION})
        assert status == 200 and body["answer"] == ANSWER
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=40) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
