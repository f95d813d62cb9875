"""OpenAI's Responses API (``POST /v1/responses``), for the clients that read citations only from it.

LangChain's ``ChatOpenAI`` drops a Chat Completions message's ``annotations``; with
``use_responses_api=True`` it reads them from here into the message's text content blocks.
The answer is the one ``/v1/chat/completions`` gives: one assistant message whose
``output_text`` has the ``[n]`` markers and one ``url_citation`` annotation per source a
sentence cites. Streamed, each verified sentence is an ``response.output_text.delta`` as
soon as it is verified, followed by a ``response.output_text.annotation.added`` per source;
``response.completed`` carries the whole response (no ``[DONE]``: the Responses API has none).
A failure after the 200 is OpenAI's ``error`` event, and the stream ends.
"""

from __future__ import annotations

import time
import uuid

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import BadRequest

from app.answer_stream import VerifiedAnswer, verified_events
from app.api import admit, start_event_stream
from app.errors import stream_error_payload
from app.openai_compat import (
    MODEL_ID,
    answer_annotations,
    answer_plainly,
    citations_of,
    sentence_annotations,
    split_conversation,
)
from app.schemas import (
    ChatMessage,
    OutputMessage,
    OutputText,
    OutputURLCitation,
    ResponseObject,
    ResponseRequest,
    ResponseUsage,
    parse_body,
)
from app.sse import KEEPALIVE, client_gone, sse_data, sse_response
from kgqa.errors import KgqaError
from kgqa.records import QAResult

bp = Blueprint("responses", __name__, url_prefix="/v1")


def _refuse_unserved(body: ResponseRequest) -> None:
    if body.tools:
        raise BadRequest("tools are not supported: the answer comes from the knowledge base")
    if body.tool_choice not in (None, "none", "auto"):
        raise BadRequest("tool_choice is not supported: the answer comes from the knowledge base")
    if body.previous_response_id is not None:
        raise BadRequest("previous_response_id is not supported: nothing is stored; send the conversation as input")
    fmt = (body.text or {}).get("format") or {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") != "text":
        raise BadRequest("text.format other than text is not served here: use /v1/chat/completions' response_format")


def _messages(body: ResponseRequest) -> list[ChatMessage]:
    if not body.input:
        raise BadRequest("input must not be empty: it holds the question")
    if isinstance(body.input, str):
        return [ChatMessage(role="user", content=body.input)]
    return [message.chat_message() for message in body.input]


def _notes(annotations) -> list[OutputURLCitation]:
    return [OutputURLCitation(**a.url_citation.model_dump()) for a in annotations]


def _usage(meter) -> ResponseUsage:
    prompt, completion = meter.prompt_tokens, meter.completion_tokens
    return ResponseUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


def _response(ids: tuple[str, str, int], text: str, result: QAResult | None, meter=None) -> ResponseObject:
    """The response object: in progress (no result yet) or completed with its annotations and citations."""
    response_id, message_id, created = ids
    done = result is not None
    message = OutputMessage(id=message_id, status="completed" if done else "in_progress",
                            content=[OutputText(text=text, annotations=_notes(answer_annotations(result)))] if done else [])
    return ResponseObject(id=response_id, created_at=created, status=message.status, model=MODEL_ID,
                          output=[message] if done else [], usage=_usage(meter) if done else None,
                          citations=citations_of(result) if done else None,
                          abstained=result.abstained if done else None)


@bp.post("/responses")
def create_response() -> Response:
    """OpenAI Responses API: the answer as one message with ``url_citation`` annotations (SSE events when streamed)."""
    body: ResponseRequest = parse_body(ResponseRequest)
    _refuse_unserved(body)
    question, history = split_conversation(_messages(body))
    engine, release = admit()
    ids = (f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time()))
    if body.stream:
        return _stream_response(engine, question, history, release, ids)
    result, meter = answer_plainly(engine, question, history, release)
    return jsonify(_response(ids, result.answer, result, meter).model_dump(mode="json"))


def _stream_response(engine, question: str, history, release, ids: tuple[str, str, int]) -> Response:
    stream, first = start_event_stream(engine, question, None, history, release, await_first=False)
    interval = current_app.config["SSE_KEEPALIVE_S"]
    gone = client_gone(request.environ)  # a client that goes away cancels the answer at once
    message_id = ids[1]
    sequence = iter(range(1 << 62))
    where = {"item_id": message_id, "output_index": 0, "content_index": 0}

    def event(kind: str, **fields) -> str:
        return sse_data({"type": f"response.{kind}", "sequence_number": next(sequence), **fields})

    def failed(payload: dict) -> str:
        """OpenAI's ``error`` event (``code``, ``message``), with kgqa's ``error`` object beside it, which makes
        the ``openai`` package raise ``APIError`` (LangChain raises on the event's type)."""
        error = payload["error"]
        return sse_data({"type": "error", "sequence_number": next(sequence), "code": error["code"],
                         "message": error["message"], "param": None, **payload})

    def events():
        yield event("created", response=_response(ids, "", None).model_dump(mode="json"))
        item = OutputMessage(id=message_id, status="in_progress", content=[])
        yield event("output_item.added", output_index=0, item=item.model_dump(mode="json"))
        yield event("content_part.added", **where, part=OutputText(text="", annotations=[]).model_dump(mode="json"))
        answer, result, annotated = VerifiedAnswer(), None, 0
        try:
            for got in verified_events(stream, first, interval, gone):
                if got is KEEPALIVE:
                    yield got
                elif got.type == "sentence":
                    sent, delta = answer.add(got)
                    yield event("output_text.delta", **where, delta=delta, logprobs=[])
                    start = len(answer.text) - len(sent.text)
                    for note in _notes(sentence_annotations(start, sent.text, sent.citations)):
                        yield event("output_text.annotation.added", **where, annotation_index=annotated,
                                    annotation=note.model_dump(mode="json"))
                        annotated += 1
                elif got.type == "result":
                    result = got.result
        except Exception as exc:  # the status is already sent: the error in the stream, and it ends
            if not isinstance(exc, KgqaError):
                current_app.logger.exception("response stream failed")
            yield failed(stream_error_payload(exc))
            return
        finally:
            stream.cancel()
        if result is None:  # the client went away (nobody to tell), or the engine ended without a result
            if not stream.scope.cancelled:
                current_app.logger.error("the engine's stream ended without a result")
                yield failed(stream_error_payload(RuntimeError("no result")))
            return
        rest = answer.remainder(result)
        if rest:  # an abstention: nothing was verified, the engine says so
            yield event("output_text.delta", **where, delta=rest, logprobs=[])
        final = _response(ids, result.answer, result, stream.usage)
        part = final.output[0].content[0]
        yield event("output_text.done", **where, text=part.text, logprobs=[])
        yield event("content_part.done", **where, part=part.model_dump(mode="json"))
        yield event("output_item.done", output_index=0, item=final.output[0].model_dump(mode="json"))
        yield event("completed", response=final.model_dump(mode="json"))

    return sse_response(events(), on_close=stream.cancel)
