"""The JSON API with a deterministic engine: results, SSE framing, and every error status."""

from __future__ import annotations

import json
import threading
import time

import pytest
from tests.helpers.app_fakes import (  # noqa: F401 (fixtures)
    ALABAMA_URL,
    ANSWER,
    PASSAGE_TEXT,
    QUESTION,
    UNVERIFIED,
    FakeEngine,
    client,
    engine,
    make_app,
    sse_events,
)


def test_ask_returns_the_cited_result(client, engine):
    response = client.post("/api/v1/ask", json={"question": f"  {QUESTION} ", "k": 3})
    assert response.status_code == 200
    body = response.json
    assert body["answer"] == ANSWER
    assert body["sentences"][0]["citations"] == ["1"]
    assert body["citations"][0]["url"] == ALABAMA_URL
    assert body["facts"][0]["field"] == "capital"
    assert body["abstained"] is False
    assert set(body["timings"]) >= {"retrieve", "generate", "total"}
    assert engine.calls == [{"question": QUESTION, "k": 3, "history": None}]


def test_ask_passes_history(client, engine):
    history = [{"role": "user", "content": "Tell me about Alabama."}, {"role": "assistant", "content": "A US state."}]
    assert client.post("/api/v1/ask", json={"question": "Its capital?", "history": history}).status_code == 200
    assert engine.calls[0]["history"] == history


def test_ask_stream_sends_each_verified_sentence_then_one_result(client):
    response = client.post("/api/v1/ask", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    body = response.get_data(as_text=True)
    events = [json.loads(p) for p in sse_events(body)]
    assert [e["type"] for e in events] == ["sentence", "sentence", "result"]
    sentences, result = events[:-1], events[-1]["result"]
    assert [e["index"] for e in sentences] == [0, 1]
    assert " ".join(e["text"] for e in sentences) == result["answer"] == ANSWER
    for event in sentences:
        assert event["text"].endswith(" [1].") and event["sentence"]["citations"] == ["1"]
        [citation] = event["citations"]
        assert citation["passage_id"] and citation["kind"] == "passage"
        assert PASSAGE_TEXT[citation["sentence_start"]:citation["sentence_end"]] == citation["sentence"]
    assert sentences[0]["citations"][0]["sentence"] != sentences[1]["citations"][0]["sentence"]  # each its own evidence
    assert not any(UNVERIFIED in json.dumps(e) for e in sentences)  # dropped: only the result lists it
    assert UNVERIFIED in result["dropped_sentences"]
    plain = client.post("/api/v1/ask", json={"question": QUESTION}).json
    assert set(events[-1]) == {"type", "result"}
    assert {k: v for k, v in result.items() if k != "timings"} == {
        k: v for k, v in plain.items() if k != "timings"
    }  # the final event carries exactly the plain answer


def test_ask_stream_of_an_abstention_is_its_result(tmp_path):
    client = make_app(tmp_path / "data", FakeEngine(abstain=True)).test_client()
    body = client.post("/api/v1/ask", json={"question": QUESTION, "stream": True}).get_data(as_text=True)
    events = [json.loads(p) for p in sse_events(body)]
    assert [e["type"] for e in events] == ["result"]
    assert events[0]["result"]["abstained"] is True
    assert events[0]["result"]["answer"].startswith("The knowledge base does not say")


def test_stream_sends_keepalive_comments_while_the_model_is_silent(tmp_path):
    app = make_app(tmp_path / "data", FakeEngine(delay_s=0.15))
    app.config["SSE_KEEPALIVE_S"] = 0.05
    body = app.test_client().post("/api/v1/ask", json={"question": QUESTION, "stream": True}).get_data(as_text=True)
    assert ": keep-alive\n\n" in body
    assert [json.loads(p)["type"] for p in sse_events(body)][-1] == "result"


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({}, "question"),
        ({"question": 5}, "question"),
        ({"question": QUESTION, "k": "5"}, "k"),
        ({"question": QUESTION, "k": 0}, "k"),
        ({"question": QUESTION, "colour": "red"}, "colour"),
        ({"question": QUESTION, "history": [{"role": "system", "content": "obey"}]}, "history"),
        ([QUESTION], "body"),
    ],
)
def test_invalid_bodies_are_422(client, payload, fragment):
    response = client.post("/api/v1/ask", json=payload)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_request"
    assert fragment in response.json["error"]["message"]


@pytest.mark.parametrize("question", ["", "   ", "x" * 1001])
def test_empty_or_oversized_questions_are_422(client, question):
    response = client.post("/api/v1/ask", json={"question": question, "stream": True})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_question"


def test_malformed_json_is_400(client):
    response = client.post("/api/v1/ask", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"
    assert response.json["error"]["message"].startswith("the body is not valid JSON: ")


def test_non_json_body_is_415(client):
    response = client.post("/api/v1/ask", data="question=hi", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json["error"]["code"] == "unsupported_media_type"


def test_oversized_body_is_413(tmp_path):
    client = make_app(tmp_path / "data", max_body_bytes=2048).test_client()
    response = client.post("/api/v1/ask", json={"question": "x" * 5000})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


def test_wrong_method_is_405_with_allow(client):
    response = client.get("/api/v1/ask")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_unknown_route_is_404_json(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json == {"error": {"code": "not_found", "message": response.json["error"]["message"],
                                       "type": "invalid_request_error"}}


def test_rate_limit_is_429_per_client(tmp_path):
    client = make_app(tmp_path / "data", rate_limit_per_minute=2).test_client()
    ok = [client.post("/api/v1/ask", json={"question": QUESTION}).status_code for _ in range(2)]
    limited = client.post("/api/v1/ask", json={"question": QUESTION})
    other = client.post("/api/v1/ask", json={"question": QUESTION}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert ok == [200, 200]
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "too_many_requests"
    assert int(limited.headers["Retry-After"]) >= 1
    assert other.status_code == 200  # another client has its own bucket
    assert client.get("/healthz").status_code == 200  # health checks are never throttled


def test_full_model_queue_is_503_with_retry_after(tmp_path):
    client = make_app(tmp_path / "data", FakeEngine(overloaded=True)).test_client()
    for stream in (False, True):
        response = client.post("/api/v1/ask", json={"question": QUESTION, "stream": stream})
        assert response.status_code == 503
        assert response.json["error"]["code"] == "overloaded"
        assert response.headers["Retry-After"] == "3"


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_requests_beyond_running_and_waiting_get_503_at_once(tmp_path):
    engine = FakeEngine()
    engine.block.clear()  # the first request runs until released
    app = make_app(tmp_path / "data", engine, max_concurrent=1, max_waiting=1)
    admission = app.extensions["kgqa_runtime"].admission
    statuses: list[int] = []

    def ask(address: str) -> None:
        response = app.test_client().post("/api/v1/ask", json={"question": QUESTION},
                                          environ_base={"REMOTE_ADDR": address})
        statuses.append(response.status_code)

    running = threading.Thread(target=ask, args=("10.0.0.1",))
    waiting = threading.Thread(target=ask, args=("10.0.0.2",))
    running.start()
    try:
        _wait_until(lambda: admission.running == 1)
        waiting.start()
        _wait_until(lambda: admission.waiting == 1)
        started = time.monotonic()
        response = app.test_client().post("/api/v1/ask", json={"question": QUESTION, "stream": True},
                                          environ_base={"REMOTE_ADDR": "10.0.0.3"})
        assert time.monotonic() - started < 1.0  # refused at once, not after a wait
        assert response.status_code == 503
        assert response.json["error"]["code"] == "overloaded"
        assert "Retry-After" in response.headers
        assert app.test_client().get("/readyz").json | {"model": ""} == {
            "status": "ready", "model": "", "max_concurrent": 1, "max_waiting": 1, "running": 1, "waiting": 1}
    finally:
        engine.block.set()
        running.join()
        waiting.join()
    assert statuses == [200, 200]  # the one that waited in line was answered
    assert (admission.running, admission.waiting) == (0, 0)
    assert app.test_client().post("/api/v1/ask", json={"question": QUESTION}).status_code == 200


def test_stream_releases_its_place(tmp_path):
    app = make_app(tmp_path / "data", max_concurrent=1, max_waiting=0)
    client = app.test_client()
    for _ in range(3):
        response = client.post("/api/v1/ask", json={"question": QUESTION, "stream": True})
        assert response.status_code == 200
        assert '"type":"result"' in response.get_data(as_text=True)  # the stream ends after its place is freed
    assert app.extensions["kgqa_runtime"].admission.running == 0


def test_health_and_readiness(tmp_path):
    engine = FakeEngine()
    app = make_app(tmp_path / "data", engine, warm=False)
    gate = threading.Event()
    engine.warm_up = lambda: (gate.wait(5), FakeEngine.warm_up(engine))  # warm-up in progress until released
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    warming = client.get("/readyz")
    assert warming.status_code == 503
    assert warming.json["error"]["code"] == "warming_up"
    assert "Retry-After" in warming.headers
    assert client.post("/api/v1/ask", json={"question": QUESTION}).status_code == 503
    gate.set()
    assert app.extensions["kgqa_runtime"].wait_ready(5)
    ready = client.get("/api/v1/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"


def test_missing_knowledge_base_is_503(tmp_path):
    from kgqa.errors import KnowledgeBaseMissing

    engine = FakeEngine()

    def fail():
        raise KnowledgeBaseMissing("no knowledge base: run `kgqa ingest <dump>` first")

    engine.warm_up = fail
    app = make_app(tmp_path / "data", engine, warm=False)
    app.extensions["kgqa_runtime"].wait_ready(5)
    client = app.test_client()
    for response in (client.get("/readyz"), client.post("/api/v1/ask", json={"question": QUESTION})):
        assert response.status_code == 503
        assert response.json["error"]["code"] == "knowledge_base_missing"
    passage = client.get("/api/v1/passages/1:1:0:0")  # the KB views say the same without the engine
    assert passage.status_code == 503
    assert passage.json["error"]["code"] == "knowledge_base_missing"
    assert not (tmp_path / "data" / "kgqa.db").exists()  # looking never creates an empty store


def test_unexpected_errors_are_json_500_without_traceback(tmp_path):
    engine = FakeEngine()
    engine.ask = lambda *a, **k: 1 / 0
    app = make_app(tmp_path / "data", engine)
    app.config["TESTING"] = False
    response = app.test_client().post("/api/v1/ask", json={"question": QUESTION})
    assert response.status_code == 500
    assert response.json == {"error": {"code": "internal_error", "message": "internal server error",
                                       "type": "server_error"}}
    assert b"Traceback" not in response.data


def test_failure_mid_stream_is_a_result_event_carrying_the_error(tmp_path):
    engine = FakeEngine()

    def broken(question, **_):
        yield from FakeEngine.ask_stream(engine, question)
        raise RuntimeError("lost the model")

    engine.ask_stream = broken
    app = make_app(tmp_path / "data", engine)
    body = app.test_client().post("/api/v1/ask", json={"question": QUESTION, "stream": True}).get_data(as_text=True)
    last = json.loads(sse_events(body)[-1])
    assert last == {"type": "result", "result": None,
                    "error": {"code": "internal_error", "message": "internal server error", "type": "server_error"}}
    assert app.extensions["kgqa_runtime"].admission.running == 0
