"""Citations read through the chatbot frameworks people point at ``/v1``, unchanged: the official ``openai``
client, LangChain's ``ChatOpenAI`` and LlamaIndex's ``OpenAILike``/``OpenAIResponses``, plain and streamed,
over Chat Completions and the Responses API (``/v1/responses``).

The server is the real one (waitress, the views, the SSE framing); the engine is the deterministic stand-in
(``tests.helpers.app_fakes``), since the point is the protocol: its answer is two verified sentences, each
citing passage ``[1]`` of the Alabama article. A framework that is not installed is skipped: ``openai`` and
``langchain-openai`` are in the ``test`` extra; LlamaIndex's OpenAI integration pins ``openai<3``, so it lives
in an environment of its own (the ``llamaindex-test`` extra), whose Python ``KGQA_LLAMAINDEX_PYTHON`` names.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel
from tests.helpers.app_fakes import ALABAMA_URL, ANSWER, QUESTION, FakeEngine
from tests.helpers.app_live import live_server

from kgqa.settings import Settings

MESSAGES = [{"role": "user", "content": QUESTION}]
SENTENCES = ["Montgomery is the capital of Alabama [1].", "The state's rivers drain south into the Gulf of Mexico [1]."]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), rate_limit_per_minute=0)
    with live_server(settings, engine=FakeEngine(), ready_timeout=10) as url:
        yield f"{url}/v1"


def cited_spans(content: str, annotations: list[dict]) -> list[str]:
    """The sentences the ``url_citation`` annotations point at, after checking each names the Alabama article."""
    assert annotations, "no annotations"
    spans = []
    for note in annotations:
        assert note["type"] == "url_citation"
        cite = note["url_citation"]
        assert cite["url"] == ALABAMA_URL and cite["title"] == "Alabama"
        spans.append(content[cite["start_index"]:cite["end_index"]])
    return spans


def as_dicts(annotations) -> list[dict]:
    return [a if isinstance(a, dict) else a.model_dump() for a in annotations or []]


# --- the official openai client ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def openai_client(base_url):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)


def test_openai_plain_message_annotations(openai_client):
    message = openai_client.chat.completions.create(model="kgqa", messages=MESSAGES).choices[0].message
    assert message.content == ANSWER
    assert cited_spans(message.content, as_dicts(message.annotations)) == SENTENCES
    assert message.annotations[0].url_citation.url == ALABAMA_URL  # the package's own types, not a dict
    assert openai_client.chat.completions.create(model="kgqa", messages=MESSAGES).model_extra["citations"]


def test_openai_streamed_deltas_carry_the_annotations_of_their_sentence(openai_client):
    chunks = list(openai_client.chat.completions.create(model="kgqa", messages=MESSAGES, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == ANSWER
    notes = [n for c in chunks if c.choices for n in (c.choices[0].delta.model_extra or {}).get("annotations", [])]
    assert cited_spans(content, notes) == SENTENCES
    assert [n["index"] for n in notes] == [0, 1]  # their places in the message's list, for clients that merge


def test_openai_stream_helper_final_completion_has_the_annotations(openai_client):
    with openai_client.chat.completions.stream(model="kgqa", messages=MESSAGES) as stream:
        for _ in stream:
            pass
        message = stream.get_final_completion().choices[0].message
    assert message.content == ANSWER
    assert cited_spans(message.content, as_dicts(message.annotations)) == SENTENCES


def test_an_abstention_cites_nothing_in_its_text(tmp_path):
    from tests.helpers.app_fakes import make_app, sse_events

    client = make_app(tmp_path / "data", FakeEngine(abstain=True), rate_limit_per_minute=0).test_client()
    body = client.post("/v1/chat/completions", json={"model": "kgqa", "messages": MESSAGES}).json
    assert body["abstained"] and body["citations"]  # the closest sources, listed but not cited by the text
    assert body["choices"][0]["message"]["annotations"] == []
    streamed = client.post("/v1/chat/completions", json={"model": "kgqa", "messages": MESSAGES, "stream": True})
    assert "annotations" not in streamed.get_data(as_text=True)


def test_a_sentence_citing_two_sources_gets_one_annotation_each():
    from tests.helpers.app_fakes import FACT, evidence_citation, fake_result

    from app.openai_compat import answer_annotations
    from kgqa.records import AnswerSentence, Citation

    fact = Citation(id="F1", kind="fact", title="Alabama", url=ALABAMA_URL + "#Infobox", snippet="capital: Montgomery",
                    score=0.8, triple_id=FACT.triple_id)
    result = fake_result(QUESTION).model_copy(update={
        "answer": "Alabama is a state. Montgomery is the capital of Alabama [1][F1].",
        "sentences": [AnswerSentence(text="Alabama is a state.", citations=[], supported=True, support=0.9),
                      AnswerSentence(text="Montgomery is the capital of Alabama.", citations=["1", "F1"],
                                     supported=True, support=0.9)],
        "citations": [evidence_citation("The state's rivers drain south into the Gulf of Mexico."), fact],
    })
    notes = [n.model_dump(exclude_none=True) for n in answer_annotations(result)]
    span = {"start_index": 20, "end_index": len(result.answer)}
    assert notes == [
        {"type": "url_citation", "url_citation": {**span, "url": ALABAMA_URL, "title": "Alabama"}},
        {"type": "url_citation", "url_citation": {**span, "url": ALABAMA_URL + "#Infobox", "title": "Alabama"}},
    ]


# --- LangChain ChatOpenAI ---------------------------------------------------------------------------------

class Source(BaseModel):
    id: str
    url: str
    title: str


class CitedAnswer(BaseModel):
    answer: str
    citations: list[Source]


@pytest.fixture(scope="module")
def chat_openai(base_url):
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(base_url=base_url, api_key="unused", model="kgqa", max_retries=0, timeout=30)


def test_langchain_invoke_keeps_the_markers(chat_openai):
    # langchain-openai drops a Chat Completions message's annotations (it reads them from the Responses API
    # only): the text and its [n] markers arrive; the sources behind them come with structured output.
    assert chat_openai.invoke(QUESTION).content == ANSWER
    assert "".join(chunk.content for chunk in chat_openai.stream(QUESTION)) == ANSWER


def test_langchain_structured_output_reads_the_citations(chat_openai):
    structured = chat_openai.with_structured_output(CitedAnswer, method="json_schema")
    answer = structured.invoke(QUESTION)
    assert answer.answer == ANSWER
    assert [(s.id, s.url, s.title) for s in answer.citations] == [("1", ALABAMA_URL, "Alabama")]


def test_langchain_structured_output_streamed_ends_with_the_citations(chat_openai):
    structured = chat_openai.with_structured_output(CitedAnswer, method="json_schema")
    parts = list(structured.stream(QUESTION))
    assert parts[-1].answer == ANSWER and parts[-1].citations[0].url == ALABAMA_URL


def test_langchain_raw_json_mode_carries_sentences_and_citations(chat_openai):
    raw = chat_openai.bind(response_format={"type": "json_object"}).invoke(QUESTION)
    body = json.loads(raw.content)
    assert body["answer"] == ANSWER and body["citations"][0]["url"] == ALABAMA_URL
    assert [s["citations"] for s in body["sentences"]] == [["1"], ["1"]]


def test_langchain_responses_api_puts_the_annotations_in_the_text_block(base_url):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(base_url=base_url, api_key="unused", model="kgqa", max_retries=0, timeout=30,
                                      use_responses_api=True)
    merged = None
    for chunk in llm.stream(QUESTION):
        merged = chunk if merged is None else merged + chunk
    for message in (llm.invoke(QUESTION), merged):
        [block] = [b for b in message.content if b["type"] == "text"]
        assert block["text"] == ANSWER == message.text
        assert cited_spans(block["text"], [{"type": a["type"], "url_citation": a} for a in block["annotations"]]) \
            == SENTENCES


# --- the Responses API through the openai client ----------------------------------------------------------

def test_openai_responses_output_text_annotations(openai_client):
    response = openai_client.responses.create(model="kgqa", input=QUESTION)
    assert response.output_text == ANSWER and response.status == "completed"
    notes = [{"type": a.type, "url_citation": a.model_dump()} for a in response.output[0].content[0].annotations]
    assert cited_spans(response.output_text, notes) == SENTENCES
    assert response.model_extra["citations"][0]["url"] == ALABAMA_URL


def test_openai_responses_stream_sends_each_sentence_then_its_annotations(openai_client):
    events = list(openai_client.responses.create(model="kgqa", input=[{"role": "user", "content": QUESTION}],
                                                 stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.output_item.added", "response.content_part.added"]
    assert kinds[3:7] == ["response.output_text.delta", "response.output_text.annotation.added"] * 2
    assert kinds[-1] == "response.completed" and [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    added = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert text == ANSWER and [e.annotation_index for e in added] == [0, 1]
    notes = [{"type": "url_citation", "url_citation": dict(e.annotation)} for e in added]
    assert cited_spans(text, notes) == SENTENCES
    assert events[-1].response.output_text == ANSWER


@pytest.mark.parametrize("extra, says", [
    ({"tools": [{"type": "web_search"}]}, "tools"),
    ({"previous_response_id": "resp_1"}, "nothing is stored"),
    ({"text": {"format": {"type": "json_object"}}}, "/v1/chat/completions"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "text content"),
    ({"input": ""}, "input"),
    ({"input": [{"role": "assistant", "content": "Hi."}]}, "role 'user'"),
    ({"stream": "yes"}, "stream"),
    ({"prompt": "x"}, "prompt"),
])
def test_responses_requests_it_cannot_serve_are_a_clear_400(tmp_path, extra, says):
    from tests.helpers.app_fakes import make_app

    client = make_app(tmp_path / "data", FakeEngine(), rate_limit_per_minute=0).test_client()
    response = client.post("/v1/responses", json={"model": "kgqa", "input": QUESTION, **extra})
    assert response.status_code == 400 and says in response.json["error"]["message"], response.json


class FailingMidStream(FakeEngine):
    """The stand-in engine, whose LM server fails after the first verified sentence."""

    def _events(self, question):
        from kgqa.errors import LMServerUnavailable

        for event in super()._events(question):
            yield event
            if event.type == "sentence":
                raise LMServerUnavailable("http://10.1.2.3:8000/v1", "connection reset")


def test_a_failure_mid_responses_stream_is_an_error_event_the_clients_raise(tmp_path):
    openai = pytest.importorskip("openai")
    settings = Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0)
    with live_server(settings, engine=FailingMidStream(), ready_timeout=10) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        seen = []
        with pytest.raises(openai.APIError) as info:
            for event in client.responses.create(model="kgqa", input=QUESTION, stream=True):
                seen.append(event.type)
        assert "response.output_text.delta" in seen and "response.completed" not in seen
        assert info.value.body["code"] == "lm_server_error" and "10.1.2.3" not in str(info.value.body)


def test_a_responses_abstention_has_no_annotations(tmp_path):
    from tests.helpers.app_fakes import abstention_text, make_app

    client = make_app(tmp_path / "data", FakeEngine(abstain=True), rate_limit_per_minute=0).test_client()
    body = client.post("/v1/responses", json={"model": "kgqa", "input": QUESTION}).json
    assert body["output"][0]["content"][0] == {"type": "output_text", "text": abstention_text(QUESTION),
                                               "annotations": [], "logprobs": []}
    assert body["abstained"] is True


# --- LlamaIndex OpenAILike (in its own environment) -------------------------------------------------------

@pytest.fixture(scope="module")
def llamaindex_read(base_url):
    """What ``OpenAILike`` read (``tests/helpers/llamaindex_client.py``, run by ``KGQA_LLAMAINDEX_PYTHON``)."""
    python = os.environ.get("KGQA_LLAMAINDEX_PYTHON")
    if not python:
        pytest.skip("KGQA_LLAMAINDEX_PYTHON (a Python with llama-index-llms-openai-like) is not set")
    client = Path(__file__).parents[1] / "helpers" / "llamaindex_client.py"
    done = subprocess.run([python, str(client), base_url, QUESTION], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_llamaindex_chat_raw_message_has_the_annotations(llamaindex_read):
    chat = llamaindex_read["chat"]
    assert chat["content"] == ANSWER
    assert cited_spans(chat["content"], chat["annotations"]) == SENTENCES


def test_llamaindex_stream_chat_raw_deltas_have_the_annotations(llamaindex_read):
    streamed = llamaindex_read["stream_chat"]
    assert streamed["content"] == ANSWER
    assert cited_spans(streamed["content"], streamed["annotations"]) == SENTENCES


@pytest.mark.parametrize("operation", ["responses_chat", "responses_stream_chat"])
def test_llamaindex_openai_responses_keeps_the_annotations(llamaindex_read, operation):
    read = llamaindex_read[operation]  # OpenAIResponses: the ChatResponse's additional_kwargs["annotations"]
    assert read["content"] == ANSWER
    assert cited_spans(read["content"], read["annotations"]) == SENTENCES


def test_llamaindex_defaults_get_a_json_404_naming_the_fix(llamaindex_read):
    for error in llamaindex_read["defaults_errors"].values():  # complete and chat both post to /v1/completions
        assert error["status"] == 404 and "is_chat_model=True" in error["message"]
