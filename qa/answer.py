"""The answer: the LM's own sentences that a check backs, else the reader's sentence, else an abstention.

The model proposes; the checks dispose. In order:

1. an infobox fact that answers outright (the asked relation of the question's subject, of
   the kind asked for: ``ClaimVerifier.verify``) leads, and no draft is needed; for a question
   comparing two things, the two things' facts compared (``qa.comparison``) lead instead;
2. each sentence the LM writes is a claim, checked as soon as it is complete
   (``qa.checker.ClaimChecker``): shown as written, cited to the one evidence sentence that
   states it (with its offsets), or dropped; a comparison claim is checked against both sides'
   values (``qa.comparison``), and a claim whose answer is one link away against the two
   sentences of the chain (``qa.bridge``), cited to both;
3. where nothing the LM wrote stands, the extractive reader (``qa.reader``) may show the
   evidence sentence it is sure enough states the answer, as written;
4. else the engine abstains and lists the closest sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kgqa.records import AnswerSentence, Citation, FactHit, LinkedEntity
from kgqa.text import content_words, numbers
from qa.budget import Evidence, fact_line
from qa import comparison as comparisons
from qa.bridge import check_bridge
from qa.checker import ClaimChecker
from qa.claims import ClaimVerifier, EvidenceSentence, QuestionFrame, Verdict, evidence_sentences, frame_question, names
from qa.reader import AnswerReader
from qa.sentences import strip_markers, with_markers
from qa.tuning import CLOSEST_SOURCES, SAME_MEANING, SNIPPET_CHARS, TOPIC_COVERAGE_FLOOR
from retrieval.facts import predicate_match, predicate_words


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
    asked: comparisons.ComparisonQuestion | None = None  # a comparison of two linked things
    comparison: comparisons.Comparison | None = None  # both sides' values, where the knowledge graph holds them

    @property
    def follows_bridge(self) -> bool:
        """Whether retrieval followed a link from the first hop's article to find evidence (``retrieval.chain``)."""
        return any("bridge" in passage.sources for passage in self.evidence.passages)


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


def cited_ids(verdict: Verdict) -> list[str]:
    """The evidence a shown sentence cites: the sentence that backs it, and the other hop's where it took two."""
    return list(dict.fromkeys([verdict.sentence.item_id, *(s.item_id for s in verdict.also)]))


def fact_sentence(fact: FactHit) -> str:
    return f"The {fact.predicate.replace('_', ' ')} of {fact.subject} is {fact.object}."


class AnswerBuilder:
    """One answer built as the LM drafts, so each sentence can be sent as soon as it is checked.

    ``start()`` gives the fact that answers outright (then no draft is needed); ``add()``
    checks one drafted sentence and gives it back, cited, when a check backs it;
    ``finish()`` gives the whole answer, with the reader's sentence where no drafted one
    stood, or an abstention.
    """

    def __init__(self, composer: "AnswerComposer", grounding: Grounding):
        self.composer = composer
        self.grounding = grounding
        self.shown: list[tuple[str, Verdict]] = []
        self.dropped: list[str] = []  # drafted sentences no check backed

    def _accept(self, text: str, verdict: Verdict) -> tuple[AnswerSentence, list[Citation]]:
        """The shown sentence and what it cites: the sentence that backs it, and the other hop's where it took two."""
        self.shown.append((text, verdict))
        citations = [self.composer.citation(self.grounding.evidence, source.item_id, verdict.score, source)
                     for source in (verdict.sentence, *verdict.also)]
        return AnswerSentence(text=text, citations=cited_ids(verdict), supported=True,
                              support=round(float(verdict.score), 4)), citations

    def start(self) -> tuple[AnswerSentence, list[Citation]] | None:
        lead = self.composer.lead_fact(self.grounding)
        return self._accept(*lead) if lead else None

    def add(self, raw: str) -> tuple[AnswerSentence, list[Citation]] | None:
        """Check one drafted sentence: shown (as written, without the model's own markers) when backed."""
        text = strip_markers(raw).strip()
        if not text:
            return None
        verdict = self.composer.check(self.grounding, text)
        if not verdict.supported or any(text == shown for shown, _ in self.shown):
            self.dropped.append(raw)
            return None
        return self._accept(text, verdict)

    def finish(self) -> GroundedAnswer:
        if not self.shown:
            verdict = self.composer.read(self.grounding, self.dropped)
            if verdict is not None:
                self._accept(verdict.sentence.text, verdict)
        if not self.shown:
            reason = "no drafted sentence is backed by the evidence and no evidence sentence states an answer surely enough"
            return self.composer.abstain(self.grounding.question, self.grounding.evidence, reason, self.dropped)
        return self.composer.answer_from(self.grounding.evidence, self.shown, self.dropped)


class AnswerComposer:
    """The checks an answer goes through, over one question's evidence: fact lead, claim checker, reader."""

    def __init__(self, verifier: ClaimVerifier, checker: ClaimChecker | None = None,
                 reader: AnswerReader | None = None):
        self.verifier = verifier
        self.checker = checker or ClaimChecker(verifier)  # without a model no drafted sentence is shown
        self.reader = reader  # None: no extractive fallback

    # -- per question ----------------------------------------------------------------------------
    def ground(self, question: str, evidence: Evidence, entities: Sequence[LinkedEntity]) -> Grounding:
        """Read the evidence once for ``question``; every claim is then checked against it."""
        frame = frame_question(question, entities)
        readings = self.verifier.read(frame, evidence_sentences(evidence))
        asked = comparisons.read_comparison(question, entities)
        comparison = self.compare(asked, evidence.facts) if asked is not None and not asked.is_choice else None
        return Grounding(question, frame, evidence, readings, topic_coverage(question, evidence), asked, comparison)

    def compare(self, asked: comparisons.ComparisonQuestion, facts: Sequence[FactHit]) -> comparisons.Comparison | None:
        """Both sides of a comparison from ``facts``, relations matched by meaning as the fact ranking matches them."""
        return comparisons.compare(asked, facts, lambda words, predicate: predicate_match(
            words, predicate, self.verifier.words))

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
        if grounding.asked is not None:  # one side's fact is no answer to a comparison; both sides' may be
            return comparisons.lead(grounding.comparison, grounding.readings)
        if not grounding.frame.relation_words:
            return None
        facts = grounding.evidence.facts
        # Only the relation the question asks most directly may lead: "What was Allan Dwan's birth name?" is
        # never answered by his birth date; and a number the question states must be the fact's ("What was
        # Albania's population in the 1989 census?" is not answered by the census of 2011).
        matches = [predicate_match(grounding.question, f.predicate, self.verifier.words) for f in facts]
        best = max(matches, default=0.0)
        for number, (fact, match) in enumerate(zip(facts, matches), start=1):
            if match < best or not grounding.frame.numbers <= numbers(fact_line(fact)):
                continue
            if match < 1.0 and not self._names_relation(grounding, fact):
                continue  # "Who was Aristotle's teacher?" is not his school tradition (teacher~school 0.61)
            sentence = fact_sentence(fact)
            verdict = self.verifier.verify(sentence, grounding.frame, grounding.readings, allowed={f"F{number}"})
            if verdict.supported:
                return sentence, verdict
        return None

    def _names_relation(self, grounding: Grounding, fact: FactHit) -> bool:
        """Whether the question states one of the fact's relation words itself or a word meaning the same
        (``SAME_MEANING``: born~birth 0.81, married~spouse 0.82), not merely a related one."""
        asked = content_words(grounding.question)
        return any(self.verifier.words.best_match(word, asked)[0] >= SAME_MEANING
                   for word in predicate_words(fact.predicate))

    def check(self, grounding: Grounding, sentence: str) -> Verdict:
        """The claim checker's verdict on one drafted sentence."""
        asked = grounding.asked
        if asked is not None:
            verdict = (comparisons.check_choice(sentence, asked, grounding.frame, grounding.readings) if asked.is_choice
                       else comparisons.check_comparison(sentence, asked, grounding.comparison, grounding.readings,
                                                         self.verifier))
            if verdict is not None:
                return verdict
        if self.checker.model is None:
            return Verdict(False, "no claim checker model is loaded")
        verdict = self.checker.check(sentence, grounding.frame, grounding.readings)
        if not verdict.supported and asked is None:
            return check_bridge(sentence, grounding.frame, grounding.readings) or verdict
        return verdict

    def read(self, grounding: Grounding, drafted: Sequence[str]) -> Verdict | None:
        """The evidence sentence the reader ranks first, when its probability reaches the model's threshold."""
        if self.reader is None or grounding.asked is not None or grounding.follows_bridge:
            return None  # one evidence sentence answers no comparison, nor a question whose answer is a hop away
        choice = self.reader.choose(self.verifier, grounding.frame, grounding.readings, drafted)
        if choice is None or choice.probability < self.reader.model.threshold:
            return None
        return Verdict(True, "", choice.reading.sentence, choice.probability,
                       {"reader_probability": round(choice.probability, 4), **choice.features})

    def compose(self, grounding: Grounding, drafted: Sequence[str]) -> GroundedAnswer:
        """The whole answer for sentences already drafted (calibration and tests; the engine streams)."""
        reason = self.precheck(grounding)
        if reason:
            return self.abstain(grounding.question, grounding.evidence, reason, drafted)
        builder = AnswerBuilder(self, grounding)
        if builder.start() is None:
            for raw in drafted:
                builder.add(raw)
        return builder.finish()

    # -- the whole answer -----------------------------------------------------------------------
    def answer_from(self, evidence: Evidence, shown: Sequence[tuple[str, Verdict]], dropped: Sequence[str]) -> GroundedAnswer:
        """The answer text, its sentences and its citations, each pointing at the sentence that backs it."""
        sentences, citations = [], {}
        for text, verdict in shown:
            sentences.append(AnswerSentence(text=text, citations=cited_ids(verdict), supported=True,
                                            support=round(float(verdict.score), 4)))
            for source in (verdict.sentence, *verdict.also):
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
