"""Server-Sent Events: framing, keep-alives, and running the engine's stream off the response thread.

The engine's stream runs in a worker thread feeding a queue, so the response
can send ``:`` keep-alive comments while the model is silent, and so the view
can await the first event *before* committing to a 200: failures at the start
(invalid question, full model queue) still get their proper status.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from flask import Response, stream_with_context

KEEPALIVE = ": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_data(payload: dict | str) -> str:
    """One SSE event; JSON escapes newlines, so the payload is always a single ``data:`` line."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n"


def sse_response(chunks: Iterable[str]) -> Response:
    """A streaming response whose headers are fixed before the first chunk is produced."""
    return Response(stream_with_context(chunks), mimetype="text/event-stream", headers=SSE_HEADERS)


class _End:
    def __init__(self, error: BaseException | None):
        self.error = error


class StreamIdle(Exception):
    """No item arrived within the keep-alive interval."""


class BackgroundStream:
    """Iterates ``source`` in a daemon thread; ``on_done`` runs when the source finishes or is cancelled."""

    def __init__(self, source: Iterator, *, on_done: Callable[[], None] | None = None):
        self._source = source
        self._on_done = on_done
        self._queue: queue.Queue = queue.Queue()
        self._cancelled = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="kgqa-stream", daemon=True)

    def start(self) -> "BackgroundStream":
        self._thread.start()
        return self

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            for item in self._source:
                if self._cancelled.is_set():
                    break
                self._queue.put(item)
        except Exception as exc:  # handed to the consumer, which reports it
            error = exc
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            if self._on_done is not None:
                self._on_done()
            self._queue.put(_End(error))

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
        """Ask the worker to stop after its current item (the client went away)."""
        self._cancelled.set()


def with_keepalives(stream: BackgroundStream, first, interval: float) -> Iterator[object]:
    """``first`` (unless None) then the rest of ``stream``, yielding ``KEEPALIVE`` for every ``interval`` s of silence."""
    if first is not None:
        yield first
    while True:
        try:
            yield stream.next(timeout=interval)
        except StreamIdle:
            yield KEEPALIVE
        except StopIteration:
            return
