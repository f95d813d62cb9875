"""Following a bridge: which article a first-hop passage leads to, and what the second query asks of it."""

import pytest

from retrieval.chain import FirstHop, find_bridges, mentioned, sentences
from retrieval.pipeline import RetrievalPipeline
from retrieval.tuning import BridgeFollowing
from tests.helpers.tiny_kb import loaded_tiny_kb, tiny_kb  # noqa: F401 (fixtures)

ACHILLES = FirstHop("305:1:8:12", "Achilles",
                    "Achilles was killed by Paris with an arrow to the heel. In some versions, the god Apollo "
                    "guided Paris' arrow.\nHis body was burned on a pyre.")
LINKS = {"Achilles": ["Apollo", "Paris (mythology)", "Troy"], "Apollo": ["Achilles", "Artemis"]}


def links(title):
    return LINKS.get(title, [])


def test_sentences_split_at_ends_and_lines_and_names_match_whole_words():
    assert sentences(ACHILLES.text) == ["Achilles was killed by Paris with an arrow to the heel.",
                                        "In some versions, the god Apollo guided Paris' arrow.",
                                        "His body was burned on a pyre."]
    assert mentioned("the god Apollo guided Paris' arrow", ["Apollo", "Paris (mythology)", "Troy"]) == \
        ["Apollo", "Paris (mythology)"]  # a disambiguator is not part of the name written
    assert mentioned("Apollonia and Troyes", ["Apollo", "Troy"]) == []


def test_the_sentence_naming_a_linked_article_leads_there_with_the_words_it_leaves_unread():
    question = "Who was the twin sister of the god who guided Paris' arrow to Achilles?"
    bridges = find_bridges(question, [ACHILLES], links, named=["Achilles"], limit=3)
    # "Paris" is named by the question itself, so only Apollo is a way on
    assert [(b.title, b.query, b.via) for b in bridges] == [("Apollo", "Apollo twin sister", "305:1:8:12")]
    assert bridges[0].shared == 5  # god, guided, Paris, arrow and Achilles (the first hop's own title)


def test_no_bridge_without_enough_shared_words_an_unread_word_or_a_link():
    assert find_bridges("Who was the twin sister of the god who guided the arrow?", [ACHILLES], links,
                        least_shared=5) == []
    assert find_bridges("Which god guided Paris' arrow to Achilles?", [ACHILLES], links) == []  # nothing left to ask
    assert find_bridges("Who was the twin sister of the god who guided Paris' arrow?", [ACHILLES],
                        lambda title: []) == []
    # an article the question names is no bridge, linked or only written there
    assert find_bridges("Who was the twin sister of Apollo, who guided Paris' arrow?", [ACHILLES], links) == []
    assert find_bridges("Who was the twin sister of the god who guided Paris' arrow?", [ACHILLES], links,
                        named=["Apollo"]) == []
    # the passages already ranked first read every word the bridge would ask for: no second hop to take
    question = "Who was the twin sister of the god who guided Paris' arrow to Achilles?"
    assert find_bridges(question, [ACHILLES], links, read={"twin", "sister", "other"}) == []
    assert [b.query for b in find_bridges(question, [ACHILLES], links, read={"twin"})] == ["Apollo twin sister"]


def test_the_surest_bridge_comes_first_and_each_article_once():
    weak = FirstHop("594:1:0:0", "Apollo", "The god Apollo had a sister, Artemis.")
    question = "Who was the twin sister of the god who guided Paris' arrow to Achilles?"
    bridges = find_bridges(question, [weak, ACHILLES, ACHILLES], links, limit=5)
    assert [b.title for b in bridges] == ["Apollo", "Artemis"]  # 5 shared words, then 2 ("god" and "sister")
    assert find_bridges(question, [weak, ACHILLES], links, limit=1)[0].via == ACHILLES.passage_id


@pytest.fixture(scope="module")
def kb(loaded_tiny_kb):
    return loaded_tiny_kb


def test_graph_mode_brings_the_bridge_articles_passage_in(kb):
    question = "Which school did the author of Animal Farm attend?"  # Eton: George Orwell's second passage
    off = RetrievalPipeline(kb, bridges=BridgeFollowing(first_hops=0))
    assert [hit.passage_id for hit in off.retrieve(question, k=2, mode="graph").passages] == \
        ["620:3001:0:0", "620:3001:1:1"]  # Animal Farm fills the top 2
    on = RetrievalPipeline(kb, bridges=BridgeFollowing(first_hops=1, bridges=1, passages=1, place=1))
    found = on.retrieve(question, k=2, mode="graph").passages
    # Animal Farm's lead names George Orwell, whom it links to: his passage follows the first hop
    assert [hit.passage_id for hit in found] == ["620:3001:0:0", "11891:4001:0:0"]
    assert found[1].sources == ["bridge"] and found[1].score == found[0].score
    assert [hit.passage_id for hit in on.retrieve(question, k=2, mode="hybrid").passages] == \
        ["620:3001:0:0", "620:3001:1:1"]  # hybrid mode follows no bridge


def test_a_bridge_passage_already_ahead_of_its_place_stays_there(kb):
    question = "When was the author of Animal Farm born?"
    first = RetrievalPipeline(kb, bridges=BridgeFollowing(first_hops=1, passages=1, place=1))
    ranked = [hit.passage_id for hit in first.retrieve(question, k=4, mode="graph").passages]
    assert ranked[:2] == ["620:3001:0:0", "11891:4001:1:1"]  # "Blair was born in Motihari ... 1903"
    off = RetrievalPipeline(kb, bridges=BridgeFollowing(first_hops=0))
    unbridged = [hit.passage_id for hit in off.retrieve(question, k=4, mode="graph").passages]
    assert unbridged.index("11891:4001:1:1") == 3
    late = RetrievalPipeline(kb, bridges=BridgeFollowing(first_hops=1, passages=1, place=4))
    assert [hit.passage_id for hit in late.retrieve(question, k=4, mode="graph").passages] == unbridged


@pytest.mark.parametrize("bad", [dict(first_hops=-1), dict(place=-2), dict(passages=-1)])
def test_negative_bridge_settings_are_refused(bad):
    with pytest.raises(ValueError, match=">= 0"):
        BridgeFollowing(**bad)
