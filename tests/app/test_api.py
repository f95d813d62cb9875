"""The JSON API with a deterministic engine: results, SSE framing, and every error status."""

from __future__ import annotations

import json
import threading

import pytest
from tests.helpers.app_fakes import TOKENS, FakeEngine, client, engine, make_app, sse_events  # noqa: F401 (fixtures)

QUESTION = "What is the capital of Alabama?"


def test_ask_returns_the_cited_result(client, engine):
    response = client.post("/api/v1/ask", json={"question": f"  {QUESTION} ", "k": 3})
    assert response.status_code == 200
    body = response.json
    assert body["answer"] == "Montgomery is the capital of Alabama [1]."
    assert body["sentences"][0]["citations"] == ["1"]
    assert body["citations"][0]["url"] == "https://en.wikipedia.org/wiki/Alabama"
    assert body["facts"][0]["field"] == "capital"
    assert body["abstained"] is False
    assert set(body["timings"]) >= {"retrieve", "generate", "total"}
    assert engine.calls == [{"question": QUESTION, "k": 3, "history": None}]


def test_ask_passes_history(client, engine):
    history = [{"role": "user", "content": "Tell me about Alabama."}, {"role": "assistant", "content": "A US state."}]
    assert client.post("/api/v1/ask", json={"question": "Its capital?", "history": history}).status_code == 200
    assert engine.calls[0]["history"] == history


def test_ask_stream_sends_tokens_then_one_result(client):
    response = client.post("/api/v1/ask", json={"question": QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events = [json.loads(p) for p in sse_events(response.get_data(as_text=True))]
    assert [e["type"] for e in events] == ["token"] * len(TOKENS) + ["result"]
    streamed = "".join(e["text"] for e in events[:-1])
    assert streamed == "".join(TOKENS) == events[-1]["result"]["generated"]
    assert events[-1]["result"]["citations"][0]["id"] == "1"
    assert all(set(e) == {"type", "text"} for e in events[:-1])
    plain = client.post("/api/v1/ask", json={"question": QUESTION}).json
    assert set(events[-1]) == {"type", "result"}
    assert {k: v for k, v in events[-1]["result"].items() if k != "timings"} == {
        k: v for k, v in plain.items() if k != "timings"
    }  # the final event carries exactly the plain answer


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
    assert response.json == {"error": {"code": "not_found", "message": response.json["error"]["message"]}}


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


def test_requests_beyond_the_slots_get_503_at_once(tmp_path):
    engine = FakeEngine()
    engine.block.clear()  # the first request holds its slot until released
    app = make_app(tmp_path / "data", engine, queue_size=1)
    holder = threading.Thread(target=lambda: app.test_client().post("/api/v1/ask", json={"question": QUESTION}))
    holder.start()
    try:
        for _ in range(100):
            if app.extensions["kgqa_runtime"].slots.in_use == 1:
                break
            threading.Event().wait(0.01)
        response = app.test_client().post("/api/v1/ask", json={"question": QUESTION})
        assert response.status_code == 503
        assert response.json["error"]["code"] == "overloaded"
        assert "Retry-After" in response.headers
    finally:
        engine.block.set()
        holder.join()
    assert app.extensions["kgqa_runtime"].slots.in_use == 0
    assert app.test_client().post("/api/v1/ask", json={"question": QUESTION}).status_code == 200


def test_stream_releases_its_slot(tmp_path):
    app = make_app(tmp_path / "data", queue_size=1)
    client = app.test_client()
    for _ in range(3):
        response = client.post("/api/v1/ask", json={"question": QUESTION, "stream": True})
        assert response.status_code == 200
        assert '"type":"result"' in response.get_data(as_text=True)  # the stream ends after the slot is freed
    assert app.extensions["kgqa_runtime"].slots.in_use == 0


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
    assert response.json == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert b"Traceback" not in response.data


def test_failure_mid_stream_is_an_error_event(tmp_path):
    engine = FakeEngine()

    def broken(question, **_):
        yield from FakeEngine.ask_stream(engine, question)
        raise RuntimeError("lost the model")

    engine.ask_stream = broken
    app = make_app(tmp_path / "data", engine)
    body = app.test_client().post("/api/v1/ask", json={"question": QUESTION, "stream": True}).get_data(as_text=True)
    last = json.loads(sse_events(body)[-1])
    assert last == {"type": "error", "error": {"code": "internal_error", "message": "internal server error"}}
    assert app.extensions["kgqa_runtime"].slots.in_use == 0
