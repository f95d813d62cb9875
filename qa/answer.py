"""Turn the model's text and the evidence into the grounded answer, or an abstention.

The model proposes; this module disposes. Each sentence is shown only when one
evidence sentence (or one fact) states what it claims about the question
(``qa.claims``), cited to that sentence. A fact that answers the question
outright leads. When no generated sentence stands, the evidence sentence that
best answers the question is shown: a span of it the LM scores as the answer
(``qa.spans``), or the sentence as it is written; either is copied, so checkable
by construction. When none does, the engine abstains and lists the closest
sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kgqa.records import AnswerSentence, Citation, FactHit, LinkedEntity
from kgqa.text import content_words, numbers
from kgqa.text import words as all_words
from qa.budget import Evidence, fact_line
from qa.claims import (
    REASON_WORDS,
    ClaimVerifier,
    EvidenceSentence,
    QuestionFrame,
    Verdict,
    evidence_sentences,
    frame_question,
    names,
)
from qa.sentences import markers_in, split_sentences, strip_markers, with_markers
from qa.spans import SpanScorer, enumerate_spans
from qa.tuning import (
    CLOSEST_SOURCES,
    SNIPPET_CHARS,
    SPAN_OFF,
    SPAN_SENTENCES,
    TOPIC_COVERAGE_FLOOR,
)

_REFUSAL = re.compile(
    r"\b(do not know|don't know|not sure|no information|not (?:mentioned|provided|contain|stated|say)|"
    r"cannot (?:answer|find|determine)|can't (?:answer|find)|unable to|does not (?:say|mention|contain|provide))\b",
    re.IGNORECASE,
)


@dataclass
class GroundedAnswer:
    answer: str
    sentences: list[AnswerSentence]
    citations: list[Citation]
    abstained: bool
    abstain_reason: str = ""
    dropped: list[str] = field(default_factory=list)


@dataclass
class Grounding:
    """Everything the composer reads about one question's evidence, computed once."""

    question: str
    frame: QuestionFrame
    evidence: Evidence
    readings: list
    coverage: float


def topic_coverage(question: str, evidence: Evidence) -> float:
    """Share of the question's names and numbers that some evidence mentions (1.0 when it has none).

    A number in the question ("2030") is a hard constraint: if no evidence has it, coverage is 0.
    """
    wanted = names(question) | numbers(question)
    if not wanted:
        return 1.0
    corpus = " ".join([fact_line(f) for f in evidence.facts] + [f"{p.title}. {p.text}" for p in evidence.passages])
    present = set(content_words(corpus)) | numbers(corpus)
    if not numbers(question) <= present:
        return 0.0
    return len(wanted & present) / len(wanted)


def fact_sentence(fact: FactHit) -> str:
    return f"The {fact.predicate.replace('_', ' ')} of {fact.subject} is {fact.object}."


def _restates(sentence: str, reference: str) -> bool:
    return set(content_words(sentence)) <= set(content_words(reference))


def _gives_answer_type(frame: QuestionFrame, sentence: EvidenceSentence) -> bool:
    """Whether the sentence holds something of the kind the question asks for, beyond the question's words."""
    if frame.answer_type == "date":
        return any(len(n) in (3, 4) and n.isdigit() for n in numbers(sentence.text) - frame.numbers)
    if frame.answer_type == "number":
        return bool(numbers(sentence.text) - frame.numbers)
    if frame.answer_type == "reason":
        return bool(REASON_WORDS & set(all_words(sentence.text)))
    if frame.answer_type in ("name", "place"):
        return bool(names(sentence.text) - frame.words - frame.subject_words)
    return bool(set(content_words(sentence.text)) - frame.words)


class AnswerBuilder:
    """One answer built sentence by sentence, so each verified sentence can be sent as soon as it is checked.

    ``start()`` gives the fact that answers outright (if any), ``add()`` each generated
    sentence that stands on its evidence, ``finish()`` the whole grounded answer,
    falling back to the best evidence sentence or an abstention.
    """

    def __init__(self, composer: "AnswerComposer", grounding: Grounding):
        self.composer = composer
        self.grounding = grounding
        self.shown: list[tuple[str, Verdict]] = []
        self.dropped: list[str] = []
        self.refused = False

    def _accept(self, text: str, verdict: Verdict) -> tuple[AnswerSentence, Citation]:
        self.shown.append((text, verdict))
        source = verdict.sentence
        citation = self.composer.citation(self.grounding.evidence, source.item_id, verdict.score, source)
        return AnswerSentence(text=text, citations=[source.item_id], supported=True,
                              support=round(float(verdict.score), 4)), citation

    def start(self) -> tuple[AnswerSentence, Citation] | None:
        lead = self.composer.lead_fact(self.grounding)
        return self._accept(*lead) if lead else None

    def add(self, raw: str) -> tuple[AnswerSentence, Citation] | None:
        """The sentence as shown with its citation when it stands on one evidence sentence, else None."""
        verdict, _refuted = self.composer.check(self.grounding, raw)
        text = strip_markers(raw)
        if verdict.supported and not any(_restates(text, shown) for shown, _ in self.shown):
            return self._accept(text, verdict)
        self.refused = self.refused or verdict.reason == "the model says it does not know"
        self.dropped.append(raw)
        return None

    def fallback(self) -> tuple[AnswerSentence, Citation] | None:
        """When nothing generated stands: the span of an evidence sentence the LM scores best as the answer,
        else the evidence sentence that answers, as written."""
        if self.shown:
            return None
        span = self.composer.span_answer(self.grounding)
        if span is not None:
            return self._accept(span.checks["span"], span)
        extracted = self.composer.extract(self.grounding)
        return self._accept(extracted.sentence.text, extracted) if extracted else None

    def finish(self) -> GroundedAnswer:
        self.fallback()
        if not self.shown:
            reason = ("the model found no answer in the evidence" if self.refused
                      else "no evidence sentence states an answer to the question")
            return self.composer.abstain(self.grounding.question, self.grounding.evidence, reason, self.dropped)
        return self.composer.answer_from(self.grounding.evidence, self.shown, self.dropped)


class AnswerComposer:
    """Builds the ``GroundedAnswer`` from generated text with a ``ClaimVerifier``."""

    def __init__(self, verifier: ClaimVerifier, spans: SpanScorer | None = None):
        self.verifier = verifier
        self.spans = spans  # the LM's scores of answer spans; None: no span is ever shown

    # -- per question ----------------------------------------------------------------------------
    def ground(self, question: str, evidence: Evidence, entities: Sequence[LinkedEntity]) -> Grounding:
        """Read the evidence once for ``question``; every sentence is then checked against it."""
        frame = frame_question(question, entities)
        readings = self.verifier.read(frame, evidence_sentences(evidence))
        return Grounding(question, frame, evidence, readings, topic_coverage(question, evidence))

    def precheck(self, grounding: Grounding) -> str:
        """Why nothing in the evidence can answer, before any generation; "" when something may."""
        if grounding.coverage < TOPIC_COVERAGE_FLOOR:
            return (f"the evidence mentions {grounding.coverage:.0%} of the question's names and numbers "
                    "(all numbers required)")
        frame = grounding.frame
        if frame.relation_words and not any(
            self.verifier.about_subject(frame, r) and self.verifier.relation_share(frame, r) >= self.verifier.thresholds.relation_share for r in grounding.readings
        ):
            return "no evidence about the question's subject speaks of the relation it asks about"
        return ""

    def lead_fact(self, grounding: Grounding) -> tuple[str, Verdict] | None:
        """A fact that answers the question outright, as a sentence, with its verdict."""
        for number, fact in enumerate(grounding.evidence.facts, start=1):
            sentence = fact_sentence(fact)
            verdict = self.verifier.verify(sentence, grounding.frame, grounding.readings, allowed={f"F{number}"})
            if verdict.supported:
                return sentence, verdict
        return None

    def check(self, grounding: Grounding, sentence: str) -> tuple[Verdict, list[str]]:
        """The verdict on one generated sentence, and the markers the model wrote that its evidence refutes."""
        if _REFUSAL.search(sentence):
            return Verdict(False, "the model says it does not know"), []
        written = markers_in(sentence)
        verdict = self.verifier.verify(sentence, grounding.frame, grounding.readings)
        cited = verdict.sentence.item_id if verdict.supported and verdict.sentence else None
        return verdict, [m for m in written if m != cited]

    def extract(self, grounding: Grounding) -> Verdict | None:
        """The evidence sentence that best answers the question, shown as written; None when none does."""
        frame = grounding.frame
        best = None
        for reading in grounding.readings:
            sentence = reading.sentence
            if sentence.is_fact or not self.verifier.about_subject(frame, reading):
                continue
            # Shown as written, so the relation words of the question must be spoken of, closely.
            share = self.verifier.relation_share(frame, reading, match=self.verifier.thresholds.extract_relation_match)
            if frame.relation_words and share < self.verifier.thresholds.extract_relation_share:
                continue
            if reading.question_similarity < self.verifier.thresholds.extract_similarity or not _gives_answer_type(frame, sentence):
                continue
            claimed = numbers(sentence.text) - frame.numbers
            if frame.answer_type in ("date", "number") and not any(
                self.verifier.number_bound(n, frame, reading) for n in claimed
            ):
                continue
            score = reading.question_similarity + share
            if best is None or score > best.score:
                best = Verdict(True, "", sentence, score, {"relation_share": share,
                                                          "question_similarity": reading.question_similarity})
        return best

    def span_answer(self, grounding: Grounding) -> Verdict | None:
        """The best-scored answer span of the evidence sentences about the question's subject and relation.

        The span is copied from its sentence (``checks["span"]``, offsets into the passage in
        ``checks["span_start"]``/``checks["span_end"]``) and must stand on that sentence as any
        claim must (``ClaimVerifier.verify``); None when no span scores ``span_min_score``.
        """
        thresholds = self.verifier.thresholds
        if self.spans is None or thresholds.span_min_score >= SPAN_OFF:
            return None
        frame = grounding.frame
        eligible = [
            r for r in grounding.readings
            if not r.sentence.is_fact and self.verifier.about_subject(frame, r)
            and self.verifier.relation_share(frame, r) >= thresholds.relation_share
        ]
        eligible.sort(key=lambda r: self.verifier.relation_share(frame, r) + r.question_similarity, reverse=True)
        best: tuple[float, Verdict] | None = None
        for reading in eligible[:SPAN_SENTENCES]:
            sentence = reading.sentence
            candidates = enumerate_spans(sentence.text, frame, title=sentence.title)
            scored = self.spans.scored(grounding.question, sentence.text, candidates)
            for candidate in sorted(scored, key=lambda c: c.value(thresholds.span_score), reverse=True):
                value = candidate.value(thresholds.span_score)
                if value < thresholds.span_min_score or (best is not None and value <= best[0]):
                    break
                verdict = self.verifier.verify(candidate.span.text, frame, [reading])
                if verdict.supported:
                    span = candidate.span
                    verdict.checks.update(span=span.text, span_start=sentence.start + span.start,
                                          span_end=sentence.start + span.end, span_score=round(value, 4))
                    best = (value, verdict)
                    break
        return best[1] if best else None

    # -- the whole answer -----------------------------------------------------------------------
    def compose(self, question: str, generated: str, evidence: Evidence,
                entities: Sequence[LinkedEntity]) -> GroundedAnswer:
        grounding = self.ground(question, evidence, entities)
        reason = self.precheck(grounding)
        if reason:
            return self.abstain(question, evidence, reason, split_sentences(generated))
        return self.compose_grounded(grounding, split_sentences(generated))

    def compose_grounded(self, grounding: Grounding, sentences: Iterable[str]) -> GroundedAnswer:
        builder = AnswerBuilder(self, grounding)
        builder.start()
        for raw in sentences:
            builder.add(raw)
        return builder.finish()

    def answer_from(self, evidence: Evidence, shown: Sequence[tuple[str, Verdict]], dropped: Sequence[str]) -> GroundedAnswer:
        """The answer text, its sentences and its citations, each pointing at the sentence that backs it."""
        sentences, citations = [], {}
        for text, verdict in shown:
            source = verdict.sentence
            sentences.append(AnswerSentence(text=text, citations=[source.item_id], supported=True,
                                            support=round(float(verdict.score), 4)))
            if source.item_id not in citations:
                citations[source.item_id] = self.citation(evidence, source.item_id, verdict.score, source)
        order = sorted(citations, key=lambda cid: (not cid.startswith("F"), int(cid.lstrip("F"))))
        return GroundedAnswer(
            answer=" ".join(with_markers(s.text, s.citations) for s in sentences),
            sentences=sentences, citations=[citations[cid] for cid in order], abstained=False, dropped=list(dropped),
        )

    def abstain(self, question: str, evidence: Evidence, reason: str, dropped: Sequence[str] = ()) -> GroundedAnswer:
        """A clear "not in the knowledge base" answer with the closest sources to check."""
        ids = [str(i) for i in range(1, len(evidence.passages) + 1)][:CLOSEST_SOURCES]
        if not ids:
            ids = [f"F{i}" for i in range(1, len(evidence.facts) + 1)][:CLOSEST_SOURCES]
        text = f"The knowledge base does not say: “{question.strip()}”. The closest sources are listed below."
        return GroundedAnswer(
            answer=text, sentences=[AnswerSentence(text=text, citations=[], supported=False, support=0.0)],
            citations=[self.citation(evidence, cid, None) for cid in ids],
            abstained=True, abstain_reason=reason, dropped=list(dropped),
        )

    @staticmethod
    def citation(evidence: Evidence, cid: str, support: float | None,
                  sentence: EvidenceSentence | None = None) -> Citation:
        located = {} if sentence is None else {
            "sentence": sentence.text, "sentence_start": sentence.start, "sentence_end": sentence.end,
        }
        if cid.startswith("F"):
            fact = evidence.facts[int(cid[1:]) - 1]
            return Citation(id=cid, kind="fact", title=fact.subject, section=f"Infobox: {fact.field}", url=fact.url,
                            snippet=fact_line(fact), score=round(support if support is not None else fact.score, 4),
                            triple_id=fact.triple_id, **located)
        passage = evidence.passages[int(cid) - 1]
        if sentence is not None:
            snippet = sentence.text
        elif len(passage.text) <= SNIPPET_CHARS:
            snippet = passage.text
        else:
            snippet = passage.text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
        return Citation(id=cid, kind="passage", title=passage.title, section=passage.section, url=passage.url,
                        snippet=snippet, score=round(support if support is not None else passage.score, 4),
                        passage_id=passage.passage_id, **located)
