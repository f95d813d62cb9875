"""``/openapi.json`` is the contract: schemathesis sends generated requests to every operation and checks each
response against the document (status, content type, body schema, each SSE event) and the SSE framing.

The app runs in process (WSGI, no network) around the fake engine over the tiny knowledge base, so
a run is fast and the entity and passage pages have something to find. The run is bounded
(``MAX_EXAMPLES`` fuzzed requests per operation, plus schemathesis's examples and coverage phases).
``pytest --hypothesis-show-statistics`` prints how many requests each operation got.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.helpers.app_fakes import PASSAGE_ID, FakeEngine, make_app
from tests.helpers.tiny_kb import tiny_kb  # noqa: F401 (fixture)

MAX_EXAMPLES = 25  # fuzzed requests per operation; the whole run takes ~30 s on the 2-core machine

_DONE = "[DONE]"


def _data_lines(body: str, label: str) -> list[str]:
    """The ``data:`` payloads of an SSE body; every block is ``data:`` lines or ``:`` comments, ended by a blank line."""
    assert body.endswith("\n\n"), f"{label}: an event stream ends with a blank line"
    payloads = []
    for block in body[:-2].split("\n\n"):
        for line in block.split("\n"):
            assert line.startswith(("data: ", ":")), f"{label}: not an SSE data line or comment: {line[:80]!r}"
            if line.startswith("data: "):
                payloads.append(line[len("data: "):])
    return payloads


def sse_framing(ctx, response, case) -> bool | None:
    """An event stream is well framed: one JSON object per ``data:`` line, and it ends as its operation says.

    ``/api/v1/ask``: exactly one ``result`` event, the last. ``/v1/chat/completions``: a chunk with
    ``finish_reason``, then ``data: [DONE]``, once, last. ``/v1/responses``: ``response.completed``
    (or an ``error`` event) last, no ``[DONE]``.
    """
    if not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    label = case.operation.label
    payloads = _data_lines(response.content.decode("utf-8"), label)
    assert payloads, f"{label}: an event stream with no event"
    path = case.operation.path
    if path == "/v1/chat/completions":
        assert payloads[-1] == _DONE and payloads.count(_DONE) == 1, f"{label}: the stream ends with one data: [DONE]"
        payloads = payloads[:-1]
    else:
        assert _DONE not in payloads, f"{label}: [DONE] belongs to chat completions only"
    events = [json.loads(payload) for payload in payloads]
    assert all(isinstance(event, dict) for event in events), f"{label}: every event is a JSON object"
    if path == "/api/v1/ask":
        kinds = [event["type"] for event in events]
        assert kinds[-1] == "result" and kinds.count("result") == 1, f"{label}: one result event, last: {kinds}"
    elif path == "/v1/chat/completions":
        finished = [i for i, event in enumerate(events) if any(c.get("finish_reason") for c in event.get("choices", []))]
        assert len(finished) == 1 and finished[0] >= len(events) - 2, f"{label}: one finish_reason, at the end"
    elif path == "/v1/responses":
        assert events[-1]["type"] in ("response.completed", "error"), f"{label}: ends with response.completed"
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          sse_framing]


def _with_examples(spec: dict) -> dict:
    """The document with path-parameter examples this knowledge base (and the one model) holds, so the examples
    phase reaches a 200 on every operation that has one."""
    examples = {"/api/v1/entities/{name}": "Alabama", "/entity/{name}": "Alabama",
                "/api/v1/passages/{passage_id}": PASSAGE_ID, "/passage/{passage_id}": PASSAGE_ID,
                "/v1/models/{model}": "kgqa"}
    for path, value in examples.items():
        for parameter in spec["paths"][path]["get"]["parameters"]:
            parameter["example"] = value
    return spec


def _document() -> dict:
    """The document as served, built from an app that is never started (the test's own serves the requests);
    pytest collects one test per operation from it."""
    from app import create_app
    from app.openapi import build_spec
    from kgqa.settings import Settings

    return build_spec(create_app(Settings(data_dir=Path(tempfile.gettempdir()) / "kgqa-contract-unused"),
                                 engine=FakeEngine()))


# Loaded when the module is collected, so pytest has one test per operation (schemathesis's fixture-based
# loader, ``schemathesis.pytest.from_fixture``, does not run under pytest 9.2); the requests go to ``contract_app``.
schema = schemathesis.openapi.from_dict(_with_examples(_document()))
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture(scope="module")
def contract_app(tiny_kb):  # noqa: F811 (fixture)
    return make_app(tiny_kb.data_dir, rate_limit_per_minute=0)


def test_the_tested_document_is_the_served_one(contract_app):
    assert contract_app.test_client().get("/openapi.json").get_json() == _document()


def test_every_path_parameter_has_an_example_that_reaches_a_200(contract_app):
    """The examples phase checks each operation's 200 body only where its path-parameter examples name something
    that exists: every parametrised GET that documents a 200 gets one."""
    client = contract_app.test_client()
    for path, item in schema.raw_schema["paths"].items():
        operation = item.get("get")
        if "{" not in path or not operation or "200" not in operation["responses"]:
            continue
        url = path
        for parameter in operation["parameters"]:
            value = parameter.get("example", (parameter["schema"].get("enum") or [None])[0])  # or its first enum value
            assert value is not None, f"{path}: no example for {parameter['name']}"
            url = url.replace("{" + parameter["name"] + "}", str(value))
        assert client.get(url).status_code == 200, url


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case, contract_app):
    case.call_and_validate(app=contract_app, checks=CHECKS)  # in process, through the WSGI interface


_STREAMED = ("/api/v1/ask", "/v1/chat/completions", "/v1/responses")


def _streamed_case(path: str):
    """The operation's documented ``streamed`` request example."""
    body = schema.raw_schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
    return schema[path]["POST"].Case(body=body["streamed"]["value"], media_type="application/json")


@pytest.mark.parametrize("path", _STREAMED)
def test_every_stream_is_checked_event_by_event(contract_app, path):
    """Each streamed operation answers an event stream, and the document's event schema accepts every event."""
    response = _streamed_case(path).call_and_validate(app=contract_app, checks=CHECKS)
    assert response.status_code == 200
    assert response.headers["content-type"][0].startswith("text/event-stream")


def _rewriting(app, old: bytes, new: bytes):
    """``app`` with ``old`` replaced by ``new`` in every response body: a service that breaks its contract."""

    def broken(environ, start_response):
        return [b"".join(app(environ, start_response)).replace(old, new)]

    return broken


@pytest.mark.parametrize(("path", "old", "new", "caught"), [
    ("/v1/chat/completions", b'"chat.completion.chunk"', b'"chat.completion"', "SSE event"),
    ("/v1/chat/completions", b"data: [DONE]\n\n", b"", "SSE stream violates schema"),
    ("/v1/chat/completions", b"data: [DONE]", b"data: [DONE]\n\ndata: [DONE]", "SSE stream violates schema"),
    ("/v1/chat/completions", b"\n\ndata: [DONE]", b"\ndata: [DONE]", "SSE event"),  # two data lines, one event
    ("/api/v1/ask", b'"type":"result"', b'"type":"results"', "SSE event"),
    ("/api/v1/ask", b'"type":"result"', b'"type":"sentence"', "one result event, last"),
    ("/api/v1/ask", b": keep-alive", b"keep-alive", "not an SSE data line or comment"),
    ("/v1/responses", b'"sequence_number":', b'"sequence":', "SSE event"),
])
def test_a_broken_stream_is_caught(contract_app, path, old, new, caught):
    """The checks are not vacuous: a stream that strays from the document or from its framing fails them."""
    with pytest.raises(BaseException, match=re.escape(caught)):
        _streamed_case(path).call_and_validate(app=_rewriting(contract_app, old, new), checks=CHECKS)
