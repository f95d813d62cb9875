"""Bridge claims: a sentence whose answer stands in an article the question does not name, one link away.

"Who was the twin sister of the god who guided Paris' arrow to Achilles?" names Achilles; a capable
model answers "Apollo, who guided the arrow, had a twin sister, Artemis." No one evidence sentence
states that: Achilles' article says Apollo guided the arrow (the first hop), Apollo's says Artemis is
his twin sister (the second). The claim stands on the two together when:

- it names the **bridge**, an article of the evidence that is not the question's subject's;
- a sentence of the subject's own article names the bridge and speaks of a relation word of the
  question (the first hop);
- a sentence of the bridge's own article holds the claim's new answer, a name or number the first hop
  lacks, within ``NUMBER_WINDOW`` tokens of a word matching a relation word the first hop leaves unread,
  and nearer it than any other name or number of the sentence (the second hop: "Artemis" beside "twin
  sister", not the mother Leto the sentence names first);
- every other name or number the claim states stands in one of the two sentences.

It is cited to both sentences, the second hop first. Retrieval puts the bridge's passages in the
evidence by following the first hop's links (``retrieval.chain``).
"""

from __future__ import annotations

from collections.abc import Sequence

from kg.page_parser import title_without_disambiguator
from kgqa.text import content_words, numbers
from qa.claims import META_WORDS, MONTHS, QuestionFrame, Reading, Verdict, names
from qa.tuning import NUMBER_WINDOW, RELATION_MATCH


def _held(reading: Reading) -> set[str]:
    return reading.content | set(reading.words)


def _speaks_of_relation(reading: Reading, frame: QuestionFrame, relation: Sequence[str] = ()) -> list[int]:
    """Token positions of the words in ``reading`` that match a relation word of the question (of ``relation``)."""
    wanted = relation or frame.relation_words
    return [position for word, (score, position) in reading.relation_hits.items()
            if word in wanted and score >= RELATION_MATCH]


def _bound(term: str, reading: Reading, relation_positions: Sequence[int], rivals: set[str]) -> bool:
    """Whether ``term`` stands within ``NUMBER_WINDOW`` tokens of a relation word of the sentence, and no other
    name or number of the sentence (``rivals``) stands nearer it ("twin sister, the huntress Artemis", not
    the mother Leto named before)."""
    def distance(word: str) -> int:
        at = [i for i, token in enumerate(reading.words) if token == word]
        return min((abs(i - p) for i in at for p in relation_positions), default=10**6)

    own = distance(term)
    return own <= NUMBER_WINDOW and all(distance(rival) > own for rival in rivals - {term})


def check_bridge(text: str, frame: QuestionFrame, readings: Sequence[Reading]) -> Verdict | None:
    """The two sentences that together state ``text``'s claim across a bridge, or None when no bridge does."""
    if not frame.subject_titles:
        return None
    terms = ((names(text) | numbers(text)) - frame.words - META_WORDS - MONTHS)
    if not terms:
        return None
    first_hops = [r for r in readings if r.own_article and not r.sentence.is_fact and _speaks_of_relation(r, frame)]
    bridges = dict.fromkeys(r.sentence.title for r in readings if not r.own_article and not r.sentence.is_fact)
    for title in bridges:
        bridge_words = set(content_words(title_without_disambiguator(title)))
        if not bridge_words or not bridge_words <= terms:
            continue
        hops = [r for r in first_hops if bridge_words <= _held(r)]
        rest = terms - bridge_words
        for second in (r for r in readings if r.sentence.title == title and not r.sentence.is_fact):
            rivals = (names(second.sentence.text) | numbers(second.sentence.text)) - frame.words - bridge_words - MONTHS
            for first in hops:
                # the relation words the first hop leaves unread are what the second hop is asked ("twin sister")
                unread = [w for w in frame.relation_words if w not in _held(first)]
                positions = _speaks_of_relation(second, frame, unread or frame.relation_words)
                answer = {t for t in rest & _held(second) if _bound(t, second, positions, rivals)}
                new = answer - _held(first)
                if new and rest <= _held(first) | _held(second):
                    return Verdict(True, "", second.sentence, 1.0,
                                   {"bridge": title, "answer_terms": sorted(new)}, also=(first.sentence,))
    return None
