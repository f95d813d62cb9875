"""A bounded request queue drained by one worker thread that runs batched ``generate`` calls.

Request threads never touch the model: they enqueue a ``Request`` and read its
pieces from a per-request queue. The worker takes whatever is waiting (up to
``batch_size`` requests that can share decoding settings), left-pads them into one
batch and decodes them together, so four concurrent questions cost little more
than one. While a batch decodes, ``run_batch`` may call ``join(room)`` between steps
to take requests that arrived since (continuous batching), so a newcomer waits one
step, not a whole answer. A full queue raises ``Overloaded`` at once instead of
queueing forever.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kgqa.errors import Overloaded
from models.lm.generator import GenerationConfig

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(eq=False)
class Request:
    """One tokenised prompt waiting for text; ``pieces`` carries str, then an exception or _DONE."""

    prompt_ids: list[int]
    config: GenerationConfig
    submitted_at: float = field(default_factory=time.perf_counter)
    pieces: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    first_token_at: float | None = None
    new_tokens: int = 0
    finish_reason: str = "stop"

    def emit(self, piece: str) -> None:
        if piece:
            self.pieces.put(piece)

    def close(self, error: BaseException | None = None) -> None:
        self.pieces.put(error if error is not None else _DONE)

    def iter_pieces(self):
        """Yield text pieces until the worker closes the request; re-raise a worker error here."""
        try:
            while True:
                item = self.pieces.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancelled.set()  # a consumer that stops early frees its batch row


Join = Callable[[int], list[Request]]
RunBatch = Callable[[list[Request], Join], None]


class BatchingQueue:
    """Bounded FIFO plus the single worker thread that owns the model."""

    def __init__(self, run_batch: RunBatch, *, batch_size: int, queue_size: int):
        self.run_batch = run_batch
        self.batch_size = batch_size
        self.queue_size = queue_size
        self._waiting: deque[Request] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches_run = 0
        self.largest_batch = 0
        self.joined = 0  # requests that joined a batch already decoding

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="lm-batcher", daemon=True)
                self._thread.start()

    def submit(self, request: Request) -> Request:
        return self.submit_many([request])[0]

    def submit_many(self, requests: list[Request]) -> list[Request]:
        """Queue all or none, atomically, so the worker can see them as one batch."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the generator has been closed")
            if len(self._waiting) + len(requests) > self.queue_size:
                raise Overloaded(f"the model queue is full ({self.queue_size} waiting); retry shortly")
            self._waiting.extend(requests)
            self._cond.notify()
        return requests

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _take_joining(self, key: tuple, room: int) -> list[Request]:
        """Up to ``room`` waiting requests with decoding settings ``key``, without waiting."""
        taken: list[Request] = []
        with self._cond:
            for other in list(self._waiting):
                if len(taken) >= room:
                    break
                if other.config.batch_key == key:
                    self._waiting.remove(other)
                    if other.cancelled.is_set():
                        other.close()
                    else:
                        taken.append(other)
        return taken

    def _take_batch(self) -> list[Request] | None:
        """The oldest request plus every waiting one that shares its decoding settings."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed and not self._waiting:
                return None
            first = self._waiting.popleft()
            batch = [first]
            for other in list(self._waiting):
                if len(batch) >= self.batch_size:
                    break
                if other.config.batch_key == first.config.batch_key:
                    self._waiting.remove(other)
                    batch.append(other)
            return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [r for r in batch if not r.cancelled.is_set()]
            for r in batch:
                if r.cancelled.is_set():
                    r.close()
            if not live:
                continue
            self.batches_run += 1
            self.largest_batch = max(self.largest_batch, len(live))
            key, joined = live[0].config.batch_key, []

            def join(room: int) -> list[Request]:
                newcomers = self._take_joining(key, room)
                joined.extend(newcomers)
                self.joined += len(newcomers)
                return newcomers

            try:
                self.run_batch(list(live), join)
            except Exception as exc:  # the error belongs to the callers, not to this thread
                log.exception("batched generation failed")
                for r in live + joined:
                    r.close(exc)
            else:
                for r in live + joined:
                    r.close()
