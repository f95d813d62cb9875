"""``kgqa serve --workers N``: N gunicorn processes on one socket, each warming its own engine and
serving through waitress, so slow clients starve none of them."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from tests.helpers.app_fakes import ANSWER, QUESTION, FakeEngine, sse_events

from kgqa.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVE = """
import sys
from app import create_app
from app.serve import serve_workers
from kgqa.settings import Settings
from tests.helpers.app_fakes import FakeEngine

settings = Settings(data_dir=sys.argv[1], rate_limit_per_minute=0)
serve_workers(lambda: create_app(settings, engine=FakeEngine(delay_s=float(sys.argv[3]))), settings, host="127.0.0.1",
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


@contextmanager
def in_process_worker(tmp_path, *, ppid: int, application=None, wsgi=None):
    """A ``WaitressWorker`` on a listening socket of its own, its ``run()`` in a thread; yields it and its port.

    ``application`` stands for gunicorn's application object (``serve_workers``'s), ``wsgi`` for the app it loads."""
    from gunicorn.config import Config

    from app import create_app
    from app.serve import waitress_worker

    cfg = Config()
    cfg.set("threads", 2)
    cfg.set("graceful_timeout", 5)
    listener = socket.create_server(("127.0.0.1", 0))
    worker = waitress_worker()(0, ppid, [SimpleNamespace(sock=listener)], application, 30, cfg, mock.Mock())
    worker.wsgi = wsgi or create_app(Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0), engine=FakeEngine())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker, thread, listener.getsockname()[1]
    finally:
        worker.alive = False
        thread.join(10)
        worker.tmp.close()
        listener.close()


def test_a_worker_beats_from_its_loop_serves_and_stops_when_told(tmp_path):
    with in_process_worker(tmp_path, ppid=os.getppid()) as (worker, thread, port):
        assert call(port, "GET", "/healthz")[0] == 200
        beat = worker.tmp.last_update()
        time.sleep(1.2)
        assert worker.tmp.last_update() > beat  # gunicorn's arbiter reads this to tell a stuck worker
        worker.handle_exit(signal.SIGTERM, None)  # SIGTERM's handler
        thread.join(10)
        assert not thread.is_alive()
        assert call(port, "GET", "/healthz")[0] == 0  # its listener is closed


@pytest.mark.parametrize("trusted_proxy, seen", [("127.0.0.1", "203.0.113.7"), (None, "127.0.0.1")])
def test_a_worker_takes_the_client_from_its_trusted_proxy_only(tmp_path, trusted_proxy, seen):
    """``--workers`` with ``--trusted-proxy``: each worker's waitress reads the client from the proxy's
    X-Forwarded-For; without it the header names nobody."""
    from flask import request

    from app import create_app

    wsgi = create_app(Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0), engine=FakeEngine())
    wsgi.add_url_rule("/peer", "peer", lambda: {"peer": request.remote_addr})
    with in_process_worker(tmp_path, ppid=os.getppid(), application=SimpleNamespace(trusted_proxy=trusted_proxy),
                           wsgi=wsgi) as (_, _, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/peer", headers={"X-Forwarded-For": "203.0.113.7"})
        assert json.loads(conn.getresponse().read())["peer"] == seen
        conn.close()


def test_a_worker_whose_parent_changed_stops(tmp_path):
    with in_process_worker(tmp_path, ppid=os.getppid() + 1) as (worker, thread, _):
        thread.join(10)
        assert not thread.is_alive()
        worker.log.info.assert_called_with("Parent changed, shutting down: %s", worker)


@contextmanager
def workers_server(tmp_path, delay_s: float = 0.0):
    """``serve_workers`` with two workers in a process of its own; yields it and its port once both are ready.

    ``delay_s``: the seconds the fake engine takes for each token of an answer."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path / "data"), str(port), str(delay_s)],
                              cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while ready < 20:  # 20 ready answers in a row: neither worker is still warming
            assert time.monotonic() < deadline, "the workers never became ready"
            assert server.poll() is None, server.stdout.read()
            ready = ready + 1 if call(port, "GET", "/readyz")[0] == 200 else 0
            time.sleep(0.05 if ready else 0.5)
        yield server, port
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_two_workers_warm_themselves_answer_and_stop_on_sigterm(tmp_path):
    with workers_server(tmp_path) as (server, port):
        workers = children(server.pid)
        assert len(workers) == 2 and server.pid not in workers
        status, body = call(port, "POST", "/api/v1/ask", {"question": QUESTION})
        assert status == 200 and body["answer"] == ANSWER
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=40) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_sigterm_lets_a_stream_under_way_finish_and_takes_no_new_connection(tmp_path):
    with workers_server(tmp_path, delay_s=0.2) as (server, port):  # a stream of about 4 s
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/v1/ask", body=json.dumps({"question": QUESTION, "stream": True}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        server.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        body = response.read().decode()
        conn.close()
        assert time.monotonic() - stopped_at > 1  # it was still under way when the workers were told to stop
        assert json.loads(sse_events(body)[-1])["result"]["answer"] == ANSWER
        assert server.wait(timeout=40) == 0
        assert call(port, "GET", "/healthz")[0] == 0  # nobody listens any more


def test_a_worker_refuses_as_waitress_does(tmp_path):
    """The workers' connections are waitress's service channels: a refusal is the service's JSON error."""
    with workers_server(tmp_path) as (_, port), socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")  # no Host header
        response = b"".join(iter(lambda: sock.recv(65536), b"")).decode()  # the server closes after a refusal
    assert response.startswith("HTTP/1.1 400 ")
    assert '"error"' in response and "Host header" in response


class SlowClients:
    """``count`` connections that each send one header byte per ``tick()``; one the server closes is opened again."""

    def __init__(self, port: int, count: int):
        self.port = port
        self.socks = [self.open() for _ in range(count)]

    def open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            return sock
        except OSError:
            return None

    def tick(self) -> None:
        for i, sock in enumerate(self.socks):
            try:
                if sock is None:
                    raise OSError
                sock.send(b"a")
            except OSError:
                if sock is not None:
                    sock.close()
                self.socks[i] = self.open()

    def close(self) -> None:
        for sock in self.socks:
            if sock is not None:
                sock.close()


def probe(port: int, timeout: float) -> int | None:
    """The status of one ``GET /readyz`` on a new connection, or None when it takes over ``timeout`` seconds in all."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return None
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None


@pytest.mark.slow  # two server processes, 100 slow sockets for 12 s
def test_slow_clients_do_not_starve_the_workers(tmp_path):
    """100 connections trickling their headers (more than both workers' threads together) hold no thread:
    ``/readyz`` stays answered and a question is answered meanwhile (gunicorn's gthread workers: 0 of 12)."""
    with workers_server(tmp_path) as (_, port):
        slow = SlowClients(port, 100)
        try:
            answered = 0
            for _ in range(12):
                tick = time.monotonic()
                slow.tick()
                answered += probe(port, timeout=2.0) == 200
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            status, body = call(port, "POST", "/api/v1/ask", {"question": QUESTION})
        finally:
            slow.close()
    assert answered >= 10, f"/readyz answered {answered} of 12 probes"
    assert status == 200 and body["answer"] == ANSWER
