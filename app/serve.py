"""``kgqa serve``: run the app under waitress, a production WSGI server.

waitress rather than the Flask dev server: it is pure Python, threaded (no
fork, so the model is loaded once and shared), and runs the same everywhere.
Every admitted request holds a worker thread while it runs or waits in line, so
there are ``SPARE_THREADS`` more threads than admitted requests: requests beyond
admission get their 503 at once instead of waiting in the socket backlog.

waitress refuses some requests itself, before the app sees them: a request line
plus headers over ``MAX_HEADER_BYTES`` (431), a body over the service's body
limit (413, decided from ``Content-Length`` before a byte of the body is read,
so nothing is buffered), a malformed request (400) or transfer coding (501). Those
refusals carry the service's error shape and security headers too: the
connections use ``ServiceChannel``, whose error task renders them as the app does.
A connection silent for ``CHANNEL_TIMEOUT_S`` (idle between requests, or stalled
mid-request, such as a body shorter than its ``Content-Length``) is closed. waitress keeps
reading a connection while its request runs (``channel_request_lookahead``), so a client
that closes mid-answer is seen at once (``waitress.client_disconnected``) and its stream
cancelled (app/sse.py), instead of at the next write.

``ServiceParser`` refuses with 400 what RFC 9112 says a server must not take as it comes:
an HTTP/1.1 request without a Host header or with one that is not ``host[:port]`` (several
Host lines arrive joined by commas, so they are refused too; section 3.2), and a request with
both ``Content-Length`` and ``Transfer-Encoding`` (section 6.1: the framing is ambiguous, the
stuff of request smuggling). ``ServiceChannel`` sends no ``100 Continue`` for a request
already refused on its headers (a ``Content-Length`` over the body limit gets its 413 and the
connection closes, not an invitation to send the body).

Slow clients cannot starve the service. A connection waiting for its request costs a
socket and a buffer in waitress's I/O loop, never a worker thread, so up to
``CONNECTION_LIMIT`` are kept open (polled with ``poll``, not ``select``, which stops at 1,024
descriptors; the open-files limit is raised to fit). And a request must arrive whole (its
line, headers and body) within ``REQUEST_DEADLINE_S`` of its first byte: a client that
trickles it (slowloris: a header byte every few seconds, or a body the same way) is cut off
at the next byte past the deadline, one that stops sending by ``CHANNEL_TIMEOUT_S``.

``--workers N`` (N > 1) runs N processes on one listening socket, each serving through the same
waitress server as one process does (``build_server`` on the inherited socket, the same channel,
parser, deadlines and connection limit), so a slow client holds no worker thread in any of
them. gunicorn supervises them (``WaitressWorker``, one of its worker classes): it forks them,
restarts one that dies or stops beating, and passes on signals. A worker beats from inside
waitress's I/O loop, so a loop that stops turning is restarted; SIGTERM stops its accepting,
lets the requests under way finish (gunicorn's ``graceful_timeout``) and closes the server,
SIGQUIT or SIGINT closes it at once, and so does a worker whose parent went away. Each worker
builds its own app after the fork and warms its own engine (a model loaded before a fork would
share its thread pools with a child that has none of the threads), so readiness, admission
(``KGQA_MAX_CONCURRENT`` and ``KGQA_MAX_WAITING`` are per worker) and the rate limits are
each worker's own. What the workers share is what is memory-mapped: the FAISS index, the
link graph's arrays and, on the llama.cpp backend, the GGUF weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import threading
import time
from functools import cache

import click
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import ErrorTask

from app.errors import error_type, status_code_name
from app.web import SECURITY_HEADERS
from kgqa.settings import Settings, command_settings

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; waitress's default is 256 KiB, no route needs more than a URL
CHANNEL_TIMEOUT_S = 5  # close a connection silent this long (keep-alive idle or a stalled request)
CLEANUP_INTERVAL_S = 1  # how often waitress looks for such connections (its default, 30 s, would dominate)
SPARE_THREADS = 8  # threads beyond the admitted requests: refusals, pages, health checks
log = logging.getLogger(__name__)

CONNECTION_LIMIT = 2000  # open connections, most of them idle or slow; more are left in the listen backlog
REQUEST_DEADLINE_S = 10.0  # a request's line, headers and body arrive within this of its first byte
OPEN_FILES_HEADROOM = 64  # descriptors beyond the connections: the listener, the index, logs, the LM client
# RFC 3986's host (an IP literal, or a reg-name, which covers IPv4) and an optional port.
HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+;=-]*)(:[0-9]*)?")
REQUEST_LOOKAHEAD = 1  # keep reading a connection while its request runs: a client's close is seen at once
HEARTBEAT_S = 0.5  # how often a --workers process beats (from its I/O loop) and looks for a reason to stop
WORKER_TIMEOUT_S = 60  # gunicorn restarts a worker whose I/O loop has not turned for this long
GRACEFUL_TIMEOUT_S = 30  # on SIGTERM, how long a worker's requests under way may take to finish
DRAIN_POLL_S = 0.1  # how often a stopping worker looks whether its requests under way have finished


class JSONErrorTask(ErrorTask):
    """waitress's own refusals as ``{"error": {"code", "message"}}`` with the security headers."""

    def execute(self):
        error, adj = self.request.error, self.channel.server.adj
        if error.code == 431:
            message = f"the request line and headers exceed the limit of {adj.max_request_header_size} bytes"
        elif error.code == 413:  # waitress refuses a body of max_request_body_size bytes or more
            message = f"the body exceeds the limit of {adj.max_request_body_size - 1} bytes"
        elif error.code >= 500 and error.code != 501:
            message = "internal server error"
        else:
            message = " ".join(str(error.body or error.reason).split())  # one line, even if it quotes a header
        payload = {"error": {"code": status_code_name(error.code, error.reason), "message": message,
                             "type": error_type(error.code)}}
        body = json.dumps(payload).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), *SECURITY_HEADERS.items()])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class ServiceParser(HTTPRequestParser):
    """waitress's request parser, refusing (400) a missing or malformed Host and ambiguous framing."""

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        if self.version == "1.1":
            host = self.headers.get("HOST")
            if host is None:
                raise ParsingError("an HTTP/1.1 request needs a Host header")
            if not HOST.fullmatch(host):
                raise ParsingError("the Host header must be one host with an optional port")
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            raise ParsingError("a request may not have both Content-Length and Transfer-Encoding")


class ServiceChannel(HTTPChannel):
    """waitress's connection, answering its own refusals with ``JSONErrorTask``.

    ``error_task_class`` and ``parser_class`` are the class attributes through which
    waitress's channel builds every error response and parses every request; the server's
    ``channel_class`` picks the channel.
    """

    error_task_class = JSONErrorTask
    parser_class = ServiceParser

    _timed: HTTPRequestParser | None = None  # the request whose first byte came at _started
    _started = 0.0

    def received(self, data):
        """Reads as waitress does, but cuts off a request still incomplete ``REQUEST_DEADLINE_S`` after its first byte."""
        now = time.monotonic()
        if self.request is not None and self.request is self._timed and now - self._started > REQUEST_DEADLINE_S:
            log.debug("closing a connection from %s: its request did not arrive within %g s", self.addr[0],
                     REQUEST_DEADLINE_S)
            self.will_close = True
            return False
        result = super().received(data)
        if self.request is not self._timed:  # a new request in progress (or none): timed from this data
            self._timed, self._started = self.request, now
        return result

    def send_continue(self):
        """``100 Continue`` only for a request that may go on: one refused on its headers gets its error instead."""
        if self.request.error is not None:
            self.request.expect_continue = False
            return
        super().send_continue()


def fit_open_files(connections: int, threads: int) -> int:
    """Raise this process's open-files limit (to its hard limit at most) for ``connections``; the connections it fits."""
    wanted = connections + threads + OPEN_FILES_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, soft - threads - OPEN_FILES_HEADROOM))


def default_threads(settings: Settings) -> int:
    """One worker thread per admitted request (running or waiting in line), plus spares."""
    return settings.max_concurrent + settings.max_waiting + SPARE_THREADS


def build_server(app, *, host: str = "127.0.0.1", port: int = 5000, threads: int | None = None,
                 trusted_proxy: str | None = None, sockets: list | None = None):
    """A bound (not yet running) waitress server; ``port=0`` picks a free port (``server.effective_port``).

    With ``sockets`` (listening sockets bound already, such as a gunicorn worker's), it serves on
    those instead of binding ``host`` and ``port``.

    With ``trusted_proxy`` (the proxy's address), a request from it is the client its last
    ``X-Forwarded-For`` hop names (the client address admission and the rate limit count);
    the header is dropped from any other peer, so a client cannot name itself."""
    from waitress import create_server

    settings: Settings = app.config["KGQA_SETTINGS"]
    threads = threads or default_threads(settings)
    socket_map: dict = {}
    proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-for"},
             "trusted_proxy_count": 1, "clear_untrusted_proxy_headers": True} if trusted_proxy else {}
    where = {"sockets": sockets} if sockets is not None else {"host": host, "port": port}
    server = create_server(
        app,
        map=socket_map,
        threads=threads,
        connection_limit=fit_open_files(max(CONNECTION_LIMIT, threads * 4), threads),
        asyncore_use_poll=True,  # select() cannot watch a descriptor numbered 1,024 or more
        channel_timeout=CHANNEL_TIMEOUT_S,
        cleanup_interval=CLEANUP_INTERVAL_S,
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=settings.max_body_bytes + 1,  # the app's limit: a body of max_body_bytes passes
        channel_request_lookahead=REQUEST_LOOKAHEAD,
        ident="kgqa",
        **where,
        **proxy,
    )
    for listener in listeners(socket_map):
        listener.channel_class = ServiceChannel
    return server


def listeners(socket_map: dict) -> list:
    """The listening servers in a waitress socket map: one per listening socket (a host name may resolve to several)."""
    from waitress.server import BaseWSGIServer

    return [dispatcher for dispatcher in socket_map.values() if isinstance(dispatcher, BaseWSGIServer)]


def serve(app, *, host: str, port: int, threads: int | None = None, trusted_proxy: str | None = None) -> None:
    """Warm the engine in the background and serve until interrupted."""
    server = build_server(app, host=host, port=port, threads=threads, trusted_proxy=trusted_proxy)
    app.extensions["kgqa_runtime"].start_warm_up()
    click.echo(f"kgqa serving on http://{host}:{server.effective_port} (engine warming up; see /readyz)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def socket_map_of(server) -> dict:
    """The socket map a server from ``build_server`` polls (its listeners, their connections, its trigger)."""
    from waitress.server import BaseWSGIServer

    return server._map if isinstance(server, BaseWSGIServer) else server.map


def busy(socket_map: dict) -> bool:
    """Whether a connection in the map has a request under way (read whole, running or still being sent)."""
    return any(getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
               for channel in list(socket_map.values()))


def stop_accepting(socket_map: dict) -> None:
    """Leave the listening sockets to the other workers; the connections open go on."""
    for listener in listeners(socket_map):
        listener.accepting = False


@cache
def waitress_worker():
    """gunicorn's worker class for ``--workers``, made on first use (gunicorn is imported only then)."""
    from gunicorn.workers.base import Worker
    from waitress import wasyncore

    class WaitressWorker(Worker):
        """A gunicorn worker process serving its app through ``build_server`` on the inherited listening sockets."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.woken = threading.Event()  # set by SIGTERM: the watch stops waiting for its next beat

        def handle_exit(self, sig, frame):
            super().handle_exit(sig, frame)
            self.woken.set()

        def run(self):
            sockets = [listener.sock for listener in self.sockets]  # gunicorn's wrappers of the inherited sockets
            server = build_server(self.wsgi, threads=self.cfg.threads, sockets=sockets,
                                  trusted_proxy=getattr(self.app, "trusted_proxy", None))
            watch = threading.Thread(target=self.watch, args=(server,), name="kgqa-worker-watch", daemon=True)
            watch.start()
            try:
                server.run()  # until the map is empty; SIGQUIT's SystemExit ends it too
            finally:
                server.task_dispatcher.shutdown(timeout=1)
                wasyncore.close_all(socket_map_of(server), ignore_all=True)

        def watch(self, server) -> None:
            """Beat from the I/O loop while the worker is alive and its parent the same; then stop it gracefully.

            The beat is run by the loop itself (a trigger thunk), so gunicorn sees a loop that has
            stopped turning as a worker that has stopped, and restarts it."""
            socket_map = socket_map_of(server)
            trigger = listeners(socket_map)[0].trigger
            try:
                while self.alive and self.ppid == os.getppid():
                    trigger.pull_trigger(self.notify)
                    self.woken.wait(HEARTBEAT_S)
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                trigger.pull_trigger(lambda: stop_accepting(socket_map))
                deadline = time.monotonic() + self.cfg.graceful_timeout
                while busy(socket_map) and time.monotonic() < deadline:
                    time.sleep(DRAIN_POLL_S)
                trigger.pull_trigger(lambda: wasyncore.close_all(socket_map, ignore_all=True))  # the loop ends
            except OSError:  # the trigger is closed: the server has stopped already
                pass

    return WaitressWorker


def serve_workers(make_app, settings: Settings, *, host: str, port: int, workers: int,
                  threads: int | None = None, trusted_proxy: str | None = None) -> None:
    """Serve with ``workers`` gunicorn processes, each building its app with ``make_app()`` and warming it.

    ``trusted_proxy`` reaches each worker's waitress server (``build_server``) as the application's attribute."""
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": waitress_worker(),  # each worker serves as one process does: waitress, the same server
        "threads": threads or default_threads(settings),
        "timeout": WORKER_TIMEOUT_S,  # heartbeat from each worker's I/O loop, whatever its requests take
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "preload_app": False,  # the app (and its engine) is built in each worker, after the fork
        "post_worker_init": lambda worker: worker.wsgi.extensions["kgqa_runtime"].start_warm_up(),
        "proc_name": "kgqa",
        "control_socket_disable": True,  # no control socket in $HOME shared by every server on the machine
    }

    class Workers(BaseApplication):
        def __init__(self):
            self.trusted_proxy = trusted_proxy  # read by each WaitressWorker (its ``app``)
            super().__init__()

        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return make_app()

    click.echo(f"kgqa serving on http://{host}:{port} with {workers} workers (each warms its own engine; see /readyz)")
    Workers().run()


def _app_for(ctx: click.Context):
    """The app of ``flask --app app serve``, else one built from the ``kgqa`` group's settings."""
    from flask.cli import ScriptInfo

    info = ctx.find_object(ScriptInfo)
    if info is not None:
        return info.load_app()
    from app import create_app

    return create_app(command_settings(ctx))


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 exposes it.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", type=click.IntRange(1, 512), default=None, help="Worker threads [default: KGQA_MAX_CONCURRENT + KGQA_MAX_WAITING + 8].")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes; more than 1 runs them under gunicorn, each with its own engine and admission.")
@click.option("--trusted-proxy", metavar="ADDRESS", default=None,
              help="A reverse proxy's address: its requests count as the client its X-Forwarded-For names "
                   "(admission and the rate limit are per client address).")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, threads: int | None, workers: int,
                  trusted_proxy: str | None) -> None:
    """Serve the web page, the JSON API and the OpenAI-compatible endpoint."""
    if workers > 1:
        serve_workers(lambda: _app_for(ctx), command_settings(ctx), host=host, port=port, workers=workers,
                      threads=threads, trusted_proxy=trusted_proxy)
    else:
        serve(_app_for(ctx), host=host, port=port, threads=threads, trusted_proxy=trusted_proxy)
