"""Both hops' evidence in the top k: the retrieval eval on multi-hop questions, per hop kind, and its report table."""

from __future__ import annotations

import pytest

from evaluation import report
from evaluation.questions import EvalQuestion, Hop
from evaluation.retrieval_eval import evaluate_retrieval, hop_relevance
from kgqa.records import PassageHit


def _hit(passage_id: str, title: str = "T") -> PassageHit:
    return PassageHit(passage_id=passage_id, page_id=1, title=title, section="", text="", url="u", score=1.0)


def _question(qid: str, kind: str, first: str, second: str, **extra) -> EvalQuestion:
    hops = [Hop(title=f"{qid}-1", passage_id=first, evidence="e1"), Hop(title=f"{qid}-2", passage_id=second, evidence="e2")]
    return EvalQuestion(id=qid, question=f"question {qid}?", answer="x", hop_kind=kind, hops=hops,
                        gold_titles=[h.title for h in hops], gold_passage_ids=[first, second], kind=kind, **extra)


BRIDGE_FOUND = _question("b1", "bridge", "b1-p", "b1-q")       # hops at ranks 1 and 4
BRIDGE_DEEP = _question("b2", "bridge", "b2-p", "b2-q")        # hops at ranks 2 and 7
COMPARISON_HALF = _question("c1", "comparison", "c1-p", "c1-q")  # second hop never retrieved
UNANSWERABLE = EvalQuestion(id="u1", question="question u1?", unanswerable=True, hop_kind="bridge", note="absent",
                            hops=[Hop(title="A", passage_id="u1-p", evidence="e"), Hop(title="Nobody")])
SINGLE = EvalQuestion(id="s1", question="question s1?", answer="x", gold_passage_ids=["s1-p"])

FILLER = [_hit(f"other-{n}") for n in range(10)]
RANKINGS = {
    "hybrid": {
        "b1": [_hit("b1-p"), *FILLER[:2], _hit("b1-q"), *FILLER[2:8]],
        "b2": [FILLER[0], _hit("b2-p"), *FILLER[1:5], _hit("b2-q"), *FILLER[5:8]],
        "c1": [_hit("c1-p"), *FILLER[:9]],
        "s1": [_hit("s1-p")],
    },
    "graph": {  # graph lifts b2's second hop into the top 5 and finds c1's second hop at rank 9
        "b1": [_hit("b1-p"), _hit("b1-q"), *FILLER[:8]],
        "b2": [_hit("b2-p"), _hit("b2-q"), *FILLER[:8]],
        "c1": [_hit("c1-p"), *FILLER[:7], _hit("c1-q"), FILLER[7]],
        "s1": [_hit("s1-p")],
    },
}


class ScriptedRetriever:
    def retrieve(self, question, *, k=10, mode="hybrid"):
        return RANKINGS[mode][question.removeprefix("question ").removesuffix("?")]


@pytest.fixture(scope="module")
def result():
    questions = [BRIDGE_FOUND, BRIDGE_DEEP, COMPARISON_HALF, UNANSWERABLE, SINGLE]
    return evaluate_retrieval(ScriptedRetriever(), questions, modes=("hybrid", "graph"), progress=False)


def test_hop_relevance_judges_each_hop_by_its_own_passage():
    hits = [_hit("b1-q"), _hit("x"), _hit("b1-p")]
    assert hop_relevance(BRIDGE_FOUND, hits) == [[False, False, True], [True, False, False]]
    assert hop_relevance(SINGLE, hits) == []


def test_both_hops_recall_per_hop_kind_and_in_all(result):
    assert result["multihop_questions"] == 3 and result["skipped_unanswerable"] == 1
    hybrid = result["modes"]["hybrid"]["chain"]
    assert list(hybrid) == ["bridge", "comparison", "all"]
    assert hybrid["bridge"] == {"questions": 2, "both_hops@5": 0.5, "both_hops@10": 1.0, "hop1@10": 1.0, "hop2@10": 1.0}
    assert hybrid["comparison"] == {"questions": 1, "both_hops@5": 0.0, "both_hops@10": 0.0, "hop1@10": 1.0, "hop2@10": 0.0}
    assert hybrid["all"]["both_hops@5"] == pytest.approx(1 / 3)
    assert hybrid["all"]["both_hops@10"] == pytest.approx(2 / 3)
    graph = result["modes"]["graph"]["chain"]
    assert graph["bridge"]["both_hops@5"] == 1.0 and graph["comparison"]["both_hops@10"] == 1.0
    assert graph["all"]["both_hops@5"] == pytest.approx(2 / 3) and graph["all"]["both_hops@10"] == 1.0


def test_each_multi_hop_question_records_its_hops_ranks(result):
    rows = {row["id"]: row for row in result["per_question"]}
    assert rows["b2"]["hop_ranks"] == {"hybrid": [2, 7], "graph": [1, 2]}
    assert rows["c1"]["hop_ranks"] == {"hybrid": [1, None], "graph": [1, 9]}
    assert "hop_ranks" not in rows["s1"]


def test_a_larger_k_adds_both_hops_at_k():
    deep = evaluate_retrieval(ScriptedRetriever(), [BRIDGE_DEEP, COMPARISON_HALF], modes=("graph",), k=20, progress=False)
    assert deep["modes"]["graph"]["chain"]["all"] == {"questions": 2, "both_hops@5": 0.5, "both_hops@10": 1.0,
                                                       "both_hops@20": 1.0, "hop1@20": 1.0, "hop2@20": 1.0}


def test_a_smaller_k_reports_only_the_depths_it_retrieved():
    shallow = evaluate_retrieval(ScriptedRetriever(), [BRIDGE_FOUND, BRIDGE_DEEP], modes=("hybrid",), k=5, progress=False)
    bridge = shallow["modes"]["hybrid"]["chain"]["bridge"]
    assert bridge == {"questions": 2, "both_hops@5": 0.5, "hop1@5": 1.0, "hop2@5": 0.5}


def test_a_set_without_hops_reports_no_chain():
    plain = evaluate_retrieval(ScriptedRetriever(), [SINGLE], modes=("hybrid",), progress=False)
    assert plain["multihop_questions"] == 0 and "chain" not in plain["modes"]["hybrid"]
    assert "both hops" not in report.retrieval_markdown(plain)


def test_the_report_has_one_row_per_retriever_and_hop_kind(result):
    markdown = report.retrieval_markdown(result)
    assert "both hops' evidence in the top k (3 answerable multi-hop questions)" in markdown
    assert "| retriever | hop kind | questions | both hops@5 | both hops@10 | hop1@10 | hop2@10 |" in markdown
    assert "| hybrid | comparison | 1 | 0.000 | 0.000 | 1.000 | 0.000 |" in markdown
    assert "| hybrid + graph | all | 3 | 0.667 | 1.000 | 1.000 | 1.000 |" in markdown
