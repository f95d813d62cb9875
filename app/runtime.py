"""The QA engine's life in one process: built lazily, warmed once in the background, behind admission.

Requests never wait for a model load or an unbounded queue: while the engine
warms they get 503 ``not_ready``; beyond ``KGQA_MAX_CONCURRENT`` running answers
and ``KGQA_MAX_WAITING`` waiting ones they get 503 ``overloaded`` at once, both
with ``Retry-After``. The places are shared fairly between clients (``Admission``), so a
few clients sending expensive questions in a loop cannot hold them from everyone else.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from kgqa.errors import Cancelled, KgqaError, Overloaded
from kgqa.settings import Settings

log = logging.getLogger(__name__)

# The longest a request waits in line before it is refused after all: with the line sized
# to what the engine finishes within the latency budget it never comes to that, unless
# the engine stalls (a request whose predicted wait is longer is refused at once).
MAX_WAIT_S = 60.0
# How fast a client's cost is forgotten: the seconds its answers held a place count half after this long.
USAGE_HALF_LIFE_S = 30.0
# How much waiting ages a request forward: each second it has waited counts this many seconds off its rank, so a
# request expected to hold its place X s longer than others is passed by them for at most X / AGING s.
AGING = 0.25
# How much a client's seconds held lately (its share) weigh beside the seconds its request is expected to hold: a
# quarter, so among requests expected alike the client that held places least goes first, while a cheap question
# still goes before a dear one from a client that has held nothing (bench/heavy_questions.py; a full weight put the
# normal client's cold answers against it and behind clients never served).
USAGE_WEIGHT = 0.25
# How many of a client's last answers say how far its requests hold their places off what their tokens predict.
CLIENT_ANSWERS = 5
# How often a request that waits (for a place, or on a silent stream, app/sse.py) looks whether its client is
# still there.
POLL_S = 0.1


class NotReady(KgqaError):
    """The engine is still warming up, or its warm-up failed."""

    def __init__(self, message: str, *, code: str = "not_ready", retry_after: int | None = 5):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class HoldModel:
    """How long an answer holds its place, predicted from its request's tokens and learnt from finished answers.

    ``seconds = base + per_token * tokens`` over the last ``window`` answers, so it follows the machine's load
    and the model's caches, fitted by Theil-Sen (``scipy.stats.theilslopes``: the median of the slopes between
    pairs of answers, then the median intercept), which a few answers far off the line move little: a cold
    first answer of a short question (16 s where 0.6 s is usual) or a long one answered at once (an abstention,
    0.2 s for 256 tokens) pulled a least-squares line flat, so that the heaviest question was expected to cost
    what a normal one does. Neither term is below nought. It predicts nothing before the first answer has
    finished; while every answer seen had the same number of tokens the slope is unknown, and nought.
    """

    def __init__(self, window: int = 64):
        if window < 2:
            raise ValueError(f"a hold model needs a window of at least 2 answers, got {window}")
        self._seen: deque[tuple[int, float]] = deque(maxlen=window)
        self.base: float | None = None  # seconds of an answer of no tokens; None before any answer finished
        self.per_token = 0.0

    def warm_up(self) -> None:
        """Import what the fit needs (scipy.stats: about a second) now, not at the first finished answer, where
        admission's lock is held and every request would wait for it."""
        import scipy.stats  # noqa: F401

    def observe(self, tokens: int, seconds: float) -> None:
        """An answer of ``tokens`` held its place ``seconds``: refit."""
        if tokens < 0 or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"an answer holds a place for >= 0 s with >= 0 tokens, got {seconds} s, {tokens}")
        self._seen.append((tokens, seconds))
        import numpy as np
        from scipy.stats import theilslopes

        tokens_seen, seconds_seen = np.array(self._seen, dtype=float).T
        per_token = 0.0  # one size only: the seconds tell nothing about a token's price
        if np.ptp(tokens_seen) > 0:
            with np.errstate(invalid="ignore", divide="ignore"):  # its confidence interval, unused, may be nan
                per_token = max(0.0, float(theilslopes(seconds_seen, tokens_seen).slope))
        self.per_token = per_token
        self.base = max(0.0, float(np.median(seconds_seen - per_token * tokens_seen)))

    def predict(self, tokens: int) -> float | None:
        """Seconds an answer of ``tokens`` is expected to hold its place, or None before any answer finished."""
        return None if self.base is None else self.base + self.per_token * tokens


@dataclass(eq=False)
class Ticket:
    """One request's place in admission: whose it is, its arrival order and cost, and how its wait ended."""

    client: str
    number: int
    cost: int = 0  # the tokens of its question and history
    arrived: float = 0.0
    started: float | None = None  # when it was given its place, once it was
    refused: Overloaded | None = None
    released: bool = False


class Admission:
    """At most ``max_concurrent`` requests run the engine and ``max_waiting`` more wait for a place, shared
    fairly between clients; any request beyond them is refused with ``Overloaded`` at once.

    Running more answers at once than the CPU can decode together only makes every one
    of them slow (they start together and finish together), so the service runs what
    finishes within its latency budget and refuses the rest while refusing is still cheap.

    Fair between clients (a client is its key, the remote address), then the quickest request first: a free
    place goes to the waiting request whose client has the fewest other requests running or waiting; of
    those, to the lowest score in seconds (``_score``): the seconds the request is expected to hold its
    place (``HoldModel``: from its ``cost``, the tokens of its question and history, at the price per token
    the finished answers showed; moved by how far its client's last answers were off that), plus ``USAGE_WEIGHT`` times the seconds its client's answers held places
    lately (halved every ``USAGE_HALF_LIFE_S``; those still running count the seconds they have held so
    far), less ``AGING`` times the seconds it has waited; then to the client that held places less, the
    cheaper request in tokens, the client admitted least recently (round robin; a client that backed off
    after a 503 keeps its turn), then first come. The last free place is kept for a client with nothing
    running. When the line is full, a request that ranks before the last one waiting takes its place and
    that one is refused instead; a client has at most ``max_per_client`` requests running or waiting. A
    request is refused at once when the wait the recent answers predict, or any wait, would pass
    ``max_wait_s``.

    So a cheap question is not left behind expensive ones, even those of clients never served yet (whose
    past is nought but whose requests are dear), and clients sending the heaviest questions the token limit
    allows in a loop share the places the cheap ones leave, the one that held least first; waiting ages an
    expensive request forward, so cheaper ones pass it for a bounded time only. A client with nothing
    running comes before one that has, so no client, however cheap its questions, holds every place.
    """

    def __init__(self, max_concurrent: int, max_waiting: int, *, max_per_client: int | None = None,
                 retry_after: int = 2, max_wait_s: float = MAX_WAIT_S, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000, hold_model: HoldModel | None = None):
        if max_concurrent < 1 or max_waiting < 0 or (max_per_client is not None and max_per_client < 1):
            raise ValueError("admission needs max_concurrent >= 1, max_waiting >= 0 and max_per_client >= 1")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.max_per_client = max_per_client or max_concurrent
        self.retry_after = retry_after
        self.max_wait_s = max_wait_s
        self.hold_model = hold_model or HoldModel()
        self._clock = clock
        self._cond = threading.Condition()
        self._running: dict[str, list[Ticket]] = {}  # client -> its requests running
        self._total = 0  # requests running, all clients
        self._line: list[Ticket] = []
        self._last_admitted: OrderedDict[str, float] = OrderedDict()  # client -> when it last started, bounded
        self._used: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (seconds held, as of when)
        self._offsets: OrderedDict[str, deque[float]] = OrderedDict()  # client -> its last answers' seconds off the line
        self._max_clients = max_clients
        self._hold_s: float | None = None  # how long an answer holds its place, on average (EWMA)
        self._tickets = itertools.count()

    @property
    def running(self) -> int:
        return self._total  # read without the lock (``/readyz``): a plain int, never a dict being changed

    @property
    def waiting(self) -> int:
        return len(self._line)

    def admit(self, client: str = "", *, cost: int = 0,
              gone: Callable[[], bool] | None = None) -> Callable[[], None]:
        """Start now, or wait for a place, or raise ``Overloaded``; returns an idempotent release.

        ``client`` names who asks (the remote address): the line is shared fairly between clients.
        ``cost`` is what the request asks of the model (its question's and history's tokens).
        ``gone`` says whether the client went away: asked every ``POLL_S`` while the request
        waits, and a request whose client left gives its place in line up (``Cancelled``).
        """
        ticket = self.enter(client, cost=cost)
        self.wait(ticket, gone)
        return lambda: self.release(ticket)

    def enter(self, client: str = "", *, cost: int = 0) -> Ticket:
        """Without waiting: a ticket that has its place now or waits in line for one, or ``Overloaded``.

        A waiting ticket is given its place (``started``) or refused (``refused``: a request ranked before it
        took its place in a full line) as other requests come and go; ``wait`` waits for that.
        """
        if cost < 0:
            raise ValueError(f"a request's cost is its tokens, >= 0; got {cost}")
        with self._cond:
            held = len(self._running.get(client, ())) + sum(ticket.client == client for ticket in self._line)
            if held >= self.max_per_client:
                raise Overloaded(f"this client has {held} requests running or waiting, the most one client may; "
                                 "retry when one ends", self.retry_after)
            ticket = Ticket(client, next(self._tickets), cost, arrived=self._clock())
            if self._may_start(client):  # the line holds only requests that may not start yet
                self._start(ticket)
            else:
                self._join_line(ticket)
            return ticket

    def wait(self, ticket: Ticket, gone: Callable[[], bool] | None = None) -> None:
        """Until ``ticket`` has its place. Raises its refusal, ``Overloaded`` once it waited ``max_wait_s``, or
        ``Cancelled`` when ``gone()`` says its client left; a ticket that gives up so leaves the line."""
        with self._cond:
            deadline = ticket.arrived + self.max_wait_s
            try:
                while ticket.started is None:
                    if ticket.refused is not None:
                        raise ticket.refused
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise Overloaded(f"no answer could start within {self.max_wait_s:.0f} s; retry shortly",
                                         self.retry_after)
                    if gone is not None and gone():
                        raise Cancelled("the client went away while its request waited for a place")
                    self._cond.wait(remaining if gone is None else min(remaining, POLL_S))
            except BaseException:
                self._leave(ticket, held=False)  # given a place as it gave up: handed on, its client not charged
                raise

    def release(self, ticket: Ticket) -> None:
        """The request is done (idempotent): its place, held since it started, counts to its client and goes to
        the best ranked waiting request; a ticket still waiting leaves the line."""
        with self._cond:
            self._leave(ticket, held=True)

    def _leave(self, ticket: Ticket, *, held: bool) -> None:
        """Called with the lock held."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.started is not None:
            self._finish(ticket, held=held)
        elif ticket in self._line:
            self._line.remove(ticket)
            self._cond.notify_all()

    def _may_start(self, client: str) -> bool:
        """A free place, and not the last one for a client already running a request: that one is kept for
        a client with none, so one client (one host opening many connections) never holds every place."""
        return self._total < self.max_concurrent and (
            client not in self._running or self._total < self.max_concurrent - 1)

    def _rank(self, ticket: Ticket) -> tuple:
        """Lower goes first: the client's other requests (running, or ahead of this one), its score in seconds
        (``_score``), the seconds its client's answers held places lately, its own cost in tokens, how recently
        its client's last request started, then arrival."""
        ahead = sum(other.client == ticket.client and other.number < ticket.number for other in self._line)
        return (len(self._running.get(ticket.client, ())) + ahead, round(self._score(ticket), 1),
                round(self._usage(ticket.client), 1), ticket.cost, self._last_admitted.get(ticket.client, -math.inf),
                ticket.number)

    def _score(self, ticket: Ticket) -> float:
        """The seconds the request is expected to hold its place (``_expected``), plus its client's recent seconds
        at ``USAGE_WEIGHT``, less ``AGING`` per second it has waited."""
        now = self._clock()
        return self._expected(ticket) + USAGE_WEIGHT * self._usage(ticket.client) - AGING * (now - ticket.arrived)

    def _expected(self, ticket: Ticket) -> float:
        """Seconds the request is expected to hold its place: what the hold model expects of its tokens, moved by
        how far its client's last ``CLIENT_ANSWERS`` answers were off that (their median, the lower of two): a
        client's requests tend to be alike (the same long question, its prompt cached, is quick whatever its
        length), and one cold answer (a question asked for the first time) does not make a client slow. Nought
        before any answer finished."""
        expected = self.hold_model.predict(ticket.cost)
        if expected is None:
            return 0.0
        offsets = self._offsets.get(ticket.client)
        return max(0.0, expected + statistics.median_low(offsets)) if offsets else expected

    def _usage(self, client: str) -> float:
        """Seconds the client's answers held a place, each halved every ``USAGE_HALF_LIFE_S`` since, and the
        seconds its running requests have held theirs so far."""
        now = self._clock()
        return self._finished_usage(client) + sum(now - ticket.started for ticket in self._running.get(client, ()))

    def _finished_usage(self, client: str) -> float:
        seconds, when = self._used.get(client, (0.0, 0.0))
        return seconds * 0.5 ** ((self._clock() - when) / USAGE_HALF_LIFE_S) if seconds else 0.0

    def _remember(self, table: OrderedDict, client: str, value) -> None:
        table[client] = value
        table.move_to_end(client)
        while len(table) > self._max_clients:
            table.popitem(last=False)  # forgotten: ranked as a client never admitted

    def _join_line(self, ticket: Ticket) -> None:
        """Called with the lock held: ``ticket`` waits in line, or ``Overloaded`` when it may not."""
        rank = self._rank(ticket)
        if len(self._line) >= self.max_waiting:
            last = max(self._line, key=self._rank, default=None)
            if last is None or self._rank(last) < rank:
                raise Overloaded(f"{self.max_concurrent} answers are being generated and {len(self._line)} "
                                 "requests are waiting; retry shortly", self.retry_after)
            self._line.remove(last)  # this request ranks before it: it is refused instead
            last.refused = Overloaded("a client with fewer requests or quicker answers took this place in line; "
                                      "retry shortly", self.retry_after)
        ahead = sum(self._rank(other) < rank for other in self._line)
        if self._hold_s is not None and self._hold_s * (ahead // self.max_concurrent + 1) > self.max_wait_s:
            raise Overloaded(f"{ahead} requests are ahead of this one and an answer takes about "
                             f"{self._hold_s:.0f} s: no answer could start within {self.max_wait_s:.0f} s; "
                             "retry shortly", self.retry_after)
        self._line.append(ticket)
        self._cond.notify_all()  # a refused request wakes to leave

    def _start(self, ticket: Ticket) -> None:
        """Called with the lock held: the request takes a place now."""
        ticket.started = self._clock()
        self._running.setdefault(ticket.client, []).append(ticket)
        self._total += 1
        self._remember(self._last_admitted, ticket.client, ticket.started)

    def _finish(self, ticket: Ticket, *, held: bool) -> None:
        """Called with the lock held: free the request's place (``held``: an answer ran in it, so its seconds
        count to its client and teach the hold model) and give free places to the best ranked waiting."""
        running = self._running[ticket.client]
        running.remove(ticket)
        if not running:
            del self._running[ticket.client]
        self._total -= 1
        if held:
            now = self._clock()
            held_s = now - ticket.started
            self._hold_s = held_s if self._hold_s is None else 0.8 * self._hold_s + 0.2 * held_s
            expected = self.hold_model.predict(ticket.cost)
            if expected is not None:
                offsets = self._offsets.get(ticket.client) or deque(maxlen=CLIENT_ANSWERS)
                offsets.append(held_s - expected)
                self._remember(self._offsets, ticket.client, offsets)
            self.hold_model.observe(ticket.cost, held_s)
            self._remember(self._used, ticket.client, (self._finished_usage(ticket.client) + held_s, now))
        while startable := [waiting for waiting in self._line if self._may_start(waiting.client)]:
            best = min(startable, key=self._rank)
            self._line.remove(best)
            self._start(best)
        self._cond.notify_all()


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
            self.admission.hold_model.warm_up()
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
