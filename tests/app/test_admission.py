"""Admission (app/runtime.py): places shared fairly between clients, a bounded line, refusals with Retry-After.

A fake clock drives the hold-time estimate; the waiting requests are threads, and each test
asserts who was admitted in which order, never how long anything took.
"""

from __future__ import annotations

import threading
import time

import pytest
from tests.helpers.app_fakes import QUESTION, FakeEngine, make_app

from app.runtime import Admission
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
