"""An LM server (``KGQA_LM_URL``) that fails reaches clients as 502 ``lm_server_error``, saying why but not where."""

from __future__ import annotations

import json

import pytest

from app import create_app
from kgqa.errors import LMServerError
from kgqa.records import StreamEvent
from kgqa.settings import Settings

SERVER = "http://10.1.2.3:8000/v1"
FAILURE = LMServerError(SERVER, "cannot connect (Connection refused) (after 3 attempts)")


class FailingServerEngine:
    """The engine's interface, its LM server failing before the first token or after it."""

    ready = True

    def __init__(self, after_first_token: bool):
        self.after_first_token = after_first_token

    def warm_up(self) -> None:
        pass

    def ask(self, question, **knobs):
        raise FAILURE

    def ask_stream(self, question, **knobs):
        def events():
            if self.after_first_token:
                yield StreamEvent(type="token", text="Montgomery")
            raise FAILURE
        return events()


def client_for(tmp_path, after_first_token: bool):
    app = create_app(Settings(data_dir=tmp_path, rate_limit_per_minute=0), engine=FailingServerEngine(after_first_token))
    app.extensions["kgqa_runtime"].wait_ready(10)
    return app.test_client()


@pytest.mark.parametrize("stream", [False, True])
def test_a_failure_before_any_answer_is_a_502_without_the_servers_address(tmp_path, stream):
    response = client_for(tmp_path, after_first_token=False).post(
        "/api/v1/ask", json={"question": "What is the capital of Alabama?", "stream": stream})
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error == {"code": "lm_server_error",
                     "message": "the language model server failed: cannot connect (Connection refused) (after 3 attempts)"}
    assert "10.1.2.3" not in response.get_data(as_text=True)


def test_a_failure_mid_stream_is_an_error_event(tmp_path):
    response = client_for(tmp_path, after_first_token=True).post(
        "/api/v1/ask", json={"question": "What is the capital of Alabama?", "stream": True})
    assert response.status_code == 200
    events = [json.loads(line[6:]) for line in response.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "lm_server_error"
    assert "10.1.2.3" not in json.dumps(events)
