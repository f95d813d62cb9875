"""``/openapi.json``: OpenAPI 3.2 built from the app's routes and the pydantic models they exchange.

Each route is described once in ``_operations``, with every status it can answer; a test checks
that this table and the app's URL map list exactly the same routes, and a schemathesis run
(``tests/app/test_openapi_contract.py``) that every response keeps to it. OpenAPI 3.2 because it
describes an event stream as what it is: ``itemSchema`` is one SSE event (``data``, a string whose
JSON ``contentSchema`` names), ``schema`` the whole stream (``data: [DONE]`` once, on chat completions).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app import schemas
from app.kb import PassageView
from kgqa.records import QAResult

_JSON, _SSE, _HTML = "application/json", "text/event-stream", "text/html"

# What each error status means; an operation lists the ones it can answer.
_STATUS = {
    "400": "malformed JSON, or (on /v1) any invalid request; or a malformed HTTP request, refused by the server "
           "before the app (a missing or doubled Host, both Content-Length and Transfer-Encoding)",
    "404": "not found",
    "413": "body over KGQA_MAX_BODY_BYTES (refused from its Content-Length before it is read)",
    "415": "body is not application/json",
    "422": "invalid body, or a question or history turn that is empty, too long (characters or the LM's tokens) or "
           "holds a control character or unassigned code point",
    "429": "over KGQA_RATE_LIMIT_PER_MINUTE requests from this client (see Retry-After)",
    "431": "request line and headers over 64 KiB",
    "499": "the client went away mid-answer and the answer was given up (nobody reads it)",
    "500": "a bug (logged with its traceback)",
    "501": "a Transfer-Encoding other than chunked",
    "502": "the LM server (KGQA_LM_URL) failed",
    "503": "engine warming up (Retry-After), knowledge base missing, an index file damaged, or every answer place "
           "and waiting place taken (overloaded, Retry-After)",
}
# Refused by the server in front of the app (waitress) on any route, whatever the route.
_TRANSPORT = ("400", "413", "431", "500", "501")
_REFUSED_BEFORE_THE_APP = ("400", "413", "431", "501")  # on a web page too, these come as JSON
_RATE_LIMITED = ("429",)
_ANSWERING = ("415", "499", "502", "503")  # a question admitted to the engine
_KB = ("404", "503")  # a lookup in the knowledge base
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}


@dataclass
class Operation:
    summary: str
    request: type[BaseModel] | None = None
    ok: list[tuple[str, type[BaseModel] | None]] = field(default_factory=list)  # the 200's (content type, model)
    errors: tuple[str, ...] = ()  # besides _TRANSPORT
    error_types: tuple[str, ...] = (_JSON,)  # the error body's content types (a web page answers with HTML)


_LEGACY = "Not served (the legacy text completions API): always 404, pointing at /v1/chat/completions"


def _entity_model():
    from kg.queries import EntityView

    return EntityView


def _operations() -> dict[tuple[str, str], Operation]:
    health = [(_JSON, schemas.Health)]
    spec = [(_JSON, None)]
    page, html = [(_HTML, None)], (_HTML,)
    return {
        ("/api/v1/ask", "post"): Operation(
            "Answer a question with citations (when stream is true, SSE: a sentence event as soon as each answer "
            "sentence is verified, then one result event; the LM's raw tokens are never sent)",
            schemas.AskRequest, [(_JSON, QAResult), (_SSE, schemas.AskStreamEvent)], _RATE_LIMITED + _ANSWERING + ("422",)),
        ("/api/v1/entities/{name}", "get"): Operation(
            "An entity by title, alias or redirect", ok=[(_JSON, _entity_model())], errors=_RATE_LIMITED + _KB),
        ("/api/v1/passages/{passage_id}", "get"): Operation(
            "A passage with its article and URL", ok=[(_JSON, PassageView)], errors=_RATE_LIMITED + _KB),
        ("/healthz", "get"): Operation("Liveness", ok=health),
        ("/api/v1/healthz", "get"): Operation("Liveness", ok=health),
        ("/readyz", "get"): Operation("Readiness: 200 once the engine is warm", ok=health, errors=("503",)),
        ("/api/v1/readyz", "get"): Operation("Readiness: 200 once the engine is warm", ok=health, errors=("503",)),
        ("/openapi.json", "get"): Operation("This document", ok=spec),
        ("/api/v1/openapi.json", "get"): Operation("This document", ok=spec),
        ("/v1/chat/completions", "post"): Operation(
            "OpenAI-compatible chat completion (when stream is true, SSE chunks: each verified sentence with its "
            "citations as soon as it is verified, a final chunk with every citation, then data: [DONE])",
            schemas.ChatCompletionRequest,
            [(_JSON, schemas.ChatCompletion), (_SSE, schemas.ChatCompletionStreamData)], _RATE_LIMITED + _ANSWERING),
        ("/v1/responses", "post"): Operation(
            "OpenAI Responses API: the answer as one message whose output_text has url_citation annotations "
            "(when stream is true, SSE events: a delta and its annotations as each sentence is verified, then "
            "response.completed; no [DONE])",
            schemas.ResponseRequest, [(_JSON, schemas.ResponseObject), (_SSE, schemas.ResponseStreamEvent)],
            _RATE_LIMITED + _ANSWERING),
        ("/v1/completions", "get"): Operation(_LEGACY, errors=_RATE_LIMITED + ("404",)),
        ("/v1/completions", "post"): Operation(_LEGACY, errors=_RATE_LIMITED + ("404",)),
        ("/v1/models", "get"): Operation("OpenAI-compatible model list", ok=[(_JSON, schemas.ModelList)],
                                         errors=_RATE_LIMITED),
        ("/v1/models/{model}", "get"): Operation("OpenAI-compatible model", ok=[(_JSON, schemas.ModelCard)],
                                                 errors=_RATE_LIMITED + ("404",)),
        ("/", "get"): Operation("The Q&A web page", ok=page, errors=_RATE_LIMITED, error_types=html),
        ("/entity/{name}", "get"): Operation("An entity's web page", ok=page, errors=_RATE_LIMITED + _KB,
                                             error_types=html),
        ("/passage/{passage_id}", "get"): Operation("A passage's web page", ok=page, errors=_RATE_LIMITED + _KB,
                                                    error_types=html),
        # a browser that prefers HTML gets a missing file's 404 as a page
        ("/static/{filename}", "get"): Operation("Static assets (script, style)", errors=("404",),
                                                 error_types=(_JSON, _HTML)),
    }


def openapi_path(rule: str) -> str:
    """Flask's ``/x/<path:name>`` as OpenAPI's ``/x/{name}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def app_routes(app: Flask) -> set[tuple[str, str]]:
    """Every (path, method) the app serves, HEAD and OPTIONS aside."""
    return {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def _ref(model) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _sse(model, *, done: bool = False) -> dict:
    """An event stream whose events each carry one ``data:`` line of JSON that ``model`` describes; with ``done``,
    or the literal ``[DONE]``, which ends the stream (once)."""
    json_data = {"contentMediaType": _JSON, "contentSchema": _ref(model)}
    data = {"type": "string", **({"if": {"const": "[DONE]"}, "else": json_data} if done else json_data)}
    content = {"itemSchema": {"type": "object", "required": ["data"], "properties": {
        "data": data, "event": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"}}}}
    if done:
        is_done = {"type": "object", "required": ["data"], "properties": {"data": {"const": "[DONE]"}}}
        content["schema"] = {"type": "array", "contains": is_done, "minContains": 1, "maxContains": 1,
                             "description": "the stream's events: data: [DONE] once, the last"}
    return content


def _static_files(app: Flask) -> list[str]:
    folder = Path(app.static_folder or "")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _static_types(files: list[str]) -> list[tuple[str, None]]:
    return [(t, None) for t in sorted({mimetypes.guess_type(f)[0] or "application/octet-stream" for f in files})]


def _document_limits(components: dict, settings) -> None:
    """What ``kgqa.questions.validate_question`` and the token limits ask of a question, in the request schemas."""
    no_controls = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # tab, newline and carriage return allowed
    question = components["AskRequest"]["properties"]["question"]
    question.update(
        minLength=1, maxLength=settings.max_question_chars,
        pattern=rf"^{no_controls}*[^\s\x00-\x1f\x7f-\x9f]{no_controls}*$",
        description=f"Not blank, at most {settings.max_question_chars} characters (after invisible formatting "
                    "characters are removed and the ends trimmed), no control character or unassigned code point, "
                    f"and at most {settings.max_question_tokens} of the LM's tokens (KGQA_MAX_QUESTION_TOKENS); "
                    "else 422 invalid_question.")
    turn = components["ChatTurn"]["properties"]["content"]
    turn.update(pattern=rf"^{no_controls}*$",
                description=f"No control character or unassigned code point; the turns the prompt keeps hold at "
                            f"most {settings.max_history_tokens} of the LM's tokens together (KGQA_MAX_HISTORY_TOKENS).")
    components["ChatCompletionRequest"]["properties"]["messages"]["description"] = (
        "The conversation; the last message must have role user: it is the question, held to the limits of "
        f"/api/v1/ask's question (at most {settings.max_question_chars} characters, ...), else 400.")


def _responses(op: Operation) -> dict:
    responses: dict = {}
    content = {content_type: ({"schema": _ref(model)} if model else {}) for content_type, model in op.ok}
    for content_type, model in op.ok:
        if content_type == _SSE:
            content[_SSE] = _sse(model, done=model is schemas.ChatCompletionStreamData)
    if content:
        responses["200"] = {"description": "OK", "content": content}
    for status in sorted({*_TRANSPORT, *op.errors}):
        # the server in front of the app (waitress) answers JSON; the app answers a web page's errors as a page
        types = (_JSON,) if status in _REFUSED_BEFORE_THE_APP else op.error_types
        body = {t: ({"schema": _ref(schemas.ErrorBody)} if t == _JSON else {}) for t in types}
        responses[status] = {"description": _STATUS[status], "content": body}
        if status in ("429", "503"):
            responses[status]["headers"] = _RETRY_AFTER
    return responses


def build_spec(app: Flask) -> dict:
    operations = _operations()
    static = _static_files(app)
    operations[("/static/{filename}", "get")].ok = _static_types(static)
    models = {schemas.ErrorBody, schemas.StructuredAnswer}  # StructuredAnswer: the JSON content of response_format
    for op in operations.values():
        models.update(m for m in [op.request, *(model for _ct, model in op.ok)] if m)
    requests = (schemas.AskRequest, schemas.ChatCompletionRequest, schemas.ResponseRequest)
    _, top = models_json_schema(
        [(model, "validation" if model in requests else "serialization")
         for model in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    components = top.get("$defs", {})
    _document_limits(components, app.config["KGQA_SETTINGS"])

    paths: dict[str, dict] = {}
    for (path, method), op in sorted(operations.items()):
        spec_op: dict = {"summary": op.summary, "responses": _responses(op)}
        params = re.findall(r"{(\w+)}", path)
        if params:
            spec_op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                     for p in params]
            if path == "/static/{filename}":
                spec_op["parameters"][0]["schema"]["enum"] = static
        if op.request:
            spec_op["requestBody"] = {"required": True, "content": {_JSON: {
                "schema": _ref(op.request), "examples": _REQUEST_EXAMPLES.get(path, {})}}}
        paths.setdefault(path, {})[method] = spec_op
    return {
        "openapi": "3.2.0",
        "info": {"title": "kgqa", "version": "1", "description": _DESCRIPTION},
        "paths": paths,
        "components": {"schemas": components},
    }


_DESCRIPTION = (
    "Grounded, cited question answering over Wikipedia. Every error is an ErrorBody ({\"error\": {code, message, "
    "type}}); a web page's errors are a small HTML page. Besides the statuses each operation lists, an unknown "
    "route is 404 and a method a route does not serve is 405 (Allow says which). Event streams are SSE: "
    "one data: line of JSON per event, ':' keep-alive comments between them; /v1/chat/completions ends with "
    "data: [DONE]."
)

_QUESTION = "What is the capital of Alabama?"
_CHAT = {"model": "kgqa", "messages": [{"role": "user", "content": _QUESTION}]}
_REQUEST_EXAMPLES = {
    "/api/v1/ask": {"plain": {"value": {"question": _QUESTION, "k": 5}},
                    "streamed": {"value": {"question": _QUESTION, "stream": True}}},
    "/v1/chat/completions": {"plain": {"value": _CHAT},
                             "streamed": {"value": {**_CHAT, "stream": True, "stream_options": {"include_usage": True}}},
                             "json": {"value": {**_CHAT, "response_format": {"type": "json_object"}}}},
    "/v1/responses": {"plain": {"value": {"model": "kgqa", "input": _QUESTION}},
                      "streamed": {"value": {"model": "kgqa", "input": _QUESTION, "stream": True}}},
}
