"""Counting the language model's tokens one answer spent, from any layer below the service.

The service runs one answer inside ``metering(meter)``; each generator adds the prompt
and completion tokens of every request it finishes (``record``), in the thread that
read the request. A context variable carries the meter, so the engine in between
needs to know nothing about it (as ``kgqa.cancel`` carries a cancel scope).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from contextvars import ContextVar

from kgqa.context import bound


class TokenMeter:
    """The prompt and completion tokens of every model request made while it was current."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.requests = 0

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.prompt_tokens += max(0, prompt_tokens)
            self.completion_tokens += max(0, completion_tokens)
            self.requests += 1


_current: ContextVar[TokenMeter | None] = ContextVar("kgqa_token_meter", default=None)


def metering(meter: TokenMeter) -> AbstractContextManager[TokenMeter]:
    """Count the model requests the block makes (in this thread) on ``meter``."""
    return bound(_current, meter)


def record(prompt_tokens: int, completion_tokens: int) -> None:
    """Add one finished (or abandoned) model request to the current meter, if any."""
    meter = _current.get()
    if meter is not None:
        meter.add(prompt_tokens, completion_tokens)
