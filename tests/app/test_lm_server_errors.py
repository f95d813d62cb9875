"""An LM server (``KGQA_LM_URL``) that fails reaches clients as 502 ``lm_server_error``, saying why but not where;
one that is down is never remembered as down; a stream whose LM server dies mid-answer still ends well-formed."""

from __future__ import annotations

import json
import time

import pytest
from tests.helpers.app_fakes import sse_events
from tests.helpers.fake_lm_server import FakeLMServer

from app import create_app
from kgqa.errors import LMServerError, LMServerUnavailable
from kgqa.records import StreamEvent
from kgqa.settings import Settings
from models.lm.remote import ServerHealth

SERVER = "http://10.1.2.3:8000/v1"
FAILURE = LMServerUnavailable(SERVER, "cannot connect (Connection refused) (after 3 attempts)")
QUESTION = "What is the capital of Alabama?"


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


def client_for(tmp_path, after_first_token: bool, engine=None):
    engine = engine or FailingServerEngine(after_first_token)
    app = create_app(Settings(data_dir=tmp_path, rate_limit_per_minute=0), engine=engine)
    app.extensions["kgqa_runtime"].wait_ready(10)
    return app.test_client()


def data_lines(body: str) -> list[str]:
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("stream", [False, True])
def test_a_failure_before_any_answer_is_a_502_without_the_servers_address(tmp_path, stream):
    response = client_for(tmp_path, after_first_token=False).post(
        "/api/v1/ask", json={"question": QUESTION, "stream": stream})
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error == {"code": "lm_server_error", "type": "server_error",
                     "message": "the language model server failed: cannot connect (Connection refused) (after 3 attempts)"}
    assert "10.1.2.3" not in response.get_data(as_text=True)


def test_a_failure_mid_stream_ends_with_a_result_event_carrying_the_error(tmp_path):
    response = client_for(tmp_path, after_first_token=True).post(
        "/api/v1/ask", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200
    events = [json.loads(line) for line in data_lines(response.get_data(as_text=True))]
    assert [event["type"] for event in events] == ["result"]
    assert events[-1]["result"] is None and events[-1]["error"]["code"] == "lm_server_error"
    assert "10.1.2.3" not in json.dumps(events)


def test_a_failure_mid_openai_stream_ends_with_a_finish_reason_and_done(tmp_path):
    response = client_for(tmp_path, after_first_token=True).post(
        "/v1/chat/completions", json={"model": "kgqa", "stream": True, "messages": [{"role": "user", "content": QUESTION}]})
    assert response.status_code == 200
    lines = data_lines(response.get_data(as_text=True))
    assert lines[-1] == "[DONE]"
    error, finish = json.loads(lines[-3]), json.loads(lines[-2])
    assert error["error"]["code"] == "lm_server_error" and "10.1.2.3" not in lines[-3]
    assert finish["object"] == "chat.completion.chunk" and finish["choices"][0]["finish_reason"] == "stop"


class UnreachableGenerator:
    def health(self) -> ServerHealth:
        return ServerHealth(reachable=False, reason="cannot connect (Connection refused) (after 3 attempts)",
                            checked_at=time.monotonic())


def test_readiness_says_degraded_while_the_lm_server_is_unavailable(tmp_path):
    engine = FailingServerEngine(after_first_token=False)
    engine.generator = UnreachableGenerator()
    ready = client_for(tmp_path, False, engine).get("/readyz")
    assert ready.status_code == 200  # facts still answer: the service stays in rotation, and says what it lacks
    assert ready.json["status"] == "degraded"
    assert ready.json["lm"] == {"reachable": False, "reason": "cannot connect (Connection refused) (after 3 attempts)"}


# -- the real engine on the sample knowledge base, its LM server down at start ----------------------


@pytest.fixture
def lm_server():
    server = FakeLMServer()
    yield server
    server.stop()


def serve_on(sample_kb: Settings, url: str):
    app = create_app(sample_kb.with_overrides(lm_url=url, lm_retries=1, rate_limit_per_minute=0))
    runtime = app.extensions["kgqa_runtime"]
    assert runtime.wait_ready(600), runtime.error
    runtime.engine().generator.backoff_s = 0.05
    return app.test_client(), runtime


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.slow  # the sample knowledge base (built once per session without KGQA_TEST_KB_DIR)
def test_an_lm_server_down_at_start_is_tried_again_and_used_once_it_is_up(sample_kb, lm_server):
    client, runtime = serve_on(sample_kb, lm_server.url)  # nothing listens there yet: the warm-up still succeeds
    fact = {"question": "Who wrote Animal Farm?"}  # an infobox fact answers outright: no generation
    drafted = {"question": "What did Albert Einstein develop?"}  # no fact answers: the LM drafts
    degraded = client.get("/readyz")
    assert degraded.status_code == 200 and degraded.json["status"] == "degraded"
    assert not degraded.json["lm"]["reachable"] and "cannot connect" in degraded.json["lm"]["reason"]
    answered = client.post("/api/v1/ask", json=fact)
    assert answered.status_code == 200 and "George Orwell" in answered.json["answer"]
    refused = client.post("/api/v1/ask", json=drafted)
    assert refused.status_code == 502 and refused.json["error"]["code"] == "lm_server_error"
    assert lm_server.url.split("//")[1] not in refused.get_data(as_text=True)

    lm_server.start()
    generated = client.post("/api/v1/ask", json=drafted)  # the first request after its return
    assert generated.status_code == 200, generated.json
    assert generated.json["generated"].startswith("Albert Einstein developed") and generated.json["model"] == "fake-model"
    assert client.post("/api/v1/ask", json=fact).status_code == 200
    wait_for(lambda: client.get("/readyz").json["status"] == "ready")
    assert client.get("/readyz").json["lm"] == {"reachable": True, "reason": ""}

    lm_server.stop()  # gone again: facts still answer, readiness notices
    assert client.post("/api/v1/ask", json=fact).status_code == 200
    assert client.post("/api/v1/ask", json=drafted).status_code == 502
    wait_for(lambda: client.get("/readyz").json["status"] == "degraded")


@pytest.mark.slow  # the sample knowledge base (built once per session without KGQA_TEST_KB_DIR)
def test_an_lm_server_dying_mid_answer_ends_both_streams_well_formed(sample_kb, lm_server):
    lm_server.cut_after = 3  # three words, then the connection drops
    lm_server.start()
    client, runtime = serve_on(sample_kb, lm_server.url)
    question = "What did Albert Einstein develop?"
    sse = client.post("/api/v1/ask", json={"question": question, "stream": True})
    assert sse.status_code == 200
    last = json.loads(sse_events(sse.get_data(as_text=True))[-1])
    assert last["type"] == "result" and last["result"] is None
    assert last["error"]["code"] == "lm_server_error" and "mid-answer" in last["error"]["message"]

    chat = client.post("/v1/chat/completions", json={
        "model": "kgqa", "stream": True, "messages": [{"role": "user", "content": question}]})
    lines = data_lines(chat.get_data(as_text=True))
    assert lines[-1] == "[DONE]" and json.loads(lines[-2])["choices"][0]["finish_reason"] == "stop"
    assert json.loads(lines[-3])["error"]["code"] == "lm_server_error"
    assert runtime.admission.running == 0
