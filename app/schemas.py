"""Typed request and response bodies of the API; ``/openapi.json`` is generated from them.

Request models forbid unknown fields and are strict (no "5" for 5), so a
malformed body is a clear 4xx, never a 500.
"""

from __future__ import annotations

from typing import Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field


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


class Health(BaseModel):
    status: Literal["ok", "ready"]
    model: str = ""
    slots: int = 0
    slots_in_use: int = 0


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
    """A source behind an inline ``[n]`` marker of the content."""

    id: str
    kind: Literal["passage", "fact"]
    url: str
    title: str
    snippet: str
    section: str = ""


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
    """One SSE ``data:`` line of a streamed completion; the last one carries ``citations``."""

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
