"""What relation a question asks for, and whether a ranked fact answers it outright.

Both read retrieval's cue table (``retrieval.facts.CUES``) but serve only the
answer composer: they decide what the shown answer may say, not what is retrieved.
"""

from __future__ import annotations

from collections.abc import Sequence

from kgqa.records import FactHit, LinkedEntity
from qa import tuning
from retrieval.facts import CUES, predicate_match
from retrieval.text import content_words, fold


def relation_terms(question: str) -> set[str]:
    """Words that express the relation the question asks for, e.g. "Who directed X?" -> directed, director.

    Empty when the question names no relation the cue table knows. A cue brings
    its predicate words and every other cue that shares one (spouse -> married, wife).
    """
    terms: set[str] = set()
    for word in content_words(question):
        if word in CUES:
            related = {word, *CUES[word]}
            terms |= related | {cue for cue, preds in CUES.items() if related & set(preds)}
    return {fold(t) for t in terms}


def direct_answer(question: str, ranked: Sequence[FactHit], entities: Sequence[LinkedEntity]) -> FactHit | None:
    """The top fact if it answers the question outright: its predicate is asked for and it is about a linked entity."""
    if not ranked:
        return None
    top = ranked[0]
    titles = {e.title for e in entities}
    about_linked = top.subject in titles or top.object in titles
    if about_linked and predicate_match(question, top.predicate) >= tuning.DIRECT_ANSWER_MATCH and top.score > tuning.DIRECT_ANSWER_SCORE:
        return top
    return None
