"""Typed records that flow between packages: retrieval hits, evidence, and the QA result.

They are pydantic models so the API can validate, serialise and describe them
(``/openapi.json``) without a second copy of the schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LinkedEntity(BaseModel):
    """A knowledge-graph entity mentioned in the question."""

    entity_id: int
    title: str
    mention: str  # the question text that matched
    alias: str  # the title or alias it matched through
    url: str


class PassageHit(BaseModel):
    """A passage returned by a retriever, with the score that ranked it."""

    passage_id: str
    page_id: int
    title: str
    section: str  # section path, " > " separated; "" for the lead
    text: str
    url: str
    score: float
    sources: list[str] = Field(default_factory=list)  # which retrievers found it: dense, sparse, graph; bridge (a followed bridge, retrieval.chain)


class FactHit(BaseModel):
    """A knowledge-graph triple with its provenance, ranked against the question."""

    triple_id: int
    subject: str
    predicate: str
    object: str
    object_is_entity: bool
    page_id: int
    rev_id: int
    field: str  # the raw infobox key the fact came from
    url: str
    score: float


class Citation(BaseModel):
    """One piece of evidence a user can open and check. ``id`` is "1".."k" for passages, "F1".. for facts."""

    id: str
    kind: Literal["passage", "fact"]
    title: str
    section: str = ""
    url: str
    snippet: str
    score: float
    passage_id: str | None = None
    triple_id: int | None = None
    # The one sentence that backs the answer, and where it stands in the passage's text
    # (``text[sentence_start:sentence_end]``), so the page can highlight it.
    sentence: str = ""
    sentence_start: int | None = None
    sentence_end: int | None = None


class AnswerSentence(BaseModel):
    """A sentence of the answer and the evidence that supports it."""

    text: str
    citations: list[str]  # Citation ids
    supported: bool
    # The probability that its cited evidence sentence states it: the claim checker's for a sentence the
    # LM wrote, the reader's for an evidence sentence shown as written, the fact check's score for a fact.
    support: float


class Timings(BaseModel):
    """Seconds spent in each stage."""

    link: float = 0.0
    retrieve: float = 0.0
    first_token: float = 0.0
    first_sentence: float = 0.0  # the first verified answer sentence (0.0 when it abstained)
    generate: float = 0.0
    total: float = 0.0


class QAResult(BaseModel):
    """What the engine answers: the text, its grounding and how it was produced."""

    question: str
    answer: str  # the grounded answer shown to the user, with [n]/[Fn] markers
    generated: str = ""  # the LM's raw text, exactly as streamed
    sentences: list[AnswerSentence]
    citations: list[Citation]
    facts: list[FactHit]
    entities: list[LinkedEntity]
    abstained: bool
    abstain_reason: str = ""
    dropped_sentences: list[str] = Field(default_factory=list)  # drafted sentences no check backed, so not shown
    timings: Timings = Field(default_factory=Timings)
    model: str = ""
    backend: str = ""  # what decoded the answer: "onnx", "transformers", "llamacpp" or "openai"
    device: str = ""
    attention: str = ""


class StreamEvent(BaseModel):
    """One event of a streamed answer.

    ``token``: the LM's raw text as it comes (never shown as the answer: it is unverified);
    ``sentence``: an answer sentence as soon as it is verified, with the citation that backs it;
    ``result``: the final grounded result.
    """

    type: Literal["token", "sentence", "result"]
    text: str = ""
    sentence: AnswerSentence | None = None
    citations: list[Citation] = Field(default_factory=list)
    result: QAResult | None = None
