"""bench/loopback.py: each simulated client of bench/serve.py and bench/heavy_questions.py reaches the server
from its own loopback address, as the server's admission sees it (a stub server on 127.0.0.1, nothing else)."""

import importlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # as for a script run from bench/
    return importlib.import_module("loopback"), importlib.import_module("serve")


@pytest.fixture
def stub():
    """A server on 127.0.0.1 answering every POST at once, recording each request's client address."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(self.client_address[0])
            self.send_response(200)  # HTTP/1.0: the body ends where the connection closes
            self.end_headers()
            self.wfile.write(json.dumps({"timings": {"total": 0.001}}).encode())

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
        server.shutdown()


def test_serve_clients_reach_the_server_from_distinct_addresses(bench, stub):
    loopback, serve = bench
    url, seen = stub
    samples = serve.run_clients(url, 4, 0.3, serve.ASK, False, timeout=5)
    assert samples and all(sample.status == 200 for sample in samples)
    assert len(seen) == len(samples)
    assert set(seen) == {loopback.client_address(n) for n in range(4)} == {f"127.0.0.{n}" for n in (10, 11, 12, 13)}


def test_heavy_questions_session_leaves_from_its_address(bench, stub):
    loopback, _ = bench
    url, seen = stub
    for address in ("127.0.0.2", "127.0.0.17"):
        assert loopback.client_from(address).post(f"{url}/api/v1/ask", json={"question": "q"}, timeout=5).ok
    assert seen == ["127.0.0.2", "127.0.0.17"]


def test_addresses_run_on_past_an_octet_and_stop_at_the_end_of_loopback(bench):
    loopback, _ = bench
    assert loopback.client_address(0) == "127.0.0.10"
    assert loopback.client_address(246) == "127.0.1.0"
    assert loopback.client_address(0, first=2) == "127.0.0.2"
    assert loopback.client_address(2**24 - 12) == "127.255.255.254"
    with pytest.raises(ValueError, match="past the last loopback address"):
        loopback.client_address(2**24 - 11)
    with pytest.raises(ValueError, match="index must be >= 0"):
        loopback.client_address(-1)


def test_a_server_off_loopback_keeps_the_default_source(bench):
    loopback, _ = bench
    assert loopback.source_address(3, "127.0.0.1") == ("127.0.0.13", 0)
    assert loopback.source_address(3, "localhost") == ("127.0.0.13", 0)
    assert loopback.source_address(3, "10.1.2.3") is None
    assert loopback.source_address(3, "::1") is None
