"""Admission (app/runtime.py): places shared fairly between clients, a bounded line, refusals with Retry-After.

A fake clock drives the hold-time estimates and the aging; the waiting requests are threads (or, through
``enter``/``release``, tickets that never block), and each test asserts who was admitted in which order,
never how long anything took.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

import pytest
from tests.helpers.app_fakes import QUESTION, FakeEngine, make_app

from app.runtime import AGING, Admission, HoldModel
from kgqa.errors import Overloaded


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Line:
    """Requests that wait in their own threads; ``order`` records whose was admitted, in turn."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.order: list[str] = []
        self.refused: list[str] = []
        self.threads: list[threading.Thread] = []

    def join(self, name: str, client: str, *, takes_a_place: bool = True, cost: int = 0) -> None:
        def wait_then_run():
            try:
                done = self.admission.admit(client, cost=cost)
            except Overloaded:
                self.refused.append(name)
                return
            self.order.append(name)
            done()

        waiting = self.admission.waiting
        self.threads.append(threading.Thread(target=wait_then_run))
        self.threads[-1].start()
        if takes_a_place:  # in line before the next one comes
            _wait_until(lambda: self.admission.waiting == waiting + 1)

    def finish(self) -> None:
        for thread in self.threads:
            thread.join(5)
        assert (self.admission.running, self.admission.waiting) == (0, 0)


def test_admission_runs_then_refuses_at_once_with_retry_after():
    admission = Admission(2, 0, retry_after=4)
    first, second = admission.admit("a"), admission.admit("b")
    with pytest.raises(Overloaded) as info:
        admission.admit("c")
    assert info.value.retry_after == 4
    first()
    first()  # idempotent: releasing twice frees one place only
    assert admission.running == 1
    admission.admit("c")
    with pytest.raises(Overloaded):
        admission.admit("d")
    second()


def test_a_client_with_nothing_running_goes_before_a_busy_clients_line():
    admission = Admission(1, 3, max_per_client=3)
    line = Line(admission)
    release = admission.admit("busy")
    line.join("busy 2", "busy")
    line.join("busy 3", "busy")
    line.join("new", "new")  # arrived last, holds nothing
    release()
    line.finish()
    assert line.order == ["new", "busy 2", "busy 3"]  # one client's own requests keep their order


def test_places_go_round_robin_to_the_client_admitted_least_recently():
    admission = Admission(1, 3, max_per_client=2)
    admission.admit("served")()  # served once already
    release = admission.admit("other")
    line = Line(admission)
    line.join("served", "served")
    line.join("never served", "never")
    line.join("other", "other")  # its request is still running: it goes last
    release()
    line.finish()
    assert line.order == ["never served", "served", "other"]


def test_a_client_whose_answers_cost_less_goes_first_and_takes_an_expensive_clients_place():
    """Requests alike in tokens (expected to hold alike): the client whose answers held places less goes first."""
    clock = Clock()
    admission = Admission(1, 1, clock=clock)
    for client, seconds in (("expensive", 12.0), ("cheap", 0.5)):  # cheap was served last
        release = admission.admit(client)
        clock.now += seconds
        release()
    clock.now += 1
    release = admission.admit("other")
    line = Line(admission)
    line.join("expensive", "expensive")
    line.join("cheap", "cheap", takes_a_place=False)  # the line is full: it takes the expensive one's place
    _wait_until(lambda: line.refused == ["expensive"])
    with pytest.raises(Overloaded):  # and an expensive client cannot take it back
        admission.admit("expensive")
    release()
    line.finish()
    assert line.order == ["cheap"]


def test_before_any_answer_finished_the_cheaper_question_takes_the_dearer_ones_place():
    admission = Admission(1, 1)
    release = admission.admit("first", cost=256)
    line = Line(admission)
    line.join("heavy", "heavy", cost=256)
    line.join("normal", "normal", cost=8, takes_a_place=False)  # all at nought: the cheaper request ranks first
    _wait_until(lambda: line.refused == ["heavy"])
    release()
    line.finish()
    assert line.order == ["normal"]


def test_a_running_answer_counts_the_seconds_it_has_held_so_far():
    clock = Clock()
    admission = Admission(4, 2, max_per_client=2, clock=clock)
    slow = admission.admit("slow")  # still running 20 s later: its client is costly now, not only once it ends
    clock.now += 20
    quick = admission.admit("quick")  # started last: round robin alone would serve "slow" first
    release = admission.admit("other")
    line = Line(admission)
    line.join("slow 2", "slow")  # neither may start: the last free place is kept for a client with none running
    line.join("quick 2", "quick")
    release()  # one place for the two of them: the first to take it is the client that held less
    _wait_until(lambda: line.order)
    slow()
    quick()
    line.finish()
    assert line.order == ["quick 2", "slow 2"]


def test_a_full_line_refuses_a_busy_client_but_takes_a_new_one_in_place_of_the_busiest():
    admission = Admission(1, 2, retry_after=3, max_per_client=3)
    release = admission.admit("busy")
    line = Line(admission)
    line.join("busy 2", "busy")
    line.join("busy 3", "busy")
    with pytest.raises(Overloaded) as info:  # the line is full and this client already waits in it
        admission.admit("busy")
    assert info.value.retry_after == 3
    line.join("new", "new", takes_a_place=False)  # the busy client's last waiting request is refused in its place
    _wait_until(lambda: line.refused == ["busy 3"])
    assert admission.waiting == 2
    release()
    line.finish()
    assert line.order == ["new", "busy 2"]


def test_equal_clients_at_a_full_line_keep_their_places():
    admission = Admission(1, 1)
    release = admission.admit("a")
    line = Line(admission)
    line.join("b", "b")
    with pytest.raises(Overloaded):  # c ranks as b does (nothing running, never admitted) and came later
        admission.admit("c")
    release()
    line.finish()
    assert (line.order, line.refused) == (["b"], [])


def test_a_client_over_its_cap_is_refused_while_others_start():
    admission = Admission(3, 2, max_per_client=2)
    held = [admission.admit("a"), admission.admit("a")]
    with pytest.raises(Overloaded, match="the most one client may"):
        admission.admit("a")
    held.append(admission.admit("b"))  # a free place and another client: it starts
    assert admission.running == 3
    for release in held:
        release()


def test_the_last_place_is_kept_for_a_client_with_nothing_running():
    admission = Admission(2, 4)
    release = admission.admit("many")
    line = Line(admission)
    line.join("many 2", "many")  # a place is free, but the last one: it waits
    with pytest.raises(Overloaded, match="the most one client may"):  # the default cap: KGQA_MAX_CONCURRENT
        admission.admit("many")
    other = admission.admit("other")  # starts at once on the kept place
    assert (admission.running, admission.waiting) == (2, 1)
    other()
    release()
    line.finish()
    assert line.order == ["many 2"]


def test_a_wait_predicted_past_the_bound_is_refused_at_once():
    clock = Clock()
    admission = Admission(1, 5, max_wait_s=10, clock=clock)
    release = admission.admit("a")
    clock.now += 20  # an answer held its place 20 s
    release()
    release = admission.admit("a")
    with pytest.raises(Overloaded, match="about 20 s"):  # nobody ahead, but the one running takes ~20 s
        admission.admit("b")
    assert admission.waiting == 0
    release()


def test_a_request_that_waited_too_long_leaves_the_line():
    admission = Admission(1, 1, max_wait_s=0.05)
    release = admission.admit("a")
    with pytest.raises(Overloaded, match="within"):
        admission.admit("b")
    assert admission.waiting == 0
    release()
    admission.admit("b")()


def test_the_service_keys_admission_by_client_address(tmp_path):
    engine = FakeEngine()
    engine.block.clear()  # every request runs until released
    app = make_app(tmp_path / "data", engine, max_concurrent=2, max_waiting=2)
    admission = app.extensions["kgqa_runtime"].admission
    statuses: dict[str, int] = {}

    def ask(name: str, address: str) -> None:
        client = app.test_client()
        response = client.post("/api/v1/ask", json={"question": QUESTION}, environ_base={"REMOTE_ADDR": address})
        statuses[name] = response.status_code

    first = threading.Thread(target=ask, args=("first", "10.0.0.1"))
    second = threading.Thread(target=ask, args=("second", "10.0.0.1"))
    other = threading.Thread(target=ask, args=("other", "10.0.0.2"))
    first.start()
    try:
        _wait_until(lambda: admission.running == 1)
        second.start()
        _wait_until(lambda: admission.waiting == 1)  # the last place is kept for another address
        # the same address over its cap (KGQA_MAX_CONCURRENT): 503 with Retry-After, though the line has room
        refused = app.test_client().post("/api/v1/ask", json={"question": QUESTION},
                                         environ_base={"REMOTE_ADDR": "10.0.0.1"})
        assert refused.status_code == 503
        assert refused.json["error"]["code"] == "overloaded"
        assert "Retry-After" in refused.headers
        other.start()
        _wait_until(lambda: admission.running == 2)  # another address starts at once
    finally:
        engine.block.set()
        for thread in (first, second, other):
            thread.join(5)
    assert statuses == {"first": 200, "second": 200, "other": 200}


@pytest.mark.parametrize("trusted", [True, False])
def test_a_trusted_proxy_names_the_client_and_no_one_else_can(tmp_path, trusted):
    """Behind ``--trusted-proxy`` the client is X-Forwarded-For's; from any other peer the header is ignored."""
    import requests

    from app import create_app
    from app.serve import build_server
    from kgqa.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data", rate_limit_per_minute=1), engine=FakeEngine())
    server = build_server(app, port=0, threads=4, trusted_proxy="127.0.0.1" if trusted else None)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}/api/v1/passages/1:1:0:0"
    try:
        def status(forwarded_for: str) -> int:
            return requests.get(url, headers={"X-Forwarded-For": forwarded_for}, timeout=10).status_code

        first = status("203.0.113.1")
        assert first != 429
        assert status("203.0.113.1") == 429  # one request a minute for this client
        assert (status("198.51.100.7") != 429) is trusted  # another client, or the same peer claiming to be one
    finally:
        server.close()
        thread.join(5)


def test_a_trusted_proxy_reaches_every_worker(monkeypatch):
    from click.testing import CliRunner

    from app import serve

    seen = {}
    monkeypatch.setattr(serve, "serve_workers", lambda *args, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(serve.serve_command, ["--workers", "2", "--trusted-proxy", "10.0.0.5"])
    assert result.exit_code == 0, result.output
    assert seen["trusted_proxy"] == "10.0.0.5" and seen["workers"] == 2


def test_a_waiting_request_whose_client_went_away_leaves_the_line():
    from kgqa.errors import Cancelled

    admission = Admission(1, 2)
    release = admission.admit("a")
    left, outcome = threading.Event(), []

    def wait():
        try:
            admission.admit("b", gone=left.is_set)
        except Cancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=wait)
    thread.start()
    _wait_until(lambda: admission.waiting == 1)
    left.set()  # its client closed the connection while it waited
    _wait_until(lambda: admission.waiting == 0)
    thread.join(5)
    assert outcome == ["cancelled"]
    release()
    assert admission.running == 0  # the place it would have taken was never held
    admission.admit("c")()


# The expected hold: seconds from tokens, learnt from finished answers.

def test_the_hold_model_learns_a_base_and_a_price_per_token():
    model = HoldModel()
    assert model.predict(10) is None  # nothing finished yet
    for tokens, seconds in ((10, 1.5), (250, 7.5), (10, 1.5), (130, 4.5)):
        model.observe(tokens, seconds)
    assert model.base == pytest.approx(1.25)
    assert model.per_token == pytest.approx(0.025)
    assert model.predict(100) == pytest.approx(3.75)


def test_the_hold_model_never_prices_a_token_below_nought_and_forgets_old_answers():
    model = HoldModel(window=3)
    model.observe(5, 2.0)
    assert (model.base, model.per_token) == (2.0, 0.0)  # one size seen: its mean, no price per token
    model.observe(250, 0.5)  # a long question answered at once (abstained): no negative price
    assert model.per_token == 0.0
    assert model.predict(250) == model.predict(5) == pytest.approx(1.25)
    for _ in range(3):  # the window moves on: only these are remembered
        model.observe(200, 8.0)
    assert model.predict(5) == pytest.approx(8.0)


def test_a_few_answers_far_off_the_line_move_the_hold_model_little():
    """What the heavy benchmark's server saw: short questions of ~0.6 s with cold ones of 4.6-16 s, the heaviest
    question 8-15 s, and a 256-token question abstained at once (0.25 s). A least-squares line through these
    expects both kinds to hold ~7.8 s; the medians keep them apart."""
    model = HoldModel()
    for tokens, seconds in ((5, 1.0), (5, 1.2), (5, 16.0), (250, 8.0), (250, 8.4), (256, 0.25), (5, 4.6),
                            (251, 14.6), (251, 8.3), (7, 16.35)):
        model.observe(tokens, seconds)
    assert model.predict(6) == pytest.approx(4.8, abs=0.2)
    assert model.predict(251) == pytest.approx(8.1, abs=0.2)


@pytest.mark.parametrize("tokens, seconds", [(-1, 1.0), (5, -0.1), (5, float("nan"))])
def test_the_hold_model_refuses_an_impossible_answer(tokens, seconds):
    with pytest.raises(ValueError, match="holds a place"):
        HoldModel().observe(tokens, seconds)


def test_the_engine_warm_up_imports_what_the_hold_model_fits_with(tmp_path):
    """Not at the first finished answer, under admission's lock (scipy.stats takes about a second to import)."""
    import subprocess
    import sys

    code = ("import sys; from app.runtime import EngineRuntime; from kgqa.settings import Settings\n"
            "assert 'scipy.stats' not in sys.modules\n"
            f"runtime = EngineRuntime(Settings(data_dir={str(tmp_path)!r}), engine=type('E', (), {{'warm_up': lambda self: None}})())\n"
            "assert runtime.wait_ready(60) and 'scipy.stats' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_admission_teaches_its_hold_model_the_seconds_each_answer_held():
    clock = Clock()
    admission = Admission(2, 0, clock=clock)
    for tokens, seconds in ((8, 1.0), (256, 11.0)):
        release = admission.admit("a", cost=tokens)
        clock.now += seconds
        release()
        release()  # released twice: learnt once
    assert admission.hold_model.predict(8) == pytest.approx(1.0)
    assert admission.hold_model.predict(256) == pytest.approx(11.0)


class FixedHolds(HoldModel):
    """Expects an answer to hold its place 1 s plus 32 ms a token (0 tokens: 1 s, 250 tokens: 9 s), whatever held."""

    def __init__(self):
        super().__init__()
        self.base, self.per_token = 1.0, 0.032

    def observe(self, tokens: int, seconds: float) -> None:
        pass


def _taught(clock: Clock, *answers: tuple[str, int, float]) -> Admission:
    """Admission (two places, a line of two; ``FixedHolds``) whose clients' answers of (client, tokens, seconds)
    have finished."""
    admission = Admission(2, 2, clock=clock, hold_model=FixedHolds())
    for client, tokens, seconds in answers:
        ticket = admission.enter(client, cost=tokens)
        clock.now += seconds
        admission.release(ticket)
    return admission


# Shortest expected hold first, with aging.

def test_a_cheap_question_goes_before_dear_ones_of_clients_never_served():
    """The heavy benchmark's failure: the normal client's answer counted against it, so clients never served (nought
    seconds held) took its place in line; now the request expected to hold its place the shortest goes first."""
    clock = Clock()
    admission = _taught(clock, ("normal", 8, 6.8), ("normal", 8, 1.0))  # a cold first answer, then a quick one
    running = [admission.enter("busy 1", cost=250), admission.enter("busy 2", cost=250)]
    heavy = admission.enter("heavy", cost=250)  # never served, expected to hold 9 s
    clock.now += 1
    normal = admission.enter("normal", cost=8)  # held places 7.8 s lately, arrived later, expected to hold 1.3 s
    admission.release(running[0])
    assert (normal.started, heavy.started) == (clock.now, None)
    admission.release(running[1])
    assert heavy.started == clock.now


def test_at_a_full_line_a_cheap_question_takes_a_dear_ones_place():
    clock = Clock()
    admission = _taught(clock, ("normal", 8, 1.0))
    running = [admission.enter("busy 1", cost=250), admission.enter("busy 2", cost=250)]
    line = [admission.enter(f"heavy {n}", cost=250) for n in range(2)]
    with pytest.raises(Overloaded):  # a third heavy request ranks as they do and came later
        admission.enter("heavy 2", cost=250)
    normal = admission.enter("normal", cost=8)
    assert isinstance(line[1].refused, Overloaded)  # the later heavy one leaves for the cheap one
    admission.release(running[0])
    assert normal.started is not None and line[0].started is None


def test_a_client_whose_answers_hold_less_than_their_tokens_predict_is_expected_to_hold_less():
    """A client asking the same long question (its prompt cached: 1 s for 250 tokens, 8 s less than the tokens
    predict) goes before one whose short questions took 3 s (1.7 s more), though its question has more tokens."""
    clock = Clock()
    admission = _taught(clock, ("cached", 250, 1.0), ("cached", 250, 1.0), ("cached", 250, 1.0), ("slow", 10, 3.0))
    running = [admission.enter("busy 1"), admission.enter("busy 2")]
    slow = admission.enter("slow", cost=10)
    cached = admission.enter("cached", cost=250)
    admission.release(running[0])
    assert (cached.started, slow.started) == (clock.now, None)


def test_an_expensive_request_that_waited_long_enough_goes_before_a_fresh_cheap_one():
    clock = Clock()
    admission = Admission(1, 2, clock=clock, max_wait_s=600, hold_model=FixedHolds())  # 250 tokens: 8 s more
    running = admission.enter("busy")
    heavy = admission.enter("heavy", cost=250)
    clock.now += 8 / AGING - 1  # not quite long enough: a cheap request arriving now still goes first
    first = admission.enter("normal")
    admission.release(running)
    assert (first.started, heavy.started) == (clock.now, None)
    clock.now += 2  # now it has waited its 8 s over AGING: no cheap request passes it any more
    second = admission.enter("other")
    admission.release(first)
    assert (heavy.started, second.started) == (clock.now, None)


def test_a_ticket_released_while_it_waits_leaves_the_line_and_releases_once():
    admission = Admission(1, 2)
    running = admission.enter("a")
    waiting = admission.enter("b")
    assert (admission.running, admission.waiting) == (1, 1)
    admission.release(waiting)
    assert (admission.running, admission.waiting) == (1, 0)
    admission.release(running)
    admission.release(running)
    assert admission.running == 0
    with pytest.raises(ValueError, match="tokens"):
        admission.enter("a", cost=-1)


def test_eight_clients_sending_the_heaviest_question_never_hold_a_normal_one_behind_more_than_one_answer():
    """``bench/heavy_questions.py --clients 8 --duration 60`` in fake time: eight clients send a 256-token question
    (a cold 11 s, then 7 s each) in a loop, one client a 6-token question (0.6 s; two of its questions cold, 4 s)
    in a loop; a refused request waits its Retry-After and is sent again. The normal client is never refused and
    never waits for more than one heavy answer to end (7 s), so an answer takes at most that and its own time; the
    heavy clients are still served, every one of them."""
    clock = Clock()
    admission = Admission(2, 2, clock=clock)
    for tokens, seconds in ((6, 4.2), (6, 0.2), (256, 11.0), (256, 3.3)):  # the benchmark's single questions
        admission.hold_model.observe(tokens, seconds)
    events: list = []
    order = itertools.count()
    normal_asked: list[float] = []
    normal_waits: list[float] = []  # first try to answer
    normal_starts: list[float] = []  # first try to a place
    served: dict[str, int] = {}
    waiting: dict[str, object] = {}
    heavy_cold = [True]

    def hold(client: str) -> float:
        if client == "normal":
            return 4.0 if len(normal_waits) in (1, 2) else 0.6
        seconds = 11.0 if heavy_cold[0] else 7.0
        heavy_cold[0] = False
        return seconds

    def at(when: float, what: str, client: str, ticket=None) -> None:
        heapq.heappush(events, (when, next(order), what, client, ticket))

    def settle() -> None:  # waiting tickets given a place, or refused, by what just happened
        for client, ticket in list(waiting.items()):
            if ticket.started is not None:
                del waiting[client]
                if client == "normal":
                    normal_starts.append(ticket.started - normal_asked[-1])
                at(ticket.started + hold(client), "done", client, ticket)
            elif ticket.refused is not None:
                del waiting[client]
                at(clock.now + ticket.refused.retry_after, "ask", client)

    for client in ["normal"] + [f"heavy {n}" for n in range(8)]:
        at(clock.now, "ask", client)
    end = clock.now + 60
    while events and events[0][0] <= end:
        clock.now, _, what, client, ticket = heapq.heappop(events)
        if what == "ask":
            if client == "normal" and len(normal_asked) == len(normal_waits):
                normal_asked.append(clock.now)
            try:
                ticket = admission.enter(client, cost=6 if client == "normal" else 256)
            except Overloaded as refused:
                at(clock.now + refused.retry_after, "ask", client)
                continue
            waiting[client] = ticket  # settle() sees it started, if it did
        else:
            admission.release(ticket)
            served[client] = served.get(client, 0) + 1
            if client == "normal":
                normal_waits.append(clock.now - normal_asked[-1])
            at(clock.now, "ask", client)
        settle()
    assert len(normal_waits) >= 10
    assert len(normal_starts) >= len(normal_asked) - 1  # once asked, never refused (the last may be waiting)
    assert max(normal_starts) <= 7
    assert max(normal_waits) <= 7 + 4
    assert sorted(served) == ["heavy 0", "heavy 1", "heavy 2", "heavy 3", "heavy 4", "heavy 5", "heavy 6",
                              "heavy 7", "normal"]
