"""Turn the model's text and the evidence into the grounded answer, or an abstention.

The model proposes; this module disposes. An infobox fact that states the asked
relation of the question's subject (``qa.claims``) leads. The answer is then the
evidence sentence the reader (``qa.reader``) finds most likely to state it, shown as
written and cited to its offsets in the passage, so what is shown stands in the
cited text by construction; the LM's draft is one thing the reader weighs, never
shown unchecked. When the reader is not sure enough (its dev-chosen threshold),
the engine abstains and lists the closest sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kgqa.records import AnswerSentence, Citation, FactHit, LinkedEntity
from kgqa.text import content_words, numbers
from qa.budget import Evidence, fact_line
from qa.claims import (
    ClaimVerifier,
    EvidenceSentence,
    QuestionFrame,
    Verdict,
    evidence_sentences,
    frame_question,
    names,
)
from qa.reader import AnswerReader
from qa.sentences import markers_in, split_sentences, with_markers
from qa.tuning import CLOSEST_SOURCES, SNIPPET_CHARS, TOPIC_COVERAGE_FLOOR

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


class AnswerBuilder:
    """One answer built as the LM drafts, so each part can be sent as soon as it is decided.

    ``start()`` gives the fact that answers outright (if any: it is then the answer, and no
    draft is needed); ``add()`` takes each drafted sentence (the reader weighs them; none is
    shown as written); ``finish()`` gives the whole grounded answer: the fact, else the
    reader's sentence when it is sure enough, else an abstention.
    """

    def __init__(self, composer: "AnswerComposer", grounding: Grounding):
        self.composer = composer
        self.grounding = grounding
        self.shown: list[tuple[str, Verdict]] = []
        self.drafted: list[str] = []  # every drafted sentence: weighed by the reader, never shown
        self._read = False

    def _accept(self, text: str, verdict: Verdict) -> tuple[AnswerSentence, Citation]:
        self.shown.append((text, verdict))
        source = verdict.sentence
        citation = self.composer.citation(self.grounding.evidence, source.item_id, verdict.score, source)
        return AnswerSentence(text=text, citations=[source.item_id], supported=True,
                              support=round(float(verdict.score), 4)), citation

    def start(self) -> tuple[AnswerSentence, Citation] | None:
        lead = self.composer.lead_fact(self.grounding)
        return self._accept(*lead) if lead else None

    def add(self, raw: str) -> None:
        """One drafted sentence, for the reader to weigh."""
        self.drafted.append(raw)

    def read(self) -> tuple[AnswerSentence, Citation] | None:
        """The evidence sentence the reader is sure enough states the answer, as written; once."""
        if self._read or self.shown:  # a fact that answers outright is the answer
            return None
        self._read = True
        verdict = self.composer.read(self.grounding, self.drafted)
        if verdict is None:
            return None
        return self._accept(verdict.sentence.text, verdict)

    def finish(self) -> GroundedAnswer:
        self.read()
        if not self.shown:
            reason = "no evidence sentence states an answer to the question surely enough"
            return self.composer.abstain(self.grounding.question, self.grounding.evidence, reason, self.drafted)
        return self.composer.answer_from(self.grounding.evidence, self.shown, self.drafted)


class AnswerComposer:
    """Builds the ``GroundedAnswer`` from the evidence, the LM's draft and the reader."""

    def __init__(self, verifier: ClaimVerifier, reader: AnswerReader | None = None):
        self.verifier = verifier
        self.reader = reader  # None: only facts that answer outright are ever shown

    # -- per question ----------------------------------------------------------------------------
    def ground(self, question: str, evidence: Evidence, entities: Sequence[LinkedEntity]) -> Grounding:
        """Read the evidence once for ``question``; every candidate is then weighed against it."""
        frame = frame_question(question, entities)
        readings = self.verifier.read(frame, evidence_sentences(evidence))
        return Grounding(question, frame, evidence, readings, topic_coverage(question, evidence))

    def precheck(self, grounding: Grounding) -> str:
        """Why nothing in the evidence can answer, before any generation; "" when something may."""
        if grounding.coverage < TOPIC_COVERAGE_FLOOR:
            return (f"the evidence mentions {grounding.coverage:.0%} of the question's names and numbers "
                    "(all numbers required)")
        return ""

    def lead_fact(self, grounding: Grounding) -> tuple[str, Verdict] | None:
        """A fact that answers the question outright, as a sentence, with its verdict.

        A question that asks no relation of its subject ("What is anarchism?", "Who was
        Aristotle?") asks what the subject is, which no single infobox fact says: its
        answer is read from the passages.
        """
        if not grounding.frame.relation_words:
            return None
        for number, fact in enumerate(grounding.evidence.facts, start=1):
            sentence = fact_sentence(fact)
            verdict = self.verifier.verify(sentence, grounding.frame, grounding.readings, allowed={f"F{number}"})
            if verdict.supported:
                return sentence, verdict
        return None

    def check(self, grounding: Grounding, sentence: str) -> tuple[Verdict, list[str]]:
        """The verdict on one sentence, and the markers written in it that its evidence refutes."""
        if _REFUSAL.search(sentence):
            return Verdict(False, "the model says it does not know"), []
        written = markers_in(sentence)
        verdict = self.verifier.verify(sentence, grounding.frame, grounding.readings)
        cited = verdict.sentence.item_id if verdict.supported and verdict.sentence else None
        return verdict, [m for m in written if m != cited]

    def read(self, grounding: Grounding, drafted: Sequence[str]) -> Verdict | None:
        """The evidence sentence the reader ranks first, when its probability reaches the model's threshold."""
        if self.reader is None:
            return None
        choice = self.reader.choose(self.verifier, grounding.frame, grounding.readings, drafted)
        if choice is None or choice.probability < self.reader.model.threshold:
            return None
        return Verdict(True, "", choice.reading.sentence, choice.probability,
                       {"reader_probability": round(choice.probability, 4), **choice.features})

    # -- the whole answer -----------------------------------------------------------------------
    def compose(self, question: str, generated: str, evidence: Evidence,
                entities: Sequence[LinkedEntity]) -> GroundedAnswer:
        grounding = self.ground(question, evidence, entities)
        reason = self.precheck(grounding)
        if reason:
            return self.abstain(question, evidence, reason, split_sentences(generated))
        return self.compose_grounded(grounding, split_sentences(generated))

    def compose_grounded(self, grounding: Grounding, drafted: Iterable[str]) -> GroundedAnswer:
        builder = AnswerBuilder(self, grounding)
        builder.start()
        for raw in drafted:
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
