"""A stand-in OpenAI-compatible LM server that a test starts, stops and starts again on the same port.

It lists one model and answers ``POST /v1/chat/completions`` with ``text`` (streamed one word
per chunk over HTTP/1.1 chunked encoding, or whole). ``cut_after`` drops the connection after
that many chunks, without the closing chunk: an LM server that dies mid-answer.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLMServer:
    def __init__(self, text: str = "Albert Einstein developed the theory of relativity.", *, port: int = 0):
        self.text = text
        self.cut_after: int | None = None
        self.requests = 0
        self.port = port
        self._http: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        if not port:  # a free port, kept for every later start
            probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
            self.port = probe.server_address[1]
            probe.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeLMServer:
        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="fake-lm-server", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a server process that exits does."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._connections.clear()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                server._connections.add(self.connection)

            def finish(self):
                server._connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                self._json({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests += 1
                if not body.get("stream"):
                    self._json({"choices": [{"index": 0, "message": {"role": "assistant", "content": server.text},
                                             "finish_reason": "stop"}]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = server.text.split(" ")
                for i, word in enumerate(words):
                    if server.cut_after is not None and i >= server.cut_after:
                        self.close_connection = True
                        return  # no closing chunk: the stream breaks mid-answer
                    delta = {"content": word if i == 0 else f" {word}"}
                    self._chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                self._chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._chunk("[DONE]")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, payload) -> None:
                data = f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(self, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler
