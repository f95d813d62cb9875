"""``kgqa.usage``: model requests made inside ``metering`` are counted on its meter, and only there."""

from __future__ import annotations

import threading

from kgqa.usage import TokenMeter, metering, record


def test_requests_inside_the_block_are_counted_and_others_are_not():
    meter = TokenMeter()
    record(5, 5)  # no meter: nothing to count on
    with metering(meter):
        record(120, 30)
        record(80, 12)
        other = threading.Thread(target=record, args=(1000, 1000))  # another thread has its own context
        other.start()
        other.join()
    record(7, 7)
    assert (meter.prompt_tokens, meter.completion_tokens, meter.requests) == (200, 42, 2)
