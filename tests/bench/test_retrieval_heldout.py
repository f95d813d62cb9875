"""bench/retrieval_heldout.py and its corpus: the distractor parsers, the vector cache and every mode, on tiny data."""

import gzip
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.questions import EvalQuestion
from evaluation.retrieval_eval import evaluate_retrieval
from tests.helpers.tiny_kb import HashingEmbedder

BENCH = Path(__file__).resolve().parents[2] / "bench"

WORDNET = """  1 This software and database is being provided to you, the LICENSEE, by
08512259 15 n 02 Alabama 0 Heart_of_Dixie 0 001 @ 08655464 n 0000 | a state in southeastern United States on the Gulf of Mexico; "Alabama is the Yellowhammer State"  
09987654 18 n 01 aardvark(a) 0 000 | nocturnal burrowing mammal of the grasslands of Africa that feeds on termites  
"""


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("retrieval_corpus"), importlib.import_module("retrieval_heldout")
    finally:
        sys.path.remove(str(BENCH))


def _b64(number: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = ""
    while True:
        number, rest = divmod(number, 64)
        digits = alphabet[rest] + digits
        if not number:
            return digits


def test_wordnet_synsets_become_passages_no_gold_title_can_match(bench, tmp_path):
    corpus, _ = bench
    path = tmp_path / "data.noun"
    path.write_text(WORDNET)
    alabama, aardvark = corpus.wordnet_nouns(path)
    assert alabama.heading == "Alabama, Heart of Dixie" and alabama.text.startswith("a state in southeastern")
    assert (alabama.key, alabama.label) == ("wn:08512259", "wordnet 08512259")  # scored as a distractor, never "Alabama"
    assert aardvark.heading == "aardvark"  # the adjective marker is dropped


def test_foldoc_entries_are_cut_into_passages_and_aliases_read_once(bench, tmp_path):
    corpus, _ = bench
    entries = ["00-database-short\n     FOLDOC\n", "ASCII\n\n   {American} Standard Code " + "word " * 130 + "\n"]
    body, index, at = "", [], 0
    for head, entry in zip(("00-database-short", "ASCII"), entries):
        body += entry
        index.append(f"{head}\t{_b64(at)}\t{_b64(len(entry.encode()))}")
        at += len(entry.encode())
    index.append(f"American Standard Code\t{_b64(len(entries[0].encode()))}\t{_b64(len(entries[1].encode()))}")
    dump, index_file = tmp_path / "foldoc.dict.dz", tmp_path / "foldoc.index"
    dump.write_bytes(gzip.compress(body.encode()))
    index_file.write_text("\n".join(index) + "\n")
    passages = corpus.foldoc_entries(dump, index_file, words=100)
    assert [p.heading for p in passages] == ["ASCII", "ASCII"]  # the header left out, the alias read once
    assert passages[0].text.startswith("American Standard Code word") and len(passages[0].text.split()) == 100
    assert len(passages[1].text.split()) == 33 and passages[0].label != passages[1].label


def test_a_missing_source_says_what_to_install(bench, tmp_path):
    corpus, _ = bench
    with pytest.raises(SystemExit, match="apt-get install wordnet-base"):
        corpus.wordnet_nouns(tmp_path / "absent")


def test_vectors_are_cached_per_encoder_and_corpus(bench, tmp_path):
    corpus, _ = bench
    docs = [corpus.Doc("k1", "Alabama", "Alabama", "Montgomery is the capital."), corpus.Doc("k2", "x", "Ada", "food")]
    embedder = HashingEmbedder()
    first = corpus.embed_corpus(embedder, docs, tmp_path, "int8", chunk=1, progress=False)
    assert first.shape == (2, embedder.dim) and embedder.encoded == ["Alabama\nMontgomery is the capital.", "Ada\nfood"]
    again = corpus.embed_corpus(embedder, docs, tmp_path, "int8", progress=False)
    assert np.array_equal(first, again) and len(embedder.encoded) == 2  # read back, not encoded again
    corpus.embed_corpus(embedder, docs[:1], tmp_path, "int8", progress=False)
    assert len(embedder.encoded) == 3  # another corpus, another cache file


def _hashed(heldout, docs, boosts=None):
    """A ``HeldoutRetriever`` over ``docs`` whose int8 and fp32 encoders are both the hashing embedder."""
    from retrieval.tuning import HYBRID_FUSION

    embedder = HashingEmbedder()
    vectors = {name: np.stack([embedder.vector(f"{d.heading}\n{d.text}") for d in docs]) for name in ("int8", "fp32")}
    return heldout.HeldoutRetriever(docs, {"int8": embedder, "fp32": embedder}, vectors, HYBRID_FUSION, boosts=boosts)


def test_every_mode_runs_and_a_distractor_never_counts_as_gold(bench):
    corpus, heldout = bench
    docs = [corpus.Doc("1:1:0:0", "Alabama", "Alabama", "Alabama is a state. Its capital is Montgomery."),
            corpus.Doc("2:1:0:0", "Aardvark", "Aardvark", "The aardvark is a burrowing mammal of Africa."),
            corpus.Doc("wn:1", "wordnet 1", "Alabama", "a state in the southeastern United States; capital Montgomery")]
    retriever = _hashed(heldout, docs)
    questions = [EvalQuestion(id="q", question="What is the capital of Alabama?", answer="Montgomery",
                              gold_titles=["Alabama"])]
    result = evaluate_retrieval(retriever, questions, modes=heldout.MODES, k=2, progress=False)
    for mode in heldout.MODES:
        hits = retriever.retrieve(questions[0].question, k=3, mode=mode)
        assert {h.title for h in hits} <= {"Alabama", "wordnet 1", "Aardvark"} and "Alabama" in {h.title for h in hits}
        assert result["modes"][mode]["recall@10"] == 1.0
    cases = heldout.hybrid_cases(retriever, questions)
    assert set(cases[0].rankings.dense) <= {"1:1:0:0", "2:1:0:0", "wn:1"} and cases[0].titles["wn:1"] == "wordnet 1"
    hybrid = [h.passage_id for h in retriever.retrieve(questions[0].question, k=3, mode="hybrid")]
    assert [h.passage_id for h in retriever.retrieve(questions[0].question, k=3, mode="graph")] == hybrid  # no boosts


def test_graph_mode_fuses_the_sample_kbs_boosts_with_the_distractor_corpus_lists(bench):
    corpus, heldout = bench
    from retrieval.pipeline import Rankings

    docs = [corpus.Doc("1:1:0:0", "Alabama", "Alabama", "Alabama is a state of the south. Its capital city"),
            corpus.Doc("1:1:1:1", "Alabama", "Alabama > Geography", "Montgomery the capital city"),
            corpus.Doc("wn:1", "wordnet 1", "capital", "a city that is the seat of government of a state capital city")]
    disagree, agree = "What is the capital city of Alabama?", "Which city is the capital of the state of Alabama?"
    stated = {disagree: "1:1:0:0", agree: "1:1:1:1"}  # the passage the sample KB says states the asked fact
    asked = []

    def boosts(question):
        asked.append(question)
        return Rankings(dense=[], sparse=[], fact_passages=[(1.0, [stated[question]])])

    retriever = _hashed(heldout, docs, boosts)

    def ranked(question, mode):
        return [hit.passage_id for hit in retriever.retrieve(question, k=3, mode=mode)]

    assert [retriever.docs[int(at)].key for at in retriever.lists(disagree)[0]][0] == "1:1:1:1"  # dense: Geography
    assert ranked(disagree, "hybrid") == ["1:1:1:1", "1:1:0:0", "wn:1"]  # sparse puts the lead first: a tie
    assert ranked(disagree, "graph") == ["1:1:0:0", "1:1:1:1", "wn:1"]  # the fact's passage takes the first place
    assert ranked(agree, "hybrid") == ranked(agree, "graph") == ["1:1:0:0", "1:1:1:1", "wn:1"]  # both put it first
    assert asked == [disagree, agree]
