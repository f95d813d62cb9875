"""Server-Sent Events: framing, keep-alives, running the engine's stream off the response thread, and
noticing a client that went away.

The engine's stream runs in a worker thread feeding a queue, so the response
can send ``:`` keep-alive comments while the model is silent, and so the view
can await the first event *before* committing to a 200: failures at the start
(invalid question, full model queue) still get their proper status.

A client that closes its connection mid-answer is noticed within ``POLL_S``
(``client_gone``), not at the next write: the stream is cancelled, which frees its
admission place at once and stops the model working for it (``kgqa.cancel``).
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from flask import Response, stream_with_context

from app.runtime import POLL_S
from kgqa.cancel import CancelScope, running_in
from kgqa.usage import TokenMeter, metering

KEEPALIVE = ": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def client_gone(environ: dict) -> Callable[[], bool]:
    """A check that says whether the request's client closed its connection.

    waitress (``kgqa serve``, one process or ``--workers``) keeps reading a connection while its
    request runs (``channel_request_lookahead``, app/serve.py) and says so itself; under gunicorn's
    own workers (the app run by ``gunicorn`` directly) or the Werkzeug development server the socket
    is peeked at (an orderly close reads as
    end of file). Elsewhere (a test client, a TLS socket) it always says no.
    """
    waitress_check = environ.get("waitress.client_disconnected")
    if waitress_check is not None:
        return waitress_check
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket) or not hasattr(socket, "MSG_DONTWAIT"):
        return never

    def peek() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError, ValueError):  # nothing to read yet; or not peekable (TLS)
            return False
        except OSError:  # reset by the peer, or closed under us
            return True

    return peek


def sse_data(payload: dict | str) -> str:
    """One SSE event; JSON escapes newlines, so the payload is always a single ``data:`` line."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n"


def sse_response(chunks: Iterable[str], *, on_close: Callable[[], None] | None = None) -> Response:
    """A streaming response whose headers are fixed before the first chunk is produced.

    ``on_close`` runs when the server closes the response, however it ends: sent in
    full, or given up because a write found the client gone (even before ``chunks``
    started, when a generator's own ``finally`` would never run).
    """
    response = Response(stream_with_context(chunks), mimetype="text/event-stream", headers=SSE_HEADERS)
    if on_close is not None:
        response.call_on_close(on_close)
    return response


def never() -> bool:
    """A client check for where none can be made (a test client): never gone."""
    return False


@contextmanager
def cancelled_when_gone(gone: Callable[[], bool]) -> Iterator[CancelScope]:
    """Run the block (a plain, not streamed, answer) in a cancel scope that a watcher thread cancels once
    ``gone()`` says the client went away (asked every ``POLL_S``): the model request under way is abandoned
    and the block gets ``Cancelled``."""
    scope, finished = CancelScope(), threading.Event()

    def watch() -> None:
        while not finished.wait(POLL_S):
            if gone():
                scope.cancel()
                return

    if gone is not never:
        threading.Thread(target=watch, name="kgqa-client-watch", daemon=True).start()
    try:
        with running_in(scope):
            yield scope
    finally:
        finished.set()


class _End:
    def __init__(self, error: BaseException | None):
        self.error = error


class StreamIdle(Exception):
    """No item arrived within the keep-alive interval."""


class BackgroundStream:
    """Iterates ``source`` in a daemon thread, inside a cancel scope and a token meter (``usage``: what the
    model spent on it); ``on_done`` runs once, when the source finishes or when the stream is cancelled,
    whichever comes first."""

    def __init__(self, source: Iterator, *, on_done: Callable[[], None] | None = None):
        self._source = source
        self._on_done = on_done
        self._done_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self.scope = CancelScope()
        self.usage = TokenMeter()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="kgqa-stream", daemon=True)

    def start(self) -> "BackgroundStream":
        self._thread.start()
        return self

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            with running_in(self.scope), metering(self.usage):
                for item in self._source:
                    if self.scope.cancelled:
                        break
                    self._queue.put(item)
        except Exception as exc:  # handed to the consumer, which reports it
            error = exc
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            self._done()
            self._queue.put(_End(error))

    def _done(self) -> None:
        with self._done_lock:
            on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()

    def next(self, timeout: float | None = None):
        """The next item; ``StreamIdle`` after ``timeout`` s of silence, ``StopIteration`` at the end.

        An exception raised by the source is re-raised here, in the consumer's thread.
        """
        if self._finished:
            raise StopIteration
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise StreamIdle from None
        if isinstance(item, _End):
            self._finished = True
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def cancel(self) -> None:
        """Give the stream up (the client went away, or the response ended): ``on_done`` runs now, and the
        worker stops at its next step: the model request it waits on is abandoned (``kgqa.cancel``), and
        a stage that is not the model's (retrieval, a claim check) is the last it runs."""
        self.scope.cancel()
        self._done()


def first_event(stream: BackgroundStream, gone: Callable[[], bool]):
    """The stream's first item (an error it raises comes here, before any status is sent), or None once
    ``gone()`` says the client went away meanwhile (the stream is then cancelled)."""
    while True:
        try:
            return stream.next(timeout=POLL_S)
        except StreamIdle:
            if gone():
                stream.cancel()
                return None


def with_keepalives(stream: BackgroundStream, first, interval: float,
                    gone: Callable[[], bool] = never) -> Iterator[object]:
    """``first`` (unless None) then the rest of ``stream``, yielding ``KEEPALIVE`` for every ``interval`` s of silence.

    ``gone`` is asked between items and every ``POLL_S`` of silence: once it says the
    client went away the stream is cancelled and this ends (nothing more can reach the client).
    """
    if first is not None:
        yield first
    quiet_since = time.monotonic()
    while True:
        if gone():
            stream.cancel()
            return
        try:
            item = stream.next(timeout=min(POLL_S, interval))
        except StreamIdle:
            if time.monotonic() - quiet_since >= interval:
                quiet_since = time.monotonic()
                yield KEEPALIVE
            continue
        except StopIteration:
            return
        quiet_since = time.monotonic()
        yield item
