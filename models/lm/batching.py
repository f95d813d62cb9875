"""A request queue drained by one worker thread that decodes requests in batches.

Request threads never touch the model: they enqueue a ``Request`` and read its
pieces from a per-request queue. The worker takes whatever is waiting (up to
``batch_size`` requests that can share decoding settings), left-pads them into one
batch and decodes them together, so four concurrent questions cost little more
than one. While a batch decodes, ``run_batch`` may call ``join(room)`` between steps
to take requests that arrived since (continuous batching), so a newcomer waits one
step, not a whole answer.

The queue has no bound of its own: the service admits at most ``KGQA_MAX_CONCURRENT``
generating and ``KGQA_MAX_WAITING`` waiting requests (503 + ``Retry-After`` beyond that),
and batch callers (evaluation, benchmarks) submit what they mean to run.
"""

from __future__ import annotations

import atexit
import functools
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kgqa.cancel import CancelScope
from kgqa.errors import Cancelled
from kgqa.usage import record
from models.lm.generator import GenerationConfig

log = logging.getLogger(__name__)

_DONE = object()
_ABANDONED = object()
_HOOKS_LOCK = threading.Lock()  # abandon hooks are rare and quick: one lock for every request


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
    generated: list[int] = field(default_factory=list)  # the tokens decoded so far (the worker's row, shared)
    _abandon_hooks: list = field(default_factory=list, repr=False)
    finish_reason: str = "stop"

    def emit(self, piece: str) -> None:
        if piece:
            self.pieces.put(piece)

    def close(self, error: BaseException | None = None) -> None:
        self.pieces.put(error if error is not None else _DONE)

    def abandon(self) -> None:
        """Give the request up from any thread: the worker drops its row at its next step (the backend may
        stop a prefill under way: ``on_abandon``), and the reader gets ``Cancelled`` at once."""
        with _HOOKS_LOCK:
            self.cancelled.set()
            hooks, self._abandon_hooks = self._abandon_hooks, []
        self.pieces.put(_ABANDONED)
        for hook in hooks:
            hook()

    def on_abandon(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the request is abandoned (at once if it already is given up)."""
        with _HOOKS_LOCK:
            if not self.cancelled.is_set():
                self._abandon_hooks.append(hook)
                return
        hook()

    def watch(self, scope: CancelScope | None) -> None:
        """Be abandoned when ``scope`` is cancelled."""
        if scope is not None:
            scope.on_cancel(self.abandon)

    def iter_pieces(self):
        """Yield text pieces until the worker closes the request; re-raise a worker error here."""
        try:
            while True:
                item = self.pieces.get()
                if item is _DONE:
                    return
                if item is _ABANDONED:
                    raise Cancelled("the request was cancelled: its client went away")
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancelled.set()  # a consumer that stops early frees its batch row
            record(len(self.prompt_ids), max(self.new_tokens, len(self.generated)))  # kgqa.usage


Join = Callable[[int], list[Request]]
RunBatch = Callable[[list[Request], Join], None]

_started: weakref.WeakSet[BatchingQueue] = weakref.WeakSet()


@functools.cache
def _stop_workers_at_exit() -> None:
    """Once per process: at exit, stop every worker between two decoding steps.

    A worker is a daemon thread; left inside an onnxruntime or torch kernel while the
    interpreter tears down, it aborts the whole process ("terminate called without an
    active exception"), e.g. right after ``kgqa ask`` stopped reading a long answer.
    """

    atexit.register(close_workers)


def close_workers(where: Callable[[BatchingQueue], bool] | None = None) -> int:
    """Stop the worker of every started queue (``where(queue)`` those it accepts), giving up what they wait for
    and decode (``BatchingQueue.close(cancel=True)``); returns how many were stopped. At exit, every one; the
    test suite, those whose generator (``BatchingQueue.owner``) nothing holds any more."""
    stopped = 0
    for batcher in list(_started):
        if where is None or where(batcher):
            batcher.close(cancel=True)
            stopped += 1
    return stopped


class BatchingQueue:
    """FIFO plus the single worker thread that owns the model."""

    def __init__(self, run_batch: RunBatch, *, batch_size: int):
        self.run_batch = run_batch
        self.batch_size = batch_size
        self._waiting: deque[Request] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._decoding: list[Request] = []  # the batch the worker is decoding, joiners included
        self.batches_run = 0
        self.largest_batch = 0
        self.joined = 0  # requests that joined a batch already decoding

    @property
    def owner(self):
        """What runs the batches: the generator whose method ``run_batch`` is, else the queue itself."""
        return getattr(self.run_batch, "__self__", self)

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="lm-batcher", daemon=True)
                self._thread.start()
                _started.add(self)
                _stop_workers_at_exit()

    def submit(self, request: Request) -> Request:
        return self.submit_many([request])[0]

    def submit_many(self, requests: list[Request]) -> list[Request]:
        """Queue all or none, atomically, so the worker can see them as one batch."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the generator has been closed")
            self._waiting.extend(requests)
            self._cond.notify()
        return requests

    def close(self, *, cancel: bool = False) -> None:
        """Stop the worker once nothing waits; ``cancel`` first gives up every waiting and decoding request."""
        with self._cond:
            self._closed = True
            if cancel:
                for request in [*self._waiting, *self._decoding]:
                    request.cancelled.set()
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
        """The oldest live request plus waiting ones that share its decoding settings, up to ``batch_size``.

        Requests cancelled while waiting are closed here and take no place in the batch.
        """
        with self._cond:
            while True:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return None
                first = self._waiting.popleft()
                if not first.cancelled.is_set():
                    return [first, *self._take_joining(first.config.batch_key, self.batch_size - 1)]
                first.close()

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
            key, decoding = live[0].config.batch_key, list(live)
            self._decoding = decoding

            def join(room: int) -> list[Request]:
                newcomers = self._take_joining(key, room)
                decoding.extend(newcomers)
                self.joined += len(newcomers)
                return newcomers

            try:
                self.run_batch(list(live), join)
            except Exception as exc:  # the error belongs to the callers, not to this thread
                log.exception("batched generation failed")
                for r in decoding:
                    r.close(exc)
            else:
                for r in decoding:
                    r.close()
            self._decoding = []
