"""Giving work up: a client that goes away stops the model working for it, from any layer below.

The service runs one answer inside ``running_in(scope)``; whatever waits on a model
within that answer (``models/lm``) finds the scope with ``current_scope()`` and
registers, with ``on_cancel``, what stops its request at once: the local decoder drops
the row at its next step, llama.cpp ends the slot at its next token, a remote stream
stops reading. The waiting caller gets ``Cancelled`` at once, so the answer unwinds
without waiting for the model. A context variable carries the scope, so the engine in
between needs to know nothing about it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar

from kgqa.context import bound
from kgqa.errors import Cancelled

__all__ = ["CancelScope", "Cancelled", "check_current", "current_scope", "running_in"]


class CancelScope:
    """A one-way switch: ``cancel()`` runs every registered callback once, then any later one at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Give the work up (idempotent, thread-safe); the callbacks run in the calling thread."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the scope is cancelled; at once if it already is. It must be quick and thread-safe."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return
        callback()

    def check(self) -> None:
        """Raise ``Cancelled`` if the work was given up (called before starting a model request)."""
        if self._cancelled:
            raise Cancelled("the request was cancelled: its client went away")


_current: ContextVar[CancelScope | None] = ContextVar("kgqa_cancel_scope", default=None)


def current_scope() -> CancelScope | None:
    """The scope the calling code runs in, if any."""
    return _current.get()


def check_current() -> CancelScope | None:
    """The current scope, after raising ``Cancelled`` if it is cancelled already: call it before starting a request."""
    scope = _current.get()
    if scope is not None:
        scope.check()
    return scope


def running_in(scope: CancelScope) -> AbstractContextManager[CancelScope]:
    """Run the block (in this thread) inside ``scope``."""
    return bound(_current, scope)
