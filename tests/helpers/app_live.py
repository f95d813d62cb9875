"""Run the real server (waitress, the same as ``kgqa serve``) on 127.0.0.1 and a free port, in a thread."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest


@contextmanager
def live_server(settings, *, engine=None, ready_timeout: float = 600.0, threads: int = 8):
    """Yields the base URL once the engine is warm; stops the server afterwards."""
    from app import create_app
    from app.serve import build_server

    app = create_app(settings, engine=engine)
    server = build_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, name="kgqa-test-server", daemon=True)
    thread.start()
    runtime = app.extensions["kgqa_runtime"]
    try:
        if not runtime.wait_ready(ready_timeout):
            pytest.fail(f"the engine did not become ready: {runtime.error!r}")
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
        # A single listener's close() leaves its worker threads running, and with them the app and its
        # engine (the model) for the rest of the session: stop them as MultiSocketServer.close() does.
        server.task_dispatcher.shutdown()
