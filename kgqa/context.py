"""Per-answer state carried by a context variable (``kgqa.cancel``'s scope, ``kgqa.usage``'s meter)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def bound(var: ContextVar[T | None], value: T) -> Iterator[T]:
    """``var`` is ``value`` inside the block (in this thread), and what it was before after it."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)
