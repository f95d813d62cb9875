"""Following a bridge: the second hop of a question whose answer is in an article the question does not name.

"Who was the twin sister of the god who guided Paris' arrow to Achilles?" names Achilles; the passage of
Achilles that retrieval finds says "the god Apollo guided Paris' arrow", and the answer is in Apollo's
article ("Artemis, Apollo's twin sister"), which no word of the question leads to. The first hop tells
where to go next:

- a **bridge** is an article the first-hop article links to (the knowledge graph's links) whose title the
  passage names, in the sentence of that passage that shares the most words with the question;
- the **second query** is the bridge's title and the question's words that sentence does not cover
  ("Apollo twin sister"): what is left to ask once the first hop is read.

Retrieval then ranks the bridge's own passages with the second query (``RetrievalPipeline``); this module
only finds the bridges and writes their queries, from text and titles, with no index or model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from kgqa.text import content_words

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])|\n+")
_DISAMBIGUATOR = re.compile(r"\s+\([^)]*\)$")


@dataclass(frozen=True)
class FirstHop:
    """A passage retrieval ranked high for the question: its id, its article's title and its text."""

    passage_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Bridge:
    """An article one link from a first-hop passage that names it, and the query to read it with."""

    title: str  # the bridge article
    query: str  # its title and the question's words the first hop leaves unread
    via: str  # the first-hop passage that names it
    shared: int  # question words the naming sentence shares: more is a surer first hop


def sentences(text: str) -> list[str]:
    """``text`` cut at sentence ends and line breaks (a passage keeps its paragraphs and list items on lines)."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def mentioned(text: str, titles: Iterable[str]) -> list[str]:
    """The titles whose name (a trailing "(disambiguator)" left out) ``text`` contains as whole words, as written."""
    found = []
    for title in titles:
        name = _DISAMBIGUATOR.sub("", title)
        if name and name in text and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text):
            found.append(title)
    return found


def find_bridges(question: str, first_hops: Sequence[FirstHop], neighbours: Callable[[str], Collection[str]], *,
                 named: Collection[str] = (), read: Collection[str] = (), least_shared: int = 2,
                 limit: int = 1) -> list[Bridge]:
    """The bridges the first hops lead to, surest first: at most ``limit``, each article once.

    For each first-hop passage, each sentence naming an article its own article links to
    (``neighbours(title)``) that the question does not name (``named``, titles linked, or its name in
    the question's text: "Who killed Achilles with Apollo's help?") is a way on when it
    shares at least ``least_shared`` content words with the question and leaves at least one unread:
    those unread words, without the bridge's own, are what the second query asks of the bridge.
    Where every one of them is in ``read`` too (the content words of the passages retrieval already
    ranks first), the list holds what the question asks and there is no second hop to take.
    Surest: the sentence sharing the most words, then the better-ranked first hop.
    """
    asked = list(dict.fromkeys(content_words(question)))
    named_words = {word for title in named for word in content_words(_DISAMBIGUATOR.sub("", title))}
    found: list[tuple[int, int, Bridge]] = []
    for rank, hop in enumerate(first_hops):
        linked = [title for title in neighbours(hop.title)
                  if title != hop.title and title not in named and not mentioned(question, [title])]
        if not linked:
            continue
        for sentence in sentences(hop.text):
            targets = mentioned(sentence, linked)
            if not targets:
                continue
            covered = set(content_words(sentence)) | set(content_words(hop.title))
            shared = sum(1 for word in asked if word in covered)
            if shared < least_shared:
                continue
            for title in targets:
                own = set(content_words(_DISAMBIGUATOR.sub("", title)))
                unread = [word for word in asked if word not in covered and word not in own and word not in named_words]
                if unread and not set(unread) <= set(read):
                    query = f"{_DISAMBIGUATOR.sub('', title)} {' '.join(unread)}"
                    found.append((-shared, rank, Bridge(title=title, query=query, via=hop.passage_id, shared=shared)))
    found.sort(key=lambda item: item[:2])
    bridges: list[Bridge] = []
    for _, _, bridge in found:
        if len(bridges) < limit and all(bridge.title != kept.title for kept in bridges):
            bridges.append(bridge)
    return bridges
