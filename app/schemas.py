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
    code: str
    message: str
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
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's parameters; unknown ones are rejected as OpenAI does.

    Sampling and tool parameters are accepted and ignored: answers are greedy and grounded.
    """

    model_config = ConfigDict(extra="forbid")
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
    response_format: dict | None = None
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


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


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
    citations: list[CitationOut]
    abstained: bool


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One SSE ``data:`` line of a streamed completion.

    A chunk whose content is a verified sentence carries that sentence's ``citations``;
    the last chunk carries every citation of the answer and ``abstained``.
    """

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    citations: list[CitationOut] | None = None
    abstained: bool | None = None


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
