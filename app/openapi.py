"""``/openapi.json``: OpenAPI 3.1 built from the app's routes and the pydantic models they exchange.

Each route is described once in ``OPERATIONS``; a test checks that this table
and the app's URL map list exactly the same routes, so the spec cannot drift.
"""

from __future__ import annotations

import re

from flask import Flask
from pydantic.json_schema import models_json_schema

from app import schemas
from app.kb import PassageView
from kgqa.records import QAResult

_JSON, _SSE, _HTML = "application/json", "text/event-stream", "text/html"
_ERRORS = {
    "400": "malformed JSON or a bad request",
    "404": "not found",
    "405": "method not allowed",
    "413": "body too large",
    "415": "body is not JSON",
    "422": "invalid body or question",
    "429": "rate limit exceeded (see Retry-After)",
    "503": "engine warming up, knowledge base missing, or every answer place and waiting place taken (see Retry-After)",
}


_LEGACY = "Not served (the legacy text completions API): always 404, pointing at /v1/chat/completions"


def _entity_model():
    from kg.queries import EntityView

    return EntityView


# (path, method) -> (summary, request model, [(content type of the 200 response, its model or None)])
def _operations() -> dict[tuple[str, str], tuple]:
    ok_json = lambda model: [(_JSON, model)]  # noqa: E731
    health = ok_json(schemas.Health)
    return {
        ("/api/v1/ask", "post"): (
            "Answer a question with citations (when stream is true, SSE: a sentence event as soon as each answer "
            "sentence is verified, then one result event; the LM's raw tokens are never sent)",
            schemas.AskRequest,
            [(_JSON, QAResult), (_SSE, schemas.AskStreamEvent)],
        ),
        ("/api/v1/entities/{name}", "get"): ("An entity by title, alias or redirect", None, ok_json(_entity_model())),
        ("/api/v1/passages/{passage_id}", "get"): ("A passage with its article and URL", None, ok_json(PassageView)),
        ("/healthz", "get"): ("Liveness", None, health),
        ("/api/v1/healthz", "get"): ("Liveness", None, health),
        ("/readyz", "get"): ("Readiness: 200 once the engine is warm", None, health),
        ("/api/v1/readyz", "get"): ("Readiness: 200 once the engine is warm", None, health),
        ("/openapi.json", "get"): ("This document", None, [(_JSON, None)]),
        ("/api/v1/openapi.json", "get"): ("This document", None, [(_JSON, None)]),
        ("/v1/chat/completions", "post"): (
            "OpenAI-compatible chat completion (when stream is true, SSE chunks: each verified sentence with its "
            "citations as soon as it is verified, a final chunk with every citation, then [DONE])",
            schemas.ChatCompletionRequest,
            [(_JSON, schemas.ChatCompletion), (_SSE, schemas.ChatCompletionChunk)],
        ),
        ("/v1/responses", "post"): (
            "OpenAI Responses API: the answer as one message whose output_text has url_citation annotations "
            "(when stream is true, SSE events: a delta and its annotations as each sentence is verified, then "
            "response.completed)",
            schemas.ResponseRequest,
            [(_JSON, schemas.ResponseObject), (_SSE, schemas.ResponseStreamEvent)],
        ),
        ("/v1/completions", "get"): (_LEGACY, None, []),
        ("/v1/completions", "post"): (_LEGACY, None, []),
        ("/v1/models", "get"): ("OpenAI-compatible model list", None, ok_json(schemas.ModelList)),
        ("/v1/models/{model}", "get"): ("OpenAI-compatible model", None, ok_json(schemas.ModelCard)),
        ("/", "get"): ("The Q&A web page", None, [(_HTML, None)]),
        ("/entity/{name}", "get"): ("An entity's web page", None, [(_HTML, None)]),
        ("/passage/{passage_id}", "get"): ("A passage's web page", None, [(_HTML, None)]),
        ("/static/{filename}", "get"): ("Static assets (script, style)", None, [("application/octet-stream", None)]),
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


def build_spec(app: Flask) -> dict:
    operations = _operations()
    models = {schemas.ErrorBody, schemas.StructuredAnswer}  # StructuredAnswer: the JSON content of response_format
    for _summary, request_model, responses in operations.values():
        models.update(m for m in [request_model, *(model for _ct, model in responses)] if m)
    requests = (schemas.AskRequest, schemas.ChatCompletionRequest, schemas.ResponseRequest)
    _, top = models_json_schema(
        [(model, "validation" if model in requests else "serialization")
         for model in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    ref = lambda model: {"$ref": f"#/components/schemas/{model.__name__}"}  # noqa: E731

    paths: dict[str, dict] = {}
    for (path, method), (summary, request_model, responses) in sorted(operations.items()):
        content = {content_type: ({"schema": ref(model)} if model else {}) for content_type, model in responses}
        op: dict = {"summary": summary, "responses": {"200": {"description": "OK", "content": content}} if content else {}}
        for status, description in _ERRORS.items():
            op["responses"][status] = {"description": description, "content": {_JSON: {"schema": ref(schemas.ErrorBody)}}}
        params = re.findall(r"{(\w+)}", path)
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
        if request_model:
            op["requestBody"] = {"required": True, "content": {_JSON: {"schema": ref(request_model)}}}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "kgqa", "version": "1", "description": "Grounded, cited question answering over Wikipedia."},
        "paths": paths,
        "components": {"schemas": top.get("$defs", {})},
    }
