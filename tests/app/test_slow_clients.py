"""Slow clients (slowloris) against the real server: they are cut off at the request deadline and never starve it."""

from __future__ import annotations

import socket
import time

import pytest
from tests.helpers.app_fakes import FakeEngine
from tests.helpers.app_live import live_server

import app.serve
from app.serve import CONNECTION_LIMIT, build_server, fit_open_files
from kgqa.settings import Settings


@pytest.fixture
def live_port(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0)
    with live_server(settings, engine=FakeEngine(), ready_timeout=10, threads=2) as base_url:
        yield int(base_url.rsplit(":", 1)[1])


def get(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of one ``GET`` on a new connection, or None when it takes over ``timeout`` seconds in all."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None


def slow_connection(port: int, start: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(start)
    return sock


def closed(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


@pytest.mark.parametrize("start", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # headers, a byte at a time
    b"POST /api/v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",  # a body
])
def test_a_request_trickled_past_the_deadline_is_cut_off(live_port, monkeypatch, start):
    monkeypatch.setattr(app.serve, "REQUEST_DEADLINE_S", 1.0)
    sock = slow_connection(live_port, start)
    started = time.monotonic()
    try:
        while not closed(sock) and time.monotonic() - started < 5:
            try:
                sock.sendall(b"a")  # never silent for the channel timeout: only the deadline ends it
            except OSError:
                break
            time.sleep(0.3)
        assert closed(sock) or time.monotonic() - started < 5
        assert 1.0 <= time.monotonic() - started < 2.5
    finally:
        sock.close()
    assert get(live_port, "/healthz") == 200


def test_a_request_sent_at_an_ordinary_pace_is_answered(live_port, monkeypatch):
    monkeypatch.setattr(app.serve, "REQUEST_DEADLINE_S", 1.0)
    sock = slow_connection(live_port, b"GET /healthz HTTP/1.1\r\n")
    try:
        time.sleep(0.5)  # within the deadline
        sock.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()


def test_the_server_keeps_many_connections_open_and_polls_them(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    from app import create_app

    server = build_server(create_app(settings, engine=FakeEngine()), port=0, threads=4)
    try:
        assert server.adj.connection_limit == fit_open_files(CONNECTION_LIMIT, 4) >= 1000  # this machine fits them
        assert server.adj.asyncore_use_poll  # select() stops at descriptor 1,024
    finally:
        server.close()


@pytest.mark.slow  # 300 sockets for 15 s
def test_300_slow_connections_do_not_starve_readiness(live_port):
    slow = [slow_connection(live_port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n") for _ in range(300)]
    answered = probes = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < 15:
            tick = time.monotonic()
            for sock in slow:
                try:
                    sock.sendall(b"X")  # one header byte each, every half second
                except OSError:
                    pass
            probes += 1
            answered += get(live_port, "/readyz") == 200
            time.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))
    finally:
        for sock in slow:
            sock.close()
    assert answered >= 0.95 * probes, f"{answered}/{probes}"
