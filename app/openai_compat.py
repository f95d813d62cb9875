"""An OpenAI-compatible endpoint (``/v1``), so an existing chat client needs nothing but a base URL.

The last user message is the question; earlier user/assistant turns are passed
to the engine as context (system prompts are ignored: grounding rules are the
engine's). Any ``model`` name is accepted and the response names ``kgqa``.

Streaming: the LM's raw tokens are not the answer (each sentence is shown only
once it is verified against the evidence), so they are never sent. The stream
sends the role delta at once, then each verified sentence as one content delta
as soon as the engine has checked it, with its ``[n]`` markers in the text, OpenAI's
``annotations`` (``url_citation``) on the delta and its ``citations`` (the evidence
sentence included) on the chunk; ``:`` keep-alive
comments fill the silences. An abstention arrives as one content delta when the
engine gives up. A final chunk carries ``finish_reason``, every ``citation`` and
``abstained``, then ``data: [DONE]``. The content deltas concatenate to exactly
the non-streamed content, and their annotations make the non-streamed message's.

Citations follow OpenAI's convention where frameworks look for them: the message's
``annotations``, one ``url_citation`` per source a sentence cites, spanning that sentence
(``content[start_index:end_index]``, its marker included). kgqa's own ``citations`` stay.
"""

from __future__ import annotations

import time
import uuid

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from app.answer_stream import VerifiedAnswer, verified_events
from app.api import admit, start_event_stream
from app.errors import stream_error_payload
from app.limits import current_limits
from app.schemas import (
    Annotation,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    CitationOut,
    Delta,
    ModelCard,
    ModelList,
    ResponseMessage,
    URLCitation,
    Usage,
    parse_body,
)
from app.sse import KEEPALIVE, cancelled_when_gone, client_gone, sse_data, sse_response
from app.structured import JSONAnswer, requested_shape
from qa.sentences import with_markers
from kgqa.errors import KgqaError
from kgqa.records import Citation, QAResult
from kgqa.usage import TokenMeter, metering

bp = Blueprint("openai", __name__, url_prefix="/v1")

MODEL_ID = "kgqa"
_STARTED = int(time.time())


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[dict] | None]:
    """The question (last user message, validated) and the earlier user/assistant turns (validated) as history."""
    for message in messages:
        if isinstance(message.content, list) and any(part.type != "text" for part in message.content):
            raise BadRequest("only text content parts are supported")
    if messages[-1].role != "user":
        raise BadRequest("the last message must have role 'user': it is the question")
    limits = current_limits()
    question = limits.check_question(messages[-1].text())
    turns = [(f"messages[{i}].content", m) for i, m in enumerate(messages[:-1]) if m.role in ("user", "assistant")]
    limits.check_turns((where, m.text()) for where, m in turns)
    history = [
        {"role": m.role, "content": m.text()} for _, m in turns if m.text().strip()
    ]  # the engine keeps the last few (qa.prompt.MAX_HISTORY_MESSAGES), the one history cap
    return question, history or None


def citations_of(result: QAResult) -> list[CitationOut]:
    return [CitationOut.of(c) for c in result.citations]


def sentence_annotations(start: int, shown: str, citations: list[Citation],
                         first_index: int | None = None) -> list[Annotation]:
    """OpenAI ``url_citation`` annotations for one answer sentence at ``content[start:start + len(shown)]``:
    one per source its markers name. ``first_index`` numbers them (in a stream) from there on."""
    span = {"start_index": start, "end_index": start + len(shown)}
    return [
        Annotation(url_citation=URLCitation(**span, url=c.url, title=c.title),
                   index=None if first_index is None else first_index + i)
        for i, c in enumerate(citations)
    ]


def answer_annotations(result: QAResult) -> list[Annotation]:
    """The annotations of the whole answer: each verified sentence of ``result.answer`` with its sources."""
    by_id, found, cursor = {c.id: c for c in result.citations}, [], 0
    for sentence in result.sentences:
        if not sentence.citations:
            continue
        shown = with_markers(sentence.text, sentence.citations)
        start = result.answer.find(shown, cursor)
        if start < 0:  # not shown in the answer (an abstention): nothing of the content cites it
            continue
        cursor = start + len(shown)
        found += sentence_annotations(start, shown, [by_id[i] for i in sentence.citations if i in by_id])
    return found


def answer_plainly(engine, question: str, history, release) -> tuple[QAResult, TokenMeter]:
    """A whole (not streamed) answer and the model tokens it cost; the admission place is released after it,
    and a client that leaves meanwhile stops it."""
    meter = TokenMeter()
    try:
        with metering(meter), cancelled_when_gone(client_gone(request.environ)):
            result = engine.ask(question, history=history)
    finally:
        release()
    return result, meter


@bp.post("/chat/completions")
def chat_completions() -> Response:
    """OpenAI chat completions, non-streaming or streaming (SSE chunks ending with ``[DONE]``)."""
    body: ChatCompletionRequest = parse_body(ChatCompletionRequest)
    shape = requested_shape(body)  # 400 for tools or a response_format the answer cannot fit, before any work
    question, history = split_conversation(body.messages)
    engine, release = admit()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _stream_completion(engine, question, history, release, shape, include_usage)
    result, meter = answer_plainly(engine, question, history, release)
    completion = ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=MODEL_ID,
        choices=[Choice(message=ResponseMessage(content=shape.render(result)) if shape else
                        ResponseMessage(content=result.answer, annotations=answer_annotations(result)))],
        usage=Usage.of(meter),
        citations=citations_of(result),
        abstained=result.abstained,
    )
    return jsonify(completion.model_dump(mode="json"))


def _stream_completion(engine, question: str, history, release, shape: JSONAnswer | None = None,
                       include_usage: bool = False) -> Response:
    # The role chunk goes out at once; the question was validated and admitted before this point.
    stream, first = start_event_stream(engine, question, None, history, release, await_first=False)
    interval = current_app.config["SSE_KEEPALIVE_S"]
    gone = client_gone(request.environ)  # a client that goes away cancels the answer at once
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: Delta, **extra) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=extra.pop("finish_reason", None))
        payload = ChatCompletionChunk(id=completion_id, created=created, model=MODEL_ID, choices=[choice], **extra)
        return sse_data(payload.model_dump(mode="json", exclude_none=True))

    def chunks():
        yield chunk(Delta(role="assistant", content=""))
        answer, result, annotated = VerifiedAnswer(), None, 0
        try:
            for item in verified_events(stream, first, interval, gone):
                if item is KEEPALIVE:
                    yield item
                elif item.type == "sentence" and shape is None:  # JSON content comes whole, at the end
                    sent, delta = answer.add(item)
                    notes = sentence_annotations(len(answer.text) - len(sent.text), sent.text, sent.citations, annotated)
                    annotated += len(notes)
                    yield chunk(Delta(content=delta, annotations=notes or None),
                                citations=[CitationOut.of(c) for c in sent.citations])
                elif item.type == "result":
                    result = item.result
        except Exception as exc:  # the status is already sent: the error in the stream, then its usual end
            if not isinstance(exc, KgqaError):
                current_app.logger.exception("completion stream failed")
            yield sse_data(stream_error_payload(exc))
            yield chunk(Delta(), finish_reason="stop")
            yield sse_data("[DONE]")
            return
        finally:
            stream.cancel()
        if result is None and stream.scope.cancelled:  # the client went away: nobody to tell
            return
        if result is None:
            current_app.logger.error("the engine's stream ended without a result")
            yield sse_data(stream_error_payload(RuntimeError("no result")))
            yield chunk(Delta(), finish_reason="stop")
            yield sse_data("[DONE]")
            return
        rest = shape.render(result) if shape else answer.remainder(result)
        if rest:  # JSON content; or an abstention: nothing was verified, the engine says so
            yield chunk(Delta(content=rest))
        yield chunk(Delta(), finish_reason="stop", citations=citations_of(result), abstained=result.abstained)
        if include_usage:  # OpenAI's convention: a last chunk with no choices carries the usage
            usage = ChatCompletionChunk(id=completion_id, created=created, model=MODEL_ID, choices=[],
                                        usage=Usage.of(stream.usage))
            yield sse_data(usage.model_dump(mode="json", exclude_none=True))
        yield sse_data("[DONE]")

    return sse_response(chunks(), on_close=stream.cancel)


@bp.route("/completions", methods=["GET", "POST"])
def legacy_completions() -> Response:
    """Not served: the legacy text completions API; a JSON 404 that points at chat completions."""
    raise NotFound("/v1/completions (the legacy text completions API) is not served: use POST "
                   "/v1/chat/completions (LlamaIndex's OpenAILike needs is_chat_model=True)")


@bp.get("/models")
def list_models() -> Response:
    """The one model this server offers."""
    return jsonify(ModelList(data=[ModelCard(id=MODEL_ID, created=_STARTED)]).model_dump(mode="json"))


@bp.get("/models/<path:model>")
def retrieve_model(model: str) -> Response:
    """A model by id (404 ``model_not_found`` for any other id)."""
    if model != MODEL_ID:
        raise NotFound(f"The model {model!r} does not exist")
    return jsonify(ModelCard(id=MODEL_ID, created=_STARTED).model_dump(mode="json"))
