"""The QA engine: question in, grounded and cited answer (or abstention) out.

The answer path, stage by stage (each a method the evaluation calls as it is):

1. ``gather``: validate, link and retrieve; choose the prompt's evidence within the token budget;
2. ``draft``: prompt the LM and stream its text;
3. check: each drafted sentence, once complete, goes to the ``AnswerBuilder``
   (``qa.answer``), which shows it cited when one evidence sentence states it
   (``qa.checker``), or two do across a comparison or a bridge (``qa.comparison``,
   ``qa.bridge``), and drops it otherwise;
4. show or abstain: the checked sentences, else the reader's evidence sentence, else
   "the knowledge base does not say".

A fact that answers outright leads before any draft. The engine holds no per-request
state, so one instance serves every thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from kgqa.questions import validate_question
from kgqa.records import PassageHit, QAResult, StreamEvent, Timings
from kgqa.settings import Settings
from models.lm.generator import Generator
from qa.answer import AnswerBuilder, AnswerComposer, GroundedAnswer
from qa.budget import Evidence, evidence_budget, select_evidence
from qa.checker import MODEL_PATH as CHECKER_MODEL_PATH
from qa.checker import CheckerModel, ClaimChecker
from qa.claims import ClaimVerifier
from qa.comparison import read_comparison
from qa.prompt import build_messages
from qa.sentences import split_sentences
from qa.reader import MODEL_PATH as READER_MODEL_PATH
from qa.reader import AnswerReader, ReaderModel
from qa.tuning import CANDIDATES, MAX_ANSWER_SENTENCES, MIN_DENSE_WITHOUT_ENTITY
from retrieval.pipeline import Mode, Retrieval, RetrievalPipeline

# A model echoing the data block's delimiters is copying the prompt, not answering.
ECHO_STOPS = ("<evidence>", "</evidence>")


class QAEngine:
    """Answers questions over the knowledge base in ``settings``; load with ``warm_up()``."""

    def __init__(self, settings: Settings, *, generator: Generator | None = None, knowledge_base=None,
                 reader: AnswerReader | None = None, load_reader: bool = True,
                 checker_model: CheckerModel | None = None, load_checker: bool = True):
        """``reader`` / ``checker_model``: the extractive reader and the claim checker's model to answer
        with; else the fitted ones that ``settings.reader_model`` / ``settings.checker_model`` name
        (default qa/reader_model.json, qa/checker_model.json), unless ``load_reader`` /
        ``load_checker`` is False (fitting a new one)."""
        self.settings = settings
        self._generator = generator
        self._kb = knowledge_base
        self._reader = reader
        self._load_reader = load_reader
        self._checker_model = checker_model
        self._load_checker = load_checker
        self._pipeline: RetrievalPipeline | None = None
        self._composer: AnswerComposer | None = None
        self._lock = threading.Lock()
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def generator(self) -> Generator | None:
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
                from models.lm.factory import make_generator

                self._generator = make_generator(self.settings)
            self._generator.warm_up()
            self._composer.checker.warm_up()
            self._ready = True

    def _warm_retrieval(self) -> None:
        """Only what retrieval needs: evaluation of retrieval never loads the LM."""
        if self._pipeline is not None:
            return
        if self._kb is None:
            from retrieval.knowledge_base import KnowledgeBase

            self._kb = KnowledgeBase(self.settings)
        self._kb.warm_up()
        reader = self._reader
        if reader is None and self._load_reader:
            reader = AnswerReader(ReaderModel.load(self.settings.reader_model or READER_MODEL_PATH))
        self._pipeline = RetrievalPipeline(self._kb)
        # one cache of word vectors for the facts' ranking and the claim checks (same embedder)
        verifier = ClaimVerifier(encode=self._kb.embedder.encode_documents, words=self._pipeline.vectors)
        model = self._checker_model
        if model is None and self._load_checker:
            model = CheckerModel.load(self.settings.checker_model or CHECKER_MODEL_PATH)
        checker = ClaimChecker.of(verifier, model) if model is not None else ClaimChecker(verifier)
        self._composer = AnswerComposer(verifier, checker, reader)

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

    # -- the stages one by one, for calibration and inspection -----------------------------------
    @property
    def composer(self) -> AnswerComposer:
        self.warm_up()
        return self._composer

    def gather(self, question: str, *, k: int | None = None,
               history: Sequence[dict] | None = None) -> tuple[Retrieval, Evidence]:
        """What an answer to ``question`` is grounded in: the retrieval and the evidence the prompt holds."""
        question = self._validate(question)
        self.warm_up()
        return self._gather(question, k, history)

    def _gather(self, question: str, k: int | None, history: Sequence[dict] | None) -> tuple[Retrieval, Evidence]:
        retrieval = self._retrieve_for_answer(question, k or self.settings.top_k, history)
        self._compared_facts_first(question, retrieval)
        return retrieval, self._choose_evidence(retrieval)

    def _compared_facts_first(self, question: str, retrieval: Retrieval) -> None:
        """A comparison's two facts lead the prompt's facts, so the LM and the checks read both sides."""
        asked = read_comparison(question, retrieval.entities)
        if asked is None or asked.is_choice:
            return
        # every fact of both sides, ranked by the relation compared rather than by the whole question
        comparison = self._composer.compare(asked, self._pipeline.facts_for(asked.relation_hint, asked.options, limit=None))
        if comparison is not None:
            compared = [side.fact for side in comparison.sides]
            ids = {f.triple_id for f in compared}
            retrieval.facts = compared + [f for f in retrieval.facts if f.triple_id not in ids]

    @staticmethod
    def evidence_to_read(retrieval: Retrieval, prompt: Evidence) -> Evidence:
        """What the reader reads: the prompt's facts and every retrieved passage, whole.

        The prompt holds the passages its token budget fits, in rank order, so its [n]
        are the first of these; a passage the budget cut is read whole here.
        """
        return Evidence(passages=list(retrieval.passages), facts=list(prompt.facts), tokens=prompt.tokens)

    def draft(self, question: str, evidence: Evidence, history: Sequence[dict] | None = None) -> list[str]:
        """The LM's sentences for ``question`` over ``evidence``, cut as the engine reads them; nothing verified."""
        self.warm_up()
        generation = self._generator.generate(
            build_messages(question, evidence, history), max_new_tokens=self.settings.max_new_tokens, stop=ECHO_STOPS
        )
        return split_sentences(generation.text)[:MAX_ANSWER_SENTENCES]

    def _answer_events(self, question, k, history, started) -> Iterator[StreamEvent]:
        retrieval, prompt_evidence = self._gather(question, k, history)
        evidence = self.evidence_to_read(retrieval, prompt_evidence)
        timings = Timings(link=retrieval.link_s, retrieve=retrieval.retrieve_s)
        grounding = self._composer.ground(question, evidence, retrieval.entities)
        reason = self.nothing_to_answer_from(retrieval, prompt_evidence) or self._composer.precheck(grounding)
        generated = ""
        if reason:
            grounded = self._composer.abstain(question, evidence, reason)
        else:
            builder = AnswerBuilder(self._composer, grounding)
            lead = builder.start()
            if lead is not None:  # a fact that answers outright needs no generation
                yield self._shown(lead, timings, started)
            else:
                generated = yield from self._stream_draft(builder, question, prompt_evidence, history, timings, started)
            grounded = builder.finish()
            if not grounded.abstained and not timings.first_sentence:  # the reader's sentence, after the draft
                timings.first_sentence = time.perf_counter() - started
                yield StreamEvent(type="sentence", sentence=grounded.sentences[0], citations=grounded.citations[:1])
        timings.total = time.perf_counter() - started
        yield StreamEvent(type="result", result=self._result(question, generated, grounded, retrieval, evidence, timings))

    @staticmethod
    def _shown(accepted, timings: Timings, started: float) -> StreamEvent:
        """The event for a sentence the checks backed, timed if it is the answer's first."""
        if not timings.first_sentence:
            timings.first_sentence = time.perf_counter() - started
        return StreamEvent(type="sentence", sentence=accepted[0], citations=accepted[1])

    def _stream_draft(self, builder: AnswerBuilder, question: str, prompt_evidence: Evidence,
                      history: Sequence[dict] | None, timings: Timings, started: float) -> Iterator[StreamEvent]:
        """Stream the LM's draft as token events; each sentence, once complete, is checked and sent if it stands.

        Returns the text streamed.
        """
        generation_started = time.perf_counter()
        pieces: list[str] = []
        checked = 0
        stream = self._generator.stream(
            build_messages(question, prompt_evidence, history), max_new_tokens=self.settings.max_new_tokens,
            stop=ECHO_STOPS,
        )
        try:
            for piece in stream:
                if not pieces:
                    timings.first_token = time.perf_counter() - started
                pieces.append(piece)
                yield StreamEvent(type="token", text=piece)
                sentences = split_sentences("".join(pieces))
                # Every sentence but the last is complete: check it now.
                while checked < min(len(sentences) - 1, MAX_ANSWER_SENTENCES):
                    accepted = builder.add(sentences[checked])
                    checked += 1
                    if accepted is not None:
                        yield self._shown(accepted, timings, started)
                if checked >= MAX_ANSWER_SENTENCES:
                    break
        finally:
            getattr(stream, "close", lambda: None)()  # frees the request's batch row at once
        for sentence in split_sentences("".join(pieces))[checked:MAX_ANSWER_SENTENCES]:
            accepted = builder.add(sentence)
            if accepted is not None:
                yield self._shown(accepted, timings, started)
        timings.generate = time.perf_counter() - generation_started
        return "".join(pieces)

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
        budget = evidence_budget(self.settings.evidence_tokens, self._generator.device)
        return select_evidence(retrieval.passages, retrieval.facts, budget, self._generator.count_tokens)

    @staticmethod
    def nothing_to_answer_from(retrieval: Retrieval, evidence: Evidence) -> str:
        """Why retrieval left nothing to answer from ("" when it did not): abstain before any generation."""
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
            model=self._generator.model_name, backend=self._generator.backend, device=self._generator.device,
            attention=self._generator.attention,
        )
