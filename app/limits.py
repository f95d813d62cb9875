"""Per-client rate limiting (a token bucket per remote address) and the request-shape limits.

A hand-written bucket rather than a library: the service needs one rule
(``settings.rate_limit_per_minute`` per client, 0 disables it), in-process
state and a ``Retry-After``; it fits in a few lines and adds no dependency.
Body size is bounded by Flask's ``MAX_CONTENT_LENGTH`` (413), set in the factory, and under
``kgqa serve`` by waitress before the body is read (app.serve); JSON nesting by app.json_body.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from flask import Flask, current_app, request
from werkzeug.exceptions import TooManyRequests

from app.schemas import MAX_TURN_CHARS
from kgqa.errors import InvalidQuestion
from kgqa.questions import validate_question
from kgqa.settings import Settings

# Every route shares one per-client budget (the API, the OpenAI endpoint and the pages that read the
# knowledge base) except these: what a load balancer polls, the spec, and the page's static files.
UNLIMITED_ENDPOINTS = {"api.healthz", "api.readyz", "api.openapi", "static"}


class TokenBucketLimiter:
    """``per_minute`` requests per key, refilled continuously, bursts up to ``per_minute``."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_s)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.refill_per_s
            self._buckets[key] = (tokens, now)  # most recently seen last
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)  # forget the longest-idle client
            return wait


class ServiceLimits:
    """The limits one app enforces, built from its settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        per_minute = settings.rate_limit_per_minute
        self.limiter = TokenBucketLimiter(per_minute) if per_minute > 0 else None

    def check_rate(self, client: str) -> None:
        if self.limiter is None:
            return
        wait = self.limiter.acquire(client)
        if wait > 0:
            raise TooManyRequests(
                f"rate limit of {self.settings.rate_limit_per_minute} requests per minute exceeded",
                retry_after=max(1, math.ceil(wait)),
            )

    def check_question(self, question: str) -> str:
        """The question stripped, or ``InvalidQuestion`` (kgqa.questions, the one validation)."""
        return validate_question(question, self.settings.max_question_chars)

    @staticmethod
    def check_turns(turns: Iterable[tuple[str, str]]) -> None:
        """Earlier turns ``(where, text)`` pass the same validation (the engine retrieves on them); blank ones are skipped."""
        for where, text in turns:
            if not text.strip():
                continue
            try:
                validate_question(text, MAX_TURN_CHARS)
            except InvalidQuestion as exc:
                raise InvalidQuestion(f"{where}: {exc}") from exc


def current_limits() -> ServiceLimits:
    return current_app.extensions["kgqa_limits"]


def _rate_limit_request() -> None:
    if request.endpoint is None or request.endpoint in UNLIMITED_ENDPOINTS:
        return  # no route matched (404/405 cost nothing), or a route that is never throttled
    current_limits().check_rate(request.remote_addr or "unknown")


def init_app(app: Flask) -> None:
    app.before_request(_rate_limit_request)
