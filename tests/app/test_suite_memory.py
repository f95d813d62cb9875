"""The test run's own memory: the bound each test is held to, and the release of models a module left behind
(``tests/conftest.py``). The service's tests are where a leaked model cost most: a served app's engine has no
``close``, so each module that warmed one kept its LM for the rest of the session."""

from __future__ import annotations

import threading
import weakref

import numpy as np
from tests.conftest import release_orphaned_models, rss_overrun

from models.lm.batching import BatchingQueue


def test_the_test_that_crosses_the_bound_is_the_one_named():
    assert rss_overrun((300, 2000, 0), (300, 7000, 0), 6144).startswith("the test process peaked at 7000 MB")
    assert rss_overrun((300, 2000, 0), (300, 6000, 0), 6144) is None  # under the bound
    assert rss_overrun((300, 6500, 0), (300, 7000, 0), 6144) is None  # an earlier test crossed it and was named
    assert rss_overrun((300, 2000, 100), (300, 2000, 9000), 6144).startswith("a child process peaked at 9000 MB")
    assert rss_overrun((300, 2000, 0), (300, 90000, 0), 0) is None  # 0: no bound


class _Model:
    """A generator's shape: a worker thread whose target is one of its own methods, holding a large model."""

    def __init__(self, megabytes: int):
        self.weights = np.ones(megabytes * 2**20 // 8)
        self.queue = BatchingQueue(self.run_batch, batch_size=1)
        self.queue.start()

    def run_batch(self, requests, join) -> None:  # pragma: no cover - never asked anything
        pass


def _worker_running(queue: BatchingQueue) -> bool:
    return any(t.name == "lm-batcher" and t.is_alive() and t is queue._thread for t in threading.enumerate())


def test_a_model_nothing_holds_is_stopped_and_freed_and_one_still_held_is_not():
    orphan, kept = _Model(64), _Model(1)
    gone, orphan_queue = weakref.ref(orphan), orphan.queue
    del orphan  # what a module fixture's engine is after its teardown: held by its worker thread alone
    assert gone() is not None and _worker_running(orphan_queue)  # the thread keeps it alive
    del orphan_queue
    assert release_orphaned_models() == 1
    assert gone() is None  # stopped and collected: its 64 MB are free
    assert _worker_running(kept.queue)  # still held by this test: left running
    kept.queue.close()


def test_a_test_that_crosses_the_bound_fails_at_its_teardown_naming_itself(tmp_path):
    """A pytest run, with this suite's conftest as its plugin, of a test holding 600 MB, bounded at 500 MB."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "test_big.py").write_text(
        "import numpy as np\n\n"
        "def test_small():\n    assert np.ones(10).sum() == 10\n\n"
        "def test_big():\n    held = np.ones(600 * 2**20 // 8)\n    assert held[-1] == 1\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "KGQA_TEST_MAX_RSS_MB": "500"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_big.py")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 error" in run.stdout and "ERROR at teardown of test_big" in run.stdout, run.stdout
    assert "over the 500 MB bound (KGQA_TEST_MAX_RSS_MB)" in run.stdout
