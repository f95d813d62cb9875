"""The QA engine's life in one process: built lazily, warmed once in the background, guarded by model slots.

Requests never wait for a model load or an unbounded queue: while the engine
warms they get 503 ``not_ready`` and when every slot is taken 503 ``overloaded``,
both with ``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kgqa.errors import KgqaError, Overloaded
from kgqa.settings import Settings

log = logging.getLogger(__name__)


class NotReady(KgqaError):
    """The engine is still warming up, or its warm-up failed."""

    def __init__(self, message: str, *, code: str = "not_ready", retry_after: int | None = 5):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class ModelSlots:
    """A bounded count of requests allowed to use the model at once; beyond it, fail fast."""

    def __init__(self, size: int, *, retry_after: int = 2):
        self.size = size
        self.retry_after = retry_after
        self._semaphore = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self) -> Callable[[], None]:
        """Take a slot or raise ``Overloaded``; returns an idempotent release function."""
        if not self._semaphore.acquire(blocking=False):
            raise Overloaded(f"all {self.size} model slots are busy; retry shortly", self.retry_after)
        with self._lock:
            self._in_use += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                self._in_use -= 1
            self._semaphore.release()

        return release


class EngineRuntime:
    """Owns one QA engine per app: lazy construction, one background warm-up, readiness and slots."""

    def __init__(self, settings: Settings, *, engine=None):
        self.settings = settings
        self.slots = ModelSlots(settings.queue_size)
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

    def describe(self) -> dict:
        engine = self._engine
        return {
            "model": getattr(engine, "model_name", "") or getattr(getattr(engine, "generator", None), "model_name", ""),
            "slots": self.slots.size,
            "slots_in_use": self.slots.in_use,
        }
