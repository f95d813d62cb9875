"""Turn the model's text and the evidence into the grounded answer, or an abstention.

The model proposes; this module disposes. Sentences are shown only with the
evidence that supports them, a fact that answers the question outright is
stated first with its citation, and the engine abstains when neither the
evidence nor the attribution backs an answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from kgqa.records import AnswerSentence, Citation, FactHit, LinkedEntity
from qa.attribution import Attribution, Attributor, EvidenceItem, names
from qa.budget import Evidence, fact_line
from qa.relations import direct_answer, relation_terms
from qa.sentences import split_sentences, with_markers
from qa.tuning import CLOSEST_SOURCES, SNIPPET_CHARS, TOPIC_COVERAGE_FLOOR
from retrieval.facts import predicate_match
from retrieval.text import content_words, numbers

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


def evidence_items(evidence: Evidence) -> list[EvidenceItem]:
    """Evidence as numbered in the prompt; passages carry their title so names in it count."""
    items = [EvidenceItem(f"F{i}", fact_line(f)) for i, f in enumerate(evidence.facts, start=1)]
    items += [EvidenceItem(str(i), f"{p.title}. {p.text}") for i, p in enumerate(evidence.passages, start=1)]
    return items


def topic_coverage(question: str, items: Sequence[EvidenceItem]) -> float:
    """Share of the question's names and numbers that some evidence mentions (1.0 when it has none).

    A number in the question ("2030") is a hard constraint: if no evidence has it, coverage is 0.
    """
    wanted = names(question) | numbers(question)
    if not wanted:
        return 1.0
    corpus = " ".join(item.text for item in items)
    present = set(content_words(corpus)) | numbers(corpus)
    if not numbers(question) <= present:
        return 0.0
    return len(wanted & present) / len(wanted)


def mentions_relation(question: str, items: Sequence[EvidenceItem]) -> bool:
    """Whether some evidence speaks of the relation the question asks for (True when it names none).

    "Who directed Animalia?" over evidence that only gives the book's author and
    publisher has nothing to answer with, however well the subject matches.
    """
    terms = relation_terms(question)
    if not terms:
        return True
    return bool(terms & set(content_words(" ".join(item.text for item in items))))


def fact_sentence(fact: FactHit) -> str:
    return f"The {fact.predicate.replace('_', ' ')} of {fact.subject} is {fact.object}."


def _contradicts(sentence: str, fact: FactHit) -> bool:
    """The sentence speaks of the fact's subject and predicate but not of its object."""
    words = set(content_words(sentence))
    about = set(content_words(fact.subject)) & words and predicate_match(sentence, fact.predicate) >= 0.5
    distinctive = set(content_words(fact.object)) - set(content_words(fact.subject)) or set(content_words(fact.object))
    return bool(about) and not distinctive & words


def _restates(sentence: str, reference: str) -> bool:
    return set(content_words(sentence)) <= set(content_words(reference))


class AnswerComposer:
    """Builds the ``GroundedAnswer`` from generated text; needs an ``Attributor``."""

    def __init__(self, attributor: Attributor):
        self.attributor = attributor

    def abstain(self, question: str, evidence: Evidence, reason: str, dropped: Sequence[str] = ()) -> GroundedAnswer:
        """A clear "not in the knowledge base" answer with the closest sources to check."""
        items = evidence_items(evidence)
        closest = [i for i in items if not i.id.startswith("F")][:CLOSEST_SOURCES] or items[:CLOSEST_SOURCES]
        text = f"The knowledge base does not say: “{question.strip()}”. The closest sources are listed below."
        return GroundedAnswer(
            answer=text, sentences=[AnswerSentence(text=text, citations=[], supported=False, support=0.0)],
            citations=[self._citation(evidence, item.id, None) for item in closest],
            abstained=True, abstain_reason=reason, dropped=list(dropped),
        )

    def compose(
        self, question: str, generated: str, evidence: Evidence, entities: Sequence[LinkedEntity]
    ) -> GroundedAnswer:
        items = evidence_items(evidence)
        coverage = topic_coverage(question, items)
        if not mentions_relation(question, items):
            return self.abstain(question, evidence, "no evidence mentions the relation the question asks about")
        # A number the question names ("in 2031") that no evidence holds outranks any fact:
        # today's infobox value does not answer a question about another year.
        fact = direct_answer(question, evidence.facts, entities) if coverage > 0 or not numbers(question) else None
        sentences = split_sentences(generated)
        attributions = self.attributor.attribute(sentences, items, question) if sentences else []
        shown: list[Attribution] = []
        dropped: list[str] = []
        refused = False
        lead = fact_sentence(fact) if fact else ""
        if fact:
            shown.append(Attribution(text=lead, citations=["F1"], support=1.0, supported=True))
        for raw, att in zip(sentences, attributions):
            if _REFUSAL.search(att.text):
                refused = True
                dropped.append(raw)
            elif not att.supported or (fact and _contradicts(att.text, fact)):
                dropped.append(raw)
            elif not (fact and _restates(att.text, lead)):
                shown.append(att)
        if not fact:
            if coverage < TOPIC_COVERAGE_FLOOR:
                return self.abstain(question, evidence, f"the evidence mentions {coverage:.0%} of the question's names and numbers (all numbers required)", dropped)
            if not shown:
                reason = "the model found no answer in the evidence" if refused else "no generated sentence is supported by the evidence"
                return self.abstain(question, evidence, reason, dropped)
        answer = " ".join(with_markers(a.text, a.citations) for a in shown)
        support = {}
        for att in shown:
            for cid in att.citations:
                support[cid] = max(support.get(cid, 0.0), att.support)
        order = [cid for cid in (i.id for i in items) if cid in support]
        return GroundedAnswer(
            answer=answer,
            sentences=[AnswerSentence(text=a.text, citations=a.citations, supported=True, support=a.support) for a in shown],
            citations=[self._citation(evidence, cid, support[cid]) for cid in order],
            abstained=False, dropped=dropped,
        )

    @staticmethod
    def _citation(evidence: Evidence, cid: str, support: float | None) -> Citation:
        if cid.startswith("F"):
            fact = evidence.facts[int(cid[1:]) - 1]
            return Citation(id=cid, kind="fact", title=fact.subject, section=f"Infobox: {fact.field}", url=fact.url,
                            snippet=fact_line(fact), score=round(support if support is not None else fact.score, 4),
                            triple_id=fact.triple_id)
        passage = evidence.passages[int(cid) - 1]
        snippet = passage.text if len(passage.text) <= SNIPPET_CHARS else passage.text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
        return Citation(id=cid, kind="passage", title=passage.title, section=passage.section, url=passage.url,
                        snippet=snippet, score=round(support if support is not None else passage.score, 4),
                        passage_id=passage.passage_id)
