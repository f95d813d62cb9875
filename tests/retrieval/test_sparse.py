from retrieval.sparse import SparseIndex

DOCS = {
    "alabama:0": "Alabama is a state in the Southeastern United States. Its capital is Montgomery.",
    "farm:0": "Animal Farm is a satirical allegorical novella by George Orwell, first published in 1945.",
    "einstein:0": "Albert Einstein was a German-born theoretical physicist who developed relativity.",
    "algeria:0": "Algeria is a country in North Africa; its capital and largest city is Algiers.",
}


def build() -> SparseIndex:
    return SparseIndex().build(list(DOCS), list(DOCS.values()))


def test_ranks_the_document_sharing_rare_terms_first():
    hits = build().search("Who wrote the novella Animal Farm?", k=3)
    assert hits[0][0] == "farm:0"
    assert all(score > 0 for _, score in hits)


def test_plurals_fold_and_non_matching_documents_are_left_out():
    hits = build().search("capitals of states", k=4)
    assert [key for key, _ in hits][:2] in (["alabama:0", "algeria:0"], ["algeria:0", "alabama:0"])
    assert "einstein:0" not in [key for key, _ in hits]


def test_stopword_only_or_empty_queries_find_nothing():
    index = build()
    assert index.search("what is the", k=3) == []
    assert index.search("", k=3) == []
    assert SparseIndex().build([], []).search("Alabama", k=3) == []



def test_scores_at_gives_the_bm25_score_of_each_position_asked_for():
    index = build()
    scores = dict(index.search("novella Orwell capital", k=4))
    at = index.scores_at("novella Orwell capital", [1, 3, 2])
    assert at[0] == scores["farm:0"] > 0 and at[1] == scores["algeria:0"] > 0 and at[2] == 0.0
    assert index.scores_at("what is the", [0, 1]) == [0.0, 0.0] and index.scores_at("Orwell", []) == []
    assert SparseIndex().build([], []).scores_at("Alabama", [0]) == [0.0]
