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
import threading
import time
from collections import Counter, OrderedDict
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
# How often a request that waits (for a place, or on a silent stream, app/sse.py) looks whether its client is
# still there.
POLL_S = 0.1


class NotReady(KgqaError):
    """The engine is still warming up, or its warm-up failed."""

    def __init__(self, message: str, *, code: str = "not_ready", retry_after: int | None = 5):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


@dataclass(eq=False)
class _Ticket:
    """A request waiting for a place: whose it is, its arrival order, and how its wait ended."""

    client: str
    number: int
    cost: int = 0
    started: float | None = None  # when it was given its place, once it was
    refused: Overloaded | None = None


class Admission:
    """At most ``max_concurrent`` requests run the engine and ``max_waiting`` more wait for a place, shared
    fairly between clients; any request beyond them is refused with ``Overloaded`` at once.

    Running more answers at once than the CPU can decode together only makes every one
    of them slow (they start together and finish together), so the service runs what
    finishes within its latency budget and refuses the rest while refusing is still cheap.

    Fair between clients (a client is its key, the remote address): a free place goes to the
    waiting request whose client has the fewest other requests running or waiting, then to the
    client whose answers held places the fewest seconds lately (those still running count the
    seconds they have held so far), then to the cheaper request (its ``cost``: the tokens of its
    question and history), then the client admitted least recently (round robin; a client that
    backed off after a 503 keeps its turn), then first come. The last free place is kept for a
    client with nothing running. When the line is full,
    a request that ranks before the last one waiting takes its place and that one is refused
    instead; a client has at most ``max_per_client`` requests running or waiting. A request is
    refused at once when the wait the recent answers predict, or any wait, would pass
    ``max_wait_s``.

    Clients are ranked by what their answers cost, not by how many they ask: the seconds their
    answers held a place lately. A client whose questions each hold a place for seconds (the
    heaviest the token limit allows) ranks behind one whose answers are quick, so a few clients
    sending expensive questions in a loop cannot hold the line from everyone else; before any
    answer has finished (all clients at nought), the cheaper question goes first.
    """

    def __init__(self, max_concurrent: int, max_waiting: int, *, max_per_client: int | None = None,
                 retry_after: int = 2, max_wait_s: float = MAX_WAIT_S, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        if max_concurrent < 1 or max_waiting < 0 or (max_per_client is not None and max_per_client < 1):
            raise ValueError("admission needs max_concurrent >= 1, max_waiting >= 0 and max_per_client >= 1")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.max_per_client = max_per_client or max_concurrent
        self.retry_after = retry_after
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._cond = threading.Condition()
        self._running: Counter[str] = Counter()  # client -> requests running
        self._running_since: dict[str, list[float]] = {}  # client -> when each of its running requests started
        self._total = 0  # requests running, all clients
        self._line: list[_Ticket] = []
        self._last_admitted: OrderedDict[str, float] = OrderedDict()  # client -> when it last started, bounded
        self._used: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (seconds held, as of when)
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
        with self._cond:
            held = self._running[client] + sum(ticket.client == client for ticket in self._line)
            if held >= self.max_per_client:
                raise Overloaded(f"this client has {held} requests running or waiting, the most one client may; "
                                 "retry when one ends", self.retry_after)
            if self._may_start(client):  # the line holds only requests that may not start yet
                started = self._start(client)
            else:
                started = self._wait_in_line(client, cost, gone)
        released = threading.Event()

        def release() -> None:
            with self._cond:
                if released.is_set():
                    return
                released.set()
                self._finish(client, started)

        return release

    def _may_start(self, client: str) -> bool:
        """A free place, and not the last one for a client already running a request: that one is kept for
        a client with none, so one client (one host opening many connections) never holds every place."""
        return self._total < self.max_concurrent and (
            not self._running[client] or self._total < self.max_concurrent - 1)

    def _rank(self, ticket: _Ticket) -> tuple:
        """Lower goes first: the client's other requests (running, or ahead of this one), the seconds its
        answers held a place lately (what they cost), the request's own cost in tokens, how recently its
        client's last request started, then arrival."""
        ahead = sum(other.client == ticket.client and other.number < ticket.number for other in self._line)
        return (self._running[ticket.client] + ahead, round(self._usage(ticket.client), 1), ticket.cost,
                self._last_admitted.get(ticket.client, -math.inf), ticket.number)

    def _usage(self, client: str) -> float:
        """Seconds the client's answers held a place, each halved every ``USAGE_HALF_LIFE_S`` since, and the
        seconds its running requests have held theirs so far."""
        now = self._clock()
        return self._finished_usage(client) + sum(now - started for started in self._running_since.get(client, ()))

    def _finished_usage(self, client: str) -> float:
        seconds, when = self._used.get(client, (0.0, 0.0))
        return seconds * 0.5 ** ((self._clock() - when) / USAGE_HALF_LIFE_S) if seconds else 0.0

    def _remember(self, table: OrderedDict, client: str, value) -> None:
        table[client] = value
        table.move_to_end(client)
        while len(table) > self._max_clients:
            table.popitem(last=False)  # forgotten: ranked as a client never admitted

    def _wait_in_line(self, client: str, cost: int, gone: Callable[[], bool] | None = None) -> float:
        """Called with the lock held; returns when this request started, once it was given a place."""
        ticket = _Ticket(client, next(self._tickets), cost)
        rank = self._rank(ticket)
        if len(self._line) >= self.max_waiting:
            last = max(self._line, key=self._rank, default=None)
            if last is None or self._rank(last) < rank:
                raise Overloaded(f"{self.max_concurrent} answers are being generated and {len(self._line)} "
                                 "requests are waiting; retry shortly", self.retry_after)
            self._line.remove(last)  # this request ranks before it: it is refused instead
            last.refused = Overloaded("a client with fewer requests or quicker answers took this place in line; "
                                      "retry shortly",
                                      self.retry_after)
        ahead = sum(self._rank(other) < rank for other in self._line)
        if self._hold_s is not None and self._hold_s * (ahead // self.max_concurrent + 1) > self.max_wait_s:
            raise Overloaded(f"{ahead} requests are ahead of this one and an answer takes about "
                             f"{self._hold_s:.0f} s: no answer could start within {self.max_wait_s:.0f} s; "
                             "retry shortly", self.retry_after)
        self._line.append(ticket)
        self._cond.notify_all()  # a refused request wakes to leave
        deadline = self._clock() + self.max_wait_s
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
            if ticket.started is not None:  # given a place as it gave up: hand it on
                self._finish(client, ticket.started, held=False)
            elif ticket in self._line:
                self._line.remove(ticket)
            raise
        return ticket.started

    def _start(self, client: str) -> float:
        """Called with the lock held: the client's request takes a place now; returns when."""
        now = self._clock()
        self._running[client] += 1
        self._running_since.setdefault(client, []).append(now)
        self._total += 1
        self._remember(self._last_admitted, client, now)
        return now

    def _finish(self, client: str, started: float, *, held: bool = True) -> None:
        """Called with the lock held: free the client's place (taken at ``started``; ``held``: an answer ran in
        it, so its seconds count to the client) and give free places to the best ranked waiting."""
        self._running[client] -= 1
        self._total -= 1
        if not self._running[client]:
            del self._running[client]
        since = self._running_since[client]
        since.remove(started)
        if not since:
            del self._running_since[client]
        if held:
            held_s = self._clock() - started
            self._hold_s = held_s if self._hold_s is None else 0.8 * self._hold_s + 0.2 * held_s
            self._remember(self._used, client, (self._finished_usage(client) + held_s, self._clock()))
        while startable := [ticket for ticket in self._line if self._may_start(ticket.client)]:
            best = min(startable, key=self._rank)
            self._line.remove(best)
            best.started = self._start(best.client)
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
