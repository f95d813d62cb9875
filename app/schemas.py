"""Typed request and response bodies of the API; ``/openapi.json`` is generated from them.

Request models forbid unknown fields and are strict (no "5" for 5), so a
malformed body is a clear 4xx, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field, RootModel

from kgqa.records import AnswerSentence, Citation, QAResult


# The longest earlier turn of a conversation the service reads (the question has its own, smaller limit).
MAX_TURN_CHARS = 8000


class ChatTurn(BaseModel):
    """An earlier turn of a conversation, used as context for the question."""

    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_TURN_CHARS)


class AskRequest(BaseModel):
    """``POST /api/v1/ask``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    question: str
    k: int | None = Field(default=None, ge=1, le=50)
    stream: bool = False
    history: list[ChatTurn] = Field(default_factory=list)  # bounded by the body size; the engine keeps the last few


class ErrorDetail(BaseModel):
    code: str  # kgqa's own: invalid_request, invalid_question, overloaded, ...
    message: str
    # OpenAI's error type, so OpenAI clients read it (``e.type``): 429 rate_limit_error, other 4xx
    # invalid_request_error, 5xx server_error.
    type: Literal["invalid_request_error", "rate_limit_error", "server_error"]
    param: str | None = None


class ErrorBody(BaseModel):
    """Every error the service returns."""

    error: ErrorDetail


class LMHealth(BaseModel):
    """The LM server's state (``KGQA_LM_URL`` only): what the last exchange with it found."""

    reachable: bool
    reason: str = ""  # why it is unavailable, without its address


class Health(BaseModel):
    # degraded: the LM server is unavailable; answers that need no generation (a fact) still come
    status: Literal["ok", "ready", "degraded"]
    lm: LMHealth | None = None
    model: str = ""
    max_concurrent: int = 0  # answers generated at once (KGQA_MAX_CONCURRENT)
    max_waiting: int = 0  # requests allowed to wait for one of them (KGQA_MAX_WAITING)
    running: int = 0
    waiting: int = 0


# --- the SSE events of a streamed ``/api/v1/ask`` ---------------------------------------------------


class SentenceEvent(BaseModel):
    """An answer sentence, sent as soon as the engine has verified it against one evidence sentence."""

    type: Literal["sentence"] = "sentence"
    index: int  # 0, 1, ...: its place in the answer
    text: str  # as the answer shows it, with its [n] markers; the answer is these texts joined by spaces
    sentence: AnswerSentence
    # The evidence behind its markers: ``sentence`` is the evidence sentence, and for a passage
    # ``sentence_start``/``sentence_end`` locate it in the passage's text.
    citations: list[Citation]


class ResultEvent(BaseModel):
    """The last event, always sent: what a plain (not streamed) request answers, the whole answer as ``result``,
    or, for a failure after the stream started (its 200 is already sent, e.g. the LM server died
    mid-answer), ``result: null`` and the ``error`` a plain request would have got."""

    type: Literal["result"] = "result"
    result: QAResult | None
    error: ErrorDetail | None = None


class AskStreamEvent(RootModel[Annotated[SentenceEvent | ResultEvent, Field(discriminator="type")]]):
    """One ``data:`` line of a streamed answer: sentence events as they are verified, then one result event."""


# --- OpenAI-compatible chat completions -------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, refusal... are accepted and ignored
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text; non-text parts (images, audio) are rejected by the caller."""
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False  # true: a last chunk, with empty choices, carries the usage


class JSONSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema the content must fit; its properties must be among
    ``StructuredAnswer``'s (``answer``, ``sentences``, ``citations``, ``abstained``), which are what is sent."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    name: str
    json_schema: dict | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    """``response_format``: ``text`` (the default), or the answer as one JSON object (``StructuredAnswer``):
    ``json_object``, or ``json_schema`` with a schema that object fits."""

    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's parameters; unknown ones are rejected as OpenAI does.

    Sampling parameters are accepted and ignored: answers are greedy and grounded. ``tools`` and
    ``tool_choice`` (other than ``none``) are refused: the answer comes from the knowledge base, never
    from a tool. Types are strict, as on ``/api/v1/ask`` (``"stream": "yes"`` or ``"n": "1"`` is a 400).
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    verbosity: str | None = None


class CitationOut(BaseModel):
    """A source behind an inline ``[n]`` marker of the content.

    ``sentence`` is the evidence sentence that backs the answer (empty for the closest
    sources of an abstention); for a passage, ``sentence_start``/``sentence_end`` are its
    character offsets in the text of passage ``passage_id`` (``GET /api/v1/passages/<id>``).
    """

    id: str
    kind: Literal["passage", "fact"]
    url: str
    title: str
    snippet: str
    section: str = ""
    passage_id: str | None = None
    sentence: str = ""
    sentence_start: int | None = None
    sentence_end: int | None = None

    @classmethod
    def of(cls, citation: Citation) -> "CitationOut":
        return cls.model_validate(citation.model_dump(include=set(cls.model_fields)))


class StructuredAnswer(BaseModel):
    """The content of a completion asked for JSON (``response_format``): the answer and its sources.

    ``answer`` is the text with its ``[n]``/``[Fn]`` markers, ``sentences`` its sentences with the
    citation ids behind each, ``citations`` the sources those ids name. A ``json_schema`` that names a
    subset of these fields gets that subset.
    """

    answer: str
    sentences: list[AnswerSentence]
    citations: list[CitationOut]
    abstained: bool


class Usage(BaseModel):
    """The language model's tokens for this answer: its prompt (the instructions, the evidence and the
    conversation) and what it wrote, whether or not the checks kept it. An answer that a fact gives
    outright costs none."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, meter) -> "Usage":
        """From a ``kgqa.usage.TokenMeter``."""
        prompt, completion = meter.prompt_tokens, meter.completion_tokens
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class URLCitation(BaseModel):
    """Where a source is cited: ``content[start_index:end_index]`` is the answer sentence whose marker names it."""

    start_index: int
    end_index: int
    url: str
    title: str


class Annotation(BaseModel):
    """OpenAI's message annotation (``choices[0].message.annotations``): one per cited source of a sentence.

    In a stream, each annotation of a delta has ``index``, its place in the message's list, so clients
    that merge deltas (the ``openai`` package's ``chat.completions.stream``) add it rather than overwrite.
    """

    type: Literal["url_citation"] = "url_citation"
    url_citation: URLCitation
    index: int | None = Field(default=None, exclude_if=lambda v: v is None)


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    annotations: list[Annotation] = Field(default_factory=list)


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[CitationOut]
    abstained: bool


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    annotations: list[Annotation] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One SSE ``data:`` line of a streamed completion.

    A chunk whose content is a verified sentence carries that sentence's ``citations``;
    the chunk with ``finish_reason`` carries every citation of the answer and ``abstained``.
    With ``stream_options.include_usage`` a last chunk follows, with empty ``choices`` and the ``usage``.
    """

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    citations: list[CitationOut] | None = None
    abstained: bool | None = None


class ChatCompletionStreamData(RootModel[ChatCompletionChunk | ErrorBody]):
    """The JSON of one ``data:`` line of a streamed completion (the stream ends with ``data: [DONE]``): a chunk, or
    for a failure after the 200 was sent (the LM server died mid-answer) an error, then the usual last chunk."""


class ResponseInputMessage(BaseModel):
    """One message of ``input`` (OpenAI's Responses API): text only, as a string or ``input_text``/``output_text`` parts."""

    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    def chat_message(self) -> ChatMessage:
        parts = self.content
        if isinstance(parts, list):
            if any(part.type not in ("input_text", "output_text") for part in parts):
                from werkzeug.exceptions import BadRequest

                raise BadRequest("only text content parts (input_text, output_text) are supported")
            parts = [ContentPart(type="text", text=part.text) for part in parts]
        return ChatMessage(role=self.role, content=parts)


class ResponseRequest(BaseModel):
    """``POST /v1/responses``: OpenAI's Responses API, for clients that read citations from it (LangChain's
    ``ChatOpenAI(use_responses_api=True)``). Stateless: nothing is stored, so ``previous_response_id`` is
    refused; ``tools`` and a ``text.format`` other than text are refused (``/v1/chat/completions`` serves
    structured output). Sampling parameters are accepted and ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str
    input: str | list[ResponseInputMessage]  # the question, or the conversation ending with it
    instructions: str | None = None  # ignored, as a system prompt is: the grounding rules are the engine's
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    store: bool | None = None
    metadata: dict | None = None
    user: str | None = None
    include: list[str] | None = None
    text: dict | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    service_tier: str | None = None
    truncation: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


class OutputURLCitation(BaseModel):
    """The Responses API's annotation: ``text[start_index:end_index]`` is the sentence whose marker cites ``url``."""

    type: Literal["url_citation"] = "url_citation"
    start_index: int
    end_index: int
    url: str
    title: str


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[OutputURLCitation]
    logprobs: list = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict = Field(default_factory=lambda: {"cached_tokens": 0})
    output_tokens_details: dict = Field(default_factory=lambda: {"reasoning_tokens": 0})


class ResponseObject(BaseModel):
    """A response of ``/v1/responses``: one assistant message whose ``output_text`` carries the answer, its
    ``[n]`` markers and the ``url_citation`` annotations; kgqa's ``citations`` and ``abstained`` beside."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed"]
    model: str
    output: list[OutputMessage]
    usage: ResponseUsage | None = None
    error: None = None
    incomplete_details: None = None
    tools: list = Field(default_factory=list)
    tool_choice: Literal["none"] = "none"
    parallel_tool_calls: bool = False
    citations: list[CitationOut] | None = None
    abstained: bool | None = None


class ResponseStreamEvent(BaseModel):
    """One SSE ``data:`` line of a streamed response: OpenAI's event ``type`` and the fields it names
    (``response``; ``item``; ``part``; ``delta``; ``annotation`` with ``annotation_index``; ``text``)."""

    model_config = ConfigDict(extra="allow")
    type: str
    sequence_number: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "kgqa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def parse_body(model: type[BaseModel]) -> BaseModel:
    """The JSON body validated by ``model`` (415 when not JSON, 400 when malformed, 422/400 when invalid)."""
    payload = request.get_json()  # raises 415 for a non-JSON content type, 400 for bad JSON
    if not isinstance(payload, dict):
        from pydantic import ValidationError

        raise ValidationError.from_exception_data(
            model.__name__, [{"type": "model_type", "loc": (), "input": payload, "ctx": {"class_name": model.__name__}}]
        )
    return model.model_validate(payload)
