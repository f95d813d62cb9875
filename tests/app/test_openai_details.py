"""OpenAI-shaped details of ``/v1``: strict types, refused tools, structured output, usage, error types.

The fake engine spends a known number of model tokens (``kgqa.usage.record``), so the usage
the endpoint reports can be checked exactly; the official ``openai`` client (when installed)
reads the same responses as an OpenAI user would.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from tests.helpers.app_fakes import ANSWER, QUESTION, FakeEngine, make_app, sse_events
from tests.helpers.app_live import live_server

from kgqa.settings import Settings
from kgqa.usage import record

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": QUESTION}]
PROMPT_TOKENS, COMPLETION_TOKENS = 412, 37


class MeteredEngine(FakeEngine):
    """The fake engine, spending ``PROMPT_TOKENS`` + ``COMPLETION_TOKENS`` on one model request per answer."""

    def ask(self, question, **kwargs):
        record(PROMPT_TOKENS, COMPLETION_TOKENS)
        return super().ask(question, **kwargs)

    def _events(self, question):
        record(PROMPT_TOKENS, COMPLETION_TOKENS)
        yield from super()._events(question)


@pytest.fixture
def client(tmp_path):
    return make_app(tmp_path / "data", MeteredEngine(), rate_limit_per_minute=0).test_client()


def chat(client, **extra):
    return client.post(CHAT, json={"model": "kgqa", "messages": MESSAGES, **extra})


def chunks_of(response) -> list:
    payloads = sse_events(response.get_data(as_text=True))
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


@pytest.mark.parametrize("field, value", [
    ("stream", "yes"), ("n", "1"), ("max_tokens", "10"), ("temperature", "0"), ("stream_options", {"include_usage": "true"}),
])
def test_wrong_types_are_400_as_on_the_kgqa_api(client, field, value):
    response = chat(client, **{field: value})
    assert response.status_code == 400
    error = response.json["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"
    assert error["param"].startswith(field)


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "lookup"}}}, "tool_choice"),
])
def test_tools_are_refused_not_ignored(client, extra, param):
    response = chat(client, **extra)
    assert response.status_code == 400
    assert response.json["error"]["param"] == param and "tool" in response.json["error"]["message"]


def test_tool_choice_none_and_text_format_are_plain_answers(client):
    response = chat(client, tool_choice="none", response_format={"type": "text"})
    assert response.status_code == 200 and response.json["choices"][0]["message"]["content"] == ANSWER


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_legacy_completions_are_a_json_404_pointing_at_chat_completions(client, method):
    response = client.open("/v1/completions", method=method, json={"model": "kgqa", "prompt": QUESTION})
    assert response.status_code == 404 and response.mimetype == "application/json"
    assert "/v1/chat/completions" in response.json["error"]["message"]
    assert response.json["error"]["type"] == "invalid_request_error"


def test_json_object_is_the_answer_and_its_sources_as_json(client):
    response = chat(client, response_format={"type": "json_object"})
    content = json.loads(response.json["choices"][0]["message"]["content"])
    assert set(content) == {"answer", "sentences", "citations", "abstained"}
    assert content["answer"] == ANSWER and content["abstained"] is False
    assert content["citations"] == response.json["citations"]
    assert all(set(s["citations"]) <= {c["id"] for c in content["citations"]} for s in content["sentences"])


ANSWER_SCHEMA = {  # what a client's own model of the answer looks like (strict, as openai's parse() sends)
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "citations": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"},
                      "url": {"type": "string"}}, "required": ["id", "url"]}},
    },
    "required": ["answer", "citations"],
    "additionalProperties": False,
}


def test_json_schema_gets_the_fields_it_names_and_fits_them(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "Answer", "schema": ANSWER_SCHEMA, "strict": True}}
    response = chat(client, response_format=fmt)
    content = json.loads(response.json["choices"][0]["message"]["content"])
    jsonschema.validate(content, ANSWER_SCHEMA)
    assert set(content) == {"answer", "citations"} and content["answer"] == ANSWER


def test_a_streamed_json_answer_concatenates_to_the_json(client):
    response = chat(client, stream=True, response_format={"type": "json_object"})
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks_of(response))
    assert json.loads(content)["answer"] == ANSWER


@pytest.mark.parametrize("schema, says", [
    ({"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}}},
     "confidence"),
    ({"type": "object", "properties": {"answer": {"type": "integer"}}}, "does not fit"),
    ({"type": "object", "properties": {"abstained": {"const": True}}, "required": ["abstained"]}, "does not fit"),
    ({"type": "objekt"}, "not a valid JSON Schema"),
])
def test_a_schema_the_answer_cannot_fit_is_400_before_any_work(tmp_path, schema, says):
    engine = MeteredEngine()
    client = make_app(tmp_path / "data", engine, rate_limit_per_minute=0).test_client()
    response = chat(client, response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": schema}})
    assert response.status_code == 400 and says in response.json["error"]["message"]
    assert response.json["error"]["param"].startswith("response_format")
    assert engine.calls == []


def test_usage_counts_the_models_tokens(client):
    usage = chat(client).json["usage"]
    assert usage == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                     "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}


def test_usage_comes_on_a_last_chunk_only_when_asked(client):
    chunks = chunks_of(chat(client, stream=True, stream_options={"include_usage": True}))
    *answer, last = chunks
    assert last["choices"] == [] and last["usage"]["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS
    assert answer[-1]["choices"][0]["finish_reason"] == "stop" and all("usage" not in c for c in answer)
    assert all("usage" not in c for c in chunks_of(chat(client, stream=True)))


def test_errors_carry_openais_type(tmp_path):
    limited = make_app(tmp_path / "a", MeteredEngine(), rate_limit_per_minute=1).test_client()
    chat(limited)
    assert chat(limited).json["error"]["type"] == "rate_limit_error"
    busy = make_app(tmp_path / "b", FakeEngine(overloaded=True), rate_limit_per_minute=0).test_client()
    response = chat(busy)
    assert response.status_code == 503 and response.json["error"]["type"] == "server_error"


def test_the_official_client_reads_usage_structured_output_and_error_types(tmp_path):
    openai = pytest.importorskip("openai")
    from pydantic import BaseModel

    class Source(BaseModel):
        id: str
        url: str

    class Answer(BaseModel):
        answer: str
        citations: list[Source]

    settings = Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0)
    with live_server(settings, engine=MeteredEngine(), ready_timeout=10) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        completion = client.chat.completions.create(model="kgqa", messages=MESSAGES)
        assert completion.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
        chunks = list(client.chat.completions.create(model="kgqa", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True}))
        assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == PROMPT_TOKENS
        parsed = client.chat.completions.parse(model="kgqa", messages=MESSAGES, response_format=Answer)
        answer = parsed.choices[0].message.parsed
        assert answer.answer == ANSWER and answer.citations[0].id == "1"
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="kgqa", messages=MESSAGES, tools=[
                {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}])
        assert info.value.type == "invalid_request_error" and info.value.param == "tools"
