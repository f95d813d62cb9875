"""``/openapi.json`` describes exactly the routes the server has, with schemas from its models."""

from __future__ import annotations

import json
import re

from tests.helpers.app_fakes import make_app, sse_events

from app.openapi import app_routes


def _refs(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_spec_lists_every_route_and_only_those(tmp_path):
    app = make_app(tmp_path / "data")
    spec = app.test_client().get("/openapi.json").json
    assert spec["openapi"].startswith("3.2")  # 3.2 describes an event stream: itemSchema
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert documented == app_routes(app)
    assert app.test_client().get("/api/v1/openapi.json").json == spec


def test_every_reference_resolves(tmp_path):
    spec = make_app(tmp_path / "data").test_client().get("/openapi.json").json
    refs = _refs(spec)
    assert refs, "the spec references its component schemas"
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"], ref


def test_schemas_match_the_request_validation(tmp_path):
    client = make_app(tmp_path / "data").test_client()
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    ask = schemas["AskRequest"]
    assert ask["required"] == ["question"]
    assert ask["additionalProperties"] is False
    assert set(ask["properties"]) == {"question", "k", "stream", "history"}
    # a body with every documented field is accepted, one more field is not
    body = {"question": "What is the capital of Alabama?", "k": 2, "stream": False, "history": []}
    assert client.post("/api/v1/ask", json=body).status_code == 200
    assert client.post("/api/v1/ask", json={**body, "extra": 1}).status_code == 422
    result = client.post("/api/v1/ask", json=body).json
    assert set(result) <= set(schemas["QAResult"]["properties"])
    assert set(schemas["QAResult"]["required"]) <= set(result)
    chat = schemas["ChatCompletionRequest"]
    assert set(chat["required"]) == {"model", "messages"}
    assert "ChatCompletionChunk" in json.dumps(schemas)


def test_stream_events_are_the_documented_ones(tmp_path):
    client = make_app(tmp_path / "data").test_client()
    spec = client.get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    streamed = spec["paths"]["/api/v1/ask"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    data = streamed["itemSchema"]["properties"]["data"]  # an SSE event; its data line is the JSON
    assert data["contentMediaType"] == "application/json"
    assert data["contentSchema"] == {"$ref": "#/components/schemas/AskStreamEvent"}
    documented = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["AskStreamEvent"]["oneOf"]}
    assert documented == {"SentenceEvent", "ResultEvent"}  # a failure after the 200 is a result with its error
    body = client.post("/api/v1/ask", json={"question": "What is the capital of Alabama?", "stream": True})
    for payload in sse_events(body.get_data(as_text=True)):
        event = json.loads(payload)
        schema = schemas[{"sentence": "SentenceEvent", "result": "ResultEvent"}[event["type"]]]
        assert set(schema["required"]) <= set(event) <= set(schema["properties"])


def test_chat_completion_stream_ends_with_done(tmp_path):
    spec = make_app(tmp_path / "data").test_client().get("/openapi.json").json
    streamed = spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    data = streamed["itemSchema"]["properties"]["data"]
    assert data["if"] == {"const": "[DONE]"}  # the one data line that is not JSON
    assert data["else"]["contentSchema"] == {"$ref": "#/components/schemas/ChatCompletionStreamData"}
    assert streamed["schema"]["contains"]["properties"]["data"] == {"const": "[DONE]"}
    assert (streamed["schema"]["minContains"], streamed["schema"]["maxContains"]) == (1, 1)


def test_each_operation_lists_the_statuses_it_sends(tmp_path):
    paths = make_app(tmp_path / "data").test_client().get("/openapi.json").json["paths"]
    ask = paths["/api/v1/ask"]["post"]["responses"]
    assert {"400", "413", "415", "422", "429", "431", "501", "502", "503"} <= set(ask)
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert "422" not in chat and "400" in chat  # OpenAI's convention: every invalid request is a 400
    assert set(paths["/healthz"]["get"]["responses"]) == {"200", "400", "413", "431", "500", "501"}
    entity_page = paths["/entity/{name}"]["get"]["responses"]
    assert set(entity_page["404"]["content"]) == {"text/html"}  # a web page's errors are pages
    assert set(entity_page["431"]["content"]) == {"application/json"}  # refused by waitress before the app
    assert set(paths["/api/v1/entities/{name}"]["get"]["responses"]["404"]["content"]) == {"application/json"}
    assert "Retry-After" in ask["503"]["headers"] and "Retry-After" in ask["429"]["headers"]


def test_question_limits_are_in_the_schema(tmp_path):
    client = make_app(tmp_path / "data", max_question_chars=300).test_client()
    question = client.get("/openapi.json").json["components"]["schemas"]["AskRequest"]["properties"]["question"]
    assert (question["minLength"], question["maxLength"]) == (1, 300)
    pattern = re.compile(question["pattern"])
    assert pattern.search("What is the capital of Alabama?\n")
    for refused in ("", "   ", "a\x00b", "tab\tis fine but bell\x07 is not"):
        assert not pattern.search(refused), refused
        body = {"question": refused}
        assert client.post("/api/v1/ask", json=body).status_code == 422  # what the schema refuses, the service does
    assert client.post("/api/v1/ask", json={"question": "x" * 301}).status_code == 422
