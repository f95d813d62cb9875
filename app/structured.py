"""Structured output on ``/v1/chat/completions``: ``response_format`` asks for the answer as one JSON object.

The object is always ``StructuredAnswer`` (``answer``, ``sentences``, ``citations``,
``abstained``): ``json_object`` gets all of it; ``json_schema`` gets the fields its schema
names, at every depth (a client's own model of the answer, e.g. ``client.chat.completions.parse(...,
response_format=Model)`` or LangChain's ``with_structured_output``). A schema the answer
cannot fit is a 400 before any work: it is checked (``jsonschema``) against an answered and
an abstained sample, and again against the real answer. ``tools`` are refused the same way:
the answer comes from the knowledge base, never from a tool.
"""

from __future__ import annotations

import json
import logging

import jsonschema
from werkzeug.exceptions import BadRequest

from app.schemas import ChatCompletionRequest, CitationOut, StructuredAnswer
from kgqa.records import AnswerSentence, QAResult

log = logging.getLogger(__name__)

FIELDS = tuple(StructuredAnswer.model_fields)


class InvalidParameter(BadRequest):
    """A 400 that names the request parameter at fault (``param`` in the error body, as OpenAI does)."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param
        self.error_code = "invalid_request"


def _resolve(schema, root: dict) -> dict:
    """``schema`` with its local ``$ref`` (``#/$defs/Name``, as pydantic and openai's ``parse`` write them) followed."""
    for _ in range(32):  # a cycle of references ends here
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not (isinstance(ref, str) and ref.startswith("#/")):
            break
        node = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = node
    return schema if isinstance(schema, dict) else {}


def project(value, schema, root: dict):
    """``value`` cut to what ``schema`` names: an object keeps only the ``properties`` its schema lists, at
    every depth (through ``items``, ``$ref`` and ``anyOf``/``oneOf``/``allOf`` branches); the rest is kept."""
    schema = _resolve(schema, root)
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        properties = schema["properties"]
        return {key: project(item, properties[key], root) for key, item in value.items() if key in properties}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [project(item, schema["items"], root) for item in value]
    for branch in (*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ())):
        branch = _resolve(branch, root)
        if isinstance(value, dict) and "properties" in branch or isinstance(value, list) and "items" in branch:
            return project(value, branch, root)
    return value


class JSONAnswer:
    """How the answer is sent as JSON: what a schema names of it (all of it without one), checked against it."""

    def __init__(self, schema: dict | None = None):
        self.schema = schema

    def document(self, result: QAResult) -> dict:
        full = StructuredAnswer(answer=result.answer, sentences=result.sentences,
                                citations=[CitationOut.of(c) for c in result.citations], abstained=result.abstained)
        document = full.model_dump(mode="json")
        return document if self.schema is None else project(document, self.schema, self.schema)

    def problem(self, document: dict) -> str | None:
        """Why ``document`` does not fit the schema, or None."""
        if self.schema is None:
            return None
        error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(self.schema)(self.schema)
                                                 .iter_errors(document))
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"{error.message}" + (f" (at {where})" if where else "")

    def render(self, result: QAResult) -> str:
        """The completion's content: the answer as JSON (logged, still sent, if the real answer misfits the schema)."""
        document = self.document(result)
        problem = self.problem(document)
        if problem:
            log.error("the structured answer does not fit the client's schema: %s", problem)
        return json.dumps(document, ensure_ascii=False)


def _samples() -> list[QAResult]:
    """An answer citing a passage and an abstention listing a fact: the shapes a real answer takes."""
    from kgqa.records import Citation

    passage = Citation(id="1", kind="passage", title="Alabama", section="Geography", snippet="Alabama's capital is "
                       "Montgomery.", url="https://en.wikipedia.org/wiki/Alabama", score=0.9, passage_id="1:1:0:0",
                       sentence="Alabama's capital is Montgomery.", sentence_start=0, sentence_end=32)
    fact = Citation(id="F1", kind="fact", title="Alabama", section="Infobox: capital", snippet="Alabama — capital: "
                    "Montgomery", url="https://en.wikipedia.org/wiki/Alabama", score=0.8, triple_id=1)
    answered = QAResult(question="q", answer="Montgomery is the capital of Alabama [1].", abstained=False,
                        sentences=[AnswerSentence(text="Montgomery is the capital of Alabama.", citations=["1"],
                                                  supported=True, support=0.9)],
                        citations=[passage], facts=[], entities=[])
    abstained = QAResult(question="q", answer="The knowledge base does not say.", abstained=True,
                         sentences=[AnswerSentence(text="The knowledge base does not say.", citations=[],
                                                   supported=False, support=0.0)],
                         citations=[fact], facts=[], entities=[])
    return [answered, abstained]


def requested_shape(body: ChatCompletionRequest) -> JSONAnswer | None:
    """How the request wants its content: None for text, else a ``JSONAnswer``; a 400 for tools or for a
    ``response_format`` the answer cannot fit, before any work is done."""
    if body.tools:
        raise InvalidParameter("tools", "tools are not supported: kgqa answers from its knowledge base, with "
                                        "citations, and calls no tool; send the question without tools")
    if body.tool_choice not in (None, "none"):
        raise InvalidParameter("tool_choice", "tool_choice is not supported: kgqa calls no tool (only 'none')")
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema is None or fmt.json_schema.json_schema is None:
        if fmt.type == "json_schema" and fmt.json_schema is None:
            raise InvalidParameter("response_format.json_schema", "response_format of type json_schema needs json_schema")
        return JSONAnswer()
    schema = fmt.json_schema.json_schema
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidParameter("response_format.json_schema.schema", f"not a valid JSON Schema: {exc.message}") from None
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    asked = set(properties) | set(schema.get("required") or [])
    unknown = sorted(asked - set(FIELDS))
    if unknown:
        raise InvalidParameter("response_format.json_schema.schema",
                               f"the answer is an object with {', '.join(FIELDS)} (see StructuredAnswer in "
                               f"/openapi.json); the schema asks for {', '.join(unknown)}, which it does not have")
    shape = JSONAnswer(schema)
    for sample in _samples():
        problem = shape.problem(shape.document(sample))
        if problem:
            raise InvalidParameter("response_format.json_schema.schema",
                                   f"the answer (StructuredAnswer in /openapi.json) does not fit the schema: {problem}")
    return shape
