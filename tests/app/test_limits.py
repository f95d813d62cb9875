"""The rate limiter, the verified answer stream and the SSE helpers on their own."""

from __future__ import annotations

import time

import pytest
from tests.helpers.app_fakes import ANSWER, FakeEngine, fake_result

from app.answer_stream import VerifiedAnswer, verified_events
from app.limits import TokenBucketLimiter
from app.sse import KEEPALIVE, BackgroundStream, sse_data, with_keepalives


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_continuously():
    clock = Clock()
    limiter = TokenBucketLimiter(60, clock=clock)  # one token per second
    assert [limiter.acquire("a") for _ in range(60)] == [0.0] * 60
    assert limiter.acquire("a") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # buckets are per client


def test_bucket_forgets_idle_clients_beyond_its_bound():
    limiter = TokenBucketLimiter(1, clock=Clock(), max_keys=2)
    for key in ("a", "b", "c"):
        limiter.acquire(key)
    assert limiter.acquire("a") == 0.0  # "a" was evicted, so it starts with a full bucket again
    assert limiter.acquire("c") > 0


def test_sse_data_is_one_line_per_event():
    assert sse_data({"text": "a\nb"}) == 'data: {"text":"a\\nb"}\n\n'
    assert sse_data("[DONE]") == "data: [DONE]\n\n"


def test_background_stream_reraises_in_the_consumer_and_runs_on_done():
    done = []

    def source():
        yield 1
        raise ValueError("boom")

    stream = BackgroundStream(source(), on_done=lambda: done.append(True)).start()
    assert stream.next() == 1
    with pytest.raises(ValueError, match="boom"):
        stream.next()
    assert done == [True]


def test_keepalives_fill_silences():
    def slow():
        yield "a"
        time.sleep(0.2)
        yield "b"

    stream = BackgroundStream(slow()).start()
    items = list(with_keepalives(stream, stream.next(), interval=0.05))
    assert items[0] == "a" and items[-1] == "b"
    assert KEEPALIVE in items[1:-1]


def test_cancel_stops_the_source_and_frees_its_slot():
    released = []

    def endless():
        while True:
            time.sleep(0.01)
            yield "x"

    stream = BackgroundStream(endless(), on_done=lambda: released.append(True)).start()
    stream.next()
    stream.cancel()
    deadline = time.monotonic() + 2
    while not released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert released == [True]


def _engine_stream(engine: FakeEngine) -> BackgroundStream:
    engine.warm_up()
    return BackgroundStream(engine.ask_stream("What is the capital of Alabama?")).start()


def test_verified_events_drop_tokens_and_fill_silences():
    stream = _engine_stream(FakeEngine(delay_s=0.03))
    items = list(verified_events(stream, stream.next(), interval=0.05))
    events = [item for item in items if item is not KEEPALIVE]
    assert [e.type for e in events] == ["sentence", "sentence", "result"]
    assert KEEPALIVE in items  # tokens kept coming, but nothing was sent for longer than the interval


def test_verified_answer_adds_up_to_the_final_answer():
    stream = _engine_stream(FakeEngine())
    answer, deltas, result = VerifiedAnswer(), [], None
    for item in verified_events(stream, stream.next(), interval=5):
        if item.type == "sentence":
            sent, delta = answer.add(item)
            assert sent.index == len(deltas) and delta.strip() == sent.text
            deltas.append(delta)
        else:
            result = item.result
    assert "".join(deltas) == answer.text == ANSWER == result.answer
    assert answer.remainder(result) == ""


def test_verified_answer_sends_an_abstention_whole():
    result = fake_result("Who won the 2030 World Cup?", abstained=True)
    assert VerifiedAnswer().remainder(result) == result.answer
