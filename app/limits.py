"""Per-client rate limiting (a token bucket per remote address) and the request-shape limits.

A hand-written bucket rather than a library: the service needs one rule
(``settings.rate_limit_per_minute`` per client, 0 disables it), in-process
state and a ``Retry-After``; it fits in a few lines and adds no dependency.
Body size is bounded by Flask's ``MAX_CONTENT_LENGTH`` (413), set in the factory, and under
``kgqa serve`` by waitress before the body is read (app.serve); JSON nesting by app.json_body.

A question's cost is bounded in tokens, not characters: 1,000 characters of CJK or of
combining marks are 2,000-2,900 of the LM's tokens (an English question of that length ~200),
and took 41-53 s to answer instead of ~2 s. The question (``max_question_tokens``) and the
earlier turns the prompt keeps (``max_history_tokens``, together) are counted twice: first
by a bound that needs no model, a quarter of their UTF-8 bytes (an English word's token
covers ~4.5 bytes; a byte-level BPE never makes more tokens than bytes, so nothing passes it
that costs over 4x the limit), then, once the engine is warm, by the LM's own tokenizer
(``Generator.count_tokens``: the local tokenizer, or llama.cpp's ``/tokenize``).
What was counted is the request's cost as admission sees it (``request_tokens``): of two clients
whose answers held places equally long, the cheaper question goes first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from flask import Flask, current_app, g, request
from werkzeug.exceptions import TooManyRequests

from app.schemas import MAX_TURN_CHARS
from kgqa.errors import InvalidQuestion
from kgqa.questions import validate_question
from kgqa.settings import Settings

log = logging.getLogger(__name__)

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
        """The question stripped, or ``InvalidQuestion`` (kgqa.questions, the one validation; then its tokens)."""
        text = validate_question(question, self.settings.max_question_chars)
        self._check_tokens([text], self.settings.max_question_tokens, "the question", "KGQA_MAX_QUESTION_TOKENS")
        return text

    def check_turns(self, turns: Iterable[tuple[str, str]]) -> None:
        """Earlier turns ``(where, text)`` pass the same validation (the engine retrieves on them); blank ones are
        skipped. The ones the prompt keeps (the last ``MAX_HISTORY_MESSAGES``, cut to ``MAX_HISTORY_CHARS``) are
        limited to ``max_history_tokens`` together."""
        from qa.prompt import MAX_HISTORY_CHARS, MAX_HISTORY_MESSAGES

        turns = list(turns)
        for where, text in turns:
            if not text.strip():
                continue
            try:
                validate_question(text, MAX_TURN_CHARS)
            except InvalidQuestion as exc:
                raise InvalidQuestion(f"{where}: {exc}") from exc
        kept = [text[:MAX_HISTORY_CHARS] for _, text in turns[-MAX_HISTORY_MESSAGES:] if text.strip()]
        if kept:
            self._check_tokens(kept, self.settings.max_history_tokens, f"the last {len(kept)} turns of history",
                               "KGQA_MAX_HISTORY_TOKENS")

    def _check_tokens(self, texts: list[str], limit: int, what: str, setting: str) -> None:
        size = sum(len(text.encode("utf-8")) for text in texts)
        bound = math.ceil(size / BYTES_PER_TOKEN)
        if bound > limit:
            raise InvalidQuestion(f"{what} is {size} bytes of UTF-8, more than {limit} tokens can hold; "
                                  f"the limit is {limit} tokens ({setting})")
        tokens = self._count(texts)
        if tokens is not None and tokens > limit:
            raise InvalidQuestion(f"{what} has {tokens} tokens; the limit is {limit} ({setting})")
        g.kgqa_request_tokens = request_tokens() + (bound if tokens is None else tokens)

    @staticmethod
    def _count(texts: list[str]) -> int | None:
        """The LM's own count of ``texts``' tokens, or None while it cannot be asked (the byte bound holds)."""
        count = _token_counter()
        if count is None:
            return None
        try:
            return sum(count(text) for text in texts)
        except Exception as exc:  # counting refines the byte bound: an LM server away (llama.cpp's /tokenize) or any
            # failure of it is logged, never a 500 for a question that passed the bound
            log.warning("tokens not counted (%s: %s); the byte bound holds", type(exc).__name__, exc)
            return None


def request_tokens() -> int:
    """The tokens of this request's question and kept history, as counted by its checks (0 before them)."""
    return g.get("kgqa_request_tokens", 0)


# A token of the LM covers ~4.5 bytes of English; a quarter of the bytes over-counts English, and text that
# tokenizes densely (CJK, combining marks: 1.5-2 bytes a token) is refused by it before any model is asked.
BYTES_PER_TOKEN = 4


def _token_counter() -> Callable[[str], int] | None:
    """The warm engine's LM tokenizer (``Generator.count_tokens``), or None while it warms or when it has none."""
    runtime = current_app.extensions.get("kgqa_runtime")
    if runtime is None or not runtime.ready:
        return None
    generator = getattr(runtime.engine(), "generator", None)
    return getattr(generator, "count_tokens", None)


def current_limits() -> ServiceLimits:
    return current_app.extensions["kgqa_limits"]


def _rate_limit_request() -> None:
    if request.endpoint is None or request.endpoint in UNLIMITED_ENDPOINTS:
        return  # no route matched (404/405 cost nothing), or a route that is never throttled
    current_limits().check_rate(request.remote_addr or "unknown")


def init_app(app: Flask) -> None:
    app.before_request(_rate_limit_request)
