"""The QA engine: question in, grounded and cited answer (or abstention) out.

Stages: validate -> link and retrieve -> choose evidence within the token
budget -> prompt the LM and stream its tokens -> attribute and compose. The
engine holds no per-request state, so one instance serves every thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from kgqa.questions import validate_question
from kgqa.records import PassageHit, QAResult, StreamEvent, Timings
from kgqa.settings import Settings
from qa.answer import AnswerComposer, GroundedAnswer
from qa.attribution import Attributor
from qa.budget import Evidence, evidence_budget, select_evidence
from qa.prompt import build_messages
from qa.sentences import split_sentences
from qa.tuning import CANDIDATES, MAX_ANSWER_SENTENCES, MIN_DENSE_WITHOUT_ENTITY
from retrieval.pipeline import Mode, Retrieval, RetrievalPipeline

# A model echoing the data block's delimiters is copying the prompt, not answering.
ECHO_STOPS = ("<evidence>", "</evidence>")


class QAEngine:
    """Answers questions over the knowledge base in ``settings``; load with ``warm_up()``."""

    def __init__(self, settings: Settings, *, generator=None, knowledge_base=None):
        self.settings = settings
        self._generator = generator
        self._kb = knowledge_base
        self._pipeline: RetrievalPipeline | None = None
        self._composer: AnswerComposer | None = None
        self._lock = threading.Lock()
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def generator(self):
        return self._generator

    def warm_up(self) -> None:
        """Load the knowledge base and the LM once; safe to call from many threads."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self._warm_retrieval()
            if self._generator is None:
                from models.lm.transformers_backend import TransformersGenerator

                self._generator = TransformersGenerator(self.settings)
            self._generator.warm_up()
            self._ready = True

    def _warm_retrieval(self) -> None:
        """Only what retrieval needs: evaluation of retrieval never loads the LM."""
        if self._pipeline is not None:
            return
        if self._kb is None:
            from retrieval.knowledge_base import KnowledgeBase

            self._kb = KnowledgeBase(self.settings)
        self._kb.warm_up()
        self._composer = AnswerComposer(Attributor(encode=self._kb.embedder.encode_documents))
        self._pipeline = RetrievalPipeline(self._kb)

    # -- public API ----------------------------------------------------------------------------
    def retrieve(self, question: str, *, k: int = 10, mode: Mode = "hybrid") -> list[PassageHit]:
        """Ranked passages for ``question`` by one retrieval mode (dense|sparse|hybrid|graph)."""
        question = self._validate(question)
        if self._pipeline is None:
            with self._lock:
                self._warm_retrieval()
        return self._pipeline.retrieve(question, k=k, mode=mode, with_facts=False).passages

    def ask(self, question: str, *, k: int | None = None, history: Sequence[dict] | None = None) -> QAResult:
        result = None
        for event in self.ask_stream(question, k=k, history=history):
            if event.type == "result":
                result = event.result
        return result

    def ask_stream(
        self, question: str, *, k: int | None = None, history: Sequence[dict] | None = None
    ) -> Iterator[StreamEvent]:
        """Token events as the LM writes, then one ``result`` event with the grounded answer.

        A bad question or a missing knowledge base raises here, before the first event.
        """
        started = time.perf_counter()
        question = self._validate(question)
        self.warm_up()
        return self._answer_events(question, k, history, started)

    def _answer_events(self, question, k, history, started) -> Iterator[StreamEvent]:
        retrieval = self._retrieve_for_answer(question, k or self.settings.top_k, history)
        evidence = self._choose_evidence(retrieval)
        timings = Timings(link=retrieval.link_s, retrieve=retrieval.retrieve_s)
        reason = self._nothing_to_answer_from(retrieval, evidence)
        generated = ""
        if reason:
            grounded = self._composer.abstain(question, evidence, reason)
        else:
            generation_started = time.perf_counter()
            pieces: list[str] = []
            stream = self._generator.stream(
                build_messages(question, evidence, history), max_new_tokens=self.settings.max_new_tokens, stop=ECHO_STOPS
            )
            try:
                for piece in stream:
                    if not pieces:
                        timings.first_token = time.perf_counter() - started
                    pieces.append(piece)
                    yield StreamEvent(type="token", text=piece)
                    if len(split_sentences("".join(pieces))) > MAX_ANSWER_SENTENCES:
                        break
            finally:
                getattr(stream, "close", lambda: None)()  # frees the request's batch row at once
            generated = " ".join(split_sentences("".join(pieces))[:MAX_ANSWER_SENTENCES])
            timings.generate = time.perf_counter() - generation_started
            grounded = self._composer.compose(question, generated, evidence, retrieval.entities)
        timings.total = time.perf_counter() - started
        yield StreamEvent(type="result", result=self._result(question, generated, grounded, retrieval, evidence, timings))

    # -- stages --------------------------------------------------------------------------------
    def _validate(self, question: str) -> str:
        return validate_question(question, self.settings.max_question_chars)

    def _retrieve_for_answer(self, question: str, k: int, history: Sequence[dict] | None) -> Retrieval:
        retrieval = self._pipeline.retrieve(question, k=max(k, CANDIDATES), mode="graph")
        earlier = [t.get("content", "") for t in history or [] if t.get("role") == "user"]
        if not retrieval.entities and earlier:
            # A follow-up ("and its capital?") names its entity in an earlier turn.
            contextual = self._pipeline.retrieve(f"{earlier[-1]} {question}", k=max(k, CANDIDATES), mode="graph")
            contextual.link_s += retrieval.link_s
            contextual.retrieve_s += retrieval.retrieve_s
            retrieval = contextual
        retrieval.passages = retrieval.passages[:k]
        return retrieval

    def _choose_evidence(self, retrieval: Retrieval) -> Evidence:
        device = str(getattr(self._generator, "device", "cpu"))
        budget = evidence_budget(self.settings.evidence_tokens, device)
        return select_evidence(retrieval.passages, retrieval.facts, budget, self._generator.count_tokens)

    @staticmethod
    def _nothing_to_answer_from(retrieval: Retrieval, evidence: Evidence) -> str:
        if not evidence.passages and not evidence.facts:
            return "nothing relevant was retrieved"
        if not retrieval.entities and retrieval.best_dense < MIN_DENSE_WITHOUT_ENTITY:
            return f"no entity of the question is in the knowledge base and the closest passage is weak (cosine {retrieval.best_dense:.2f})"
        return ""

    def _result(self, question, generated, grounded: GroundedAnswer, retrieval, evidence, timings) -> QAResult:
        return QAResult(
            question=question, answer=grounded.answer, generated=generated, sentences=grounded.sentences,
            citations=grounded.citations, facts=evidence.facts, entities=retrieval.entities,
            abstained=grounded.abstained, abstain_reason=grounded.abstain_reason,
            dropped_sentences=grounded.dropped, timings=timings,
            model=str(getattr(self._generator, "model_name", "")), device=str(getattr(self._generator, "device", "")),
            attention=str(getattr(self._generator, "attention", "")),
        )
