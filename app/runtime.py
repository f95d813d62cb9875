"""The QA engine's life in one process: built lazily, warmed once in the background, behind admission.

Requests never wait for a model load or an unbounded queue: while the engine
warms they get 503 ``not_ready``; beyond ``KGQA_MAX_CONCURRENT`` running answers
and ``KGQA_MAX_WAITING`` waiting ones they get 503 ``overloaded`` at once, both
with ``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from kgqa.errors import KgqaError, Overloaded
from kgqa.settings import Settings

log = logging.getLogger(__name__)

# The longest a request waits in line before it is refused after all: with the line sized
# to what the engine finishes within the latency budget it never comes to that, unless
# the engine stalls.
MAX_WAIT_S = 60.0


class NotReady(KgqaError):
    """The engine is still warming up, or its warm-up failed."""

    def __init__(self, message: str, *, code: str = "not_ready", retry_after: int | None = 5):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class Admission:
    """At most ``max_concurrent`` requests run the engine; ``max_waiting`` more wait in line (first come,
    first served); any request beyond both is refused with ``Overloaded`` at once.

    Running more answers at once than the CPU can decode together only makes every one
    of them slow (they start together and finish together), so the service runs what
    finishes within its latency budget and refuses the rest while refusing is still cheap.
    """

    def __init__(self, max_concurrent: int, max_waiting: int, *, retry_after: int = 2,
                 max_wait_s: float = MAX_WAIT_S, clock: Callable[[], float] = time.monotonic):
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("admission needs max_concurrent >= 1 and max_waiting >= 0")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.retry_after = retry_after
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0
        self._line: deque[object] = deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._line)

    def admit(self) -> Callable[[], None]:
        """Start now, or wait in line for a place, or raise ``Overloaded``; returns an idempotent release."""
        with self._cond:
            if self._running >= self.max_concurrent or self._line:
                self._wait_in_line()
            self._running += 1
        released = threading.Event()

        def release() -> None:
            with self._cond:
                if released.is_set():
                    return
                released.set()
                self._running -= 1
                self._cond.notify_all()

        return release

    def _wait_in_line(self) -> None:
        """Called with the lock held; returns when this request is first in line and a place is free."""
        if len(self._line) >= self.max_waiting:
            raise Overloaded(
                f"{self.max_concurrent} answers are being generated and {len(self._line)} requests are "
                "waiting; retry shortly", self.retry_after)
        ticket = object()
        self._line.append(ticket)
        deadline = self._clock() + self.max_wait_s
        try:
            while self._line[0] is not ticket or self._running >= self.max_concurrent:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise Overloaded(f"no answer could start within {self.max_wait_s:.0f} s; retry shortly",
                                     self.retry_after)
                self._cond.wait(remaining)
        finally:
            self._line.remove(ticket)
            self._cond.notify_all()  # the next in line may start too


class EngineRuntime:
    """Owns one QA engine per app: lazy construction, one background warm-up, readiness and admission."""

    def __init__(self, settings: Settings, *, engine=None):
        self.settings = settings
        self.admission = Admission(settings.max_concurrent, settings.max_waiting)
        self._engine = engine
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._warmed = threading.Event()
        self._error: Exception | None = None

    def start_warm_up(self) -> None:
        """Start the one background warm-up of this process (idempotent, returns at once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._warm_up, name="kgqa-warm-up", daemon=True)
            self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        self.start_warm_up()
        self._warmed.wait(timeout)
        return self.ready

    def _warm_up(self) -> None:
        try:
            if self._engine is None:
                from qa.engine import QAEngine

                self._engine = QAEngine(self.settings)
            self._engine.warm_up()
        except Exception as exc:  # kept and reported by /readyz and every model request
            log.exception("QA engine warm-up failed")
            self._error = exc
        finally:
            self._warmed.set()

    @property
    def ready(self) -> bool:
        return self._warmed.is_set() and self._error is None and bool(getattr(self._engine, "ready", True))

    @property
    def error(self) -> Exception | None:
        return self._error

    def engine(self):
        """The warmed engine, or ``NotReady``/the warm-up's own error (e.g. ``KnowledgeBaseMissing``)."""
        self.start_warm_up()
        if self._error is not None:
            if isinstance(self._error, KgqaError):
                raise self._error
            raise NotReady(f"the QA engine failed to start: {self._error}", retry_after=None)
        if not self.ready:
            raise NotReady("the QA engine is warming up; retry shortly", code="warming_up")
        return self._engine

    def lm_health(self) -> dict | None:
        """The LM server's state (``KGQA_LM_URL``): ``{"reachable", "reason"}``; None for a model run in process.

        Never waits on the server: it is what the last exchange found (a background probe refreshes it).
        """
        health = getattr(getattr(self._engine, "generator", None), "health", None)
        if not callable(health):
            return None
        state = health()
        return {"reachable": state.reachable, "reason": state.reason}

    def describe(self) -> dict:
        """What ``/readyz`` says of a warm engine: ``ready``, or ``degraded`` while its LM server is unavailable."""
        engine = self._engine
        lm = self.lm_health()
        return {
            "status": "degraded" if lm is not None and not lm["reachable"] else "ready",
            **({"lm": lm} if lm is not None else {}),
            "model": getattr(engine, "model_name", "") or getattr(getattr(engine, "generator", None), "model_name", ""),
            "max_concurrent": self.admission.max_concurrent,
            "max_waiting": self.admission.max_waiting,
            "running": self.admission.running,
            "waiting": self.admission.waiting,
        }
