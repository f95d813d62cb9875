"""``kgqa.cancel``: a scope cancelled from one thread reaches the code running inside it in another."""

from __future__ import annotations

import threading

import pytest

from kgqa.cancel import CancelScope, Cancelled, check_current, current_scope, running_in


def test_callbacks_run_once_when_cancelled_and_at_once_when_registered_later():
    scope, calls = CancelScope(), []
    scope.on_cancel(lambda: calls.append("early"))
    assert calls == [] and not scope.cancelled
    scope.cancel()
    scope.cancel()
    assert calls == ["early"] and scope.cancelled
    scope.on_cancel(lambda: calls.append("late"))
    assert calls == ["early", "late"]


def test_the_scope_is_seen_only_inside_running_in_and_only_in_its_thread():
    scope, seen = CancelScope(), []
    assert current_scope() is None
    with running_in(scope):
        assert current_scope() is scope and check_current() is scope
        worker = threading.Thread(target=lambda: seen.append(current_scope()))
        worker.start()
        worker.join()
    assert current_scope() is None and seen == [None]


def test_check_current_raises_once_the_scope_is_cancelled():
    scope = CancelScope()
    with running_in(scope):
        scope.cancel()
        with pytest.raises(Cancelled, match="client went away"):
            check_current()
    assert check_current() is None  # outside any scope nothing is cancelled
