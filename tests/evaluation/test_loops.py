"""The retrieval and QA eval loops and the report writers, on a scripted engine with known outcomes."""

from __future__ import annotations

import json

import pytest

from evaluation import plots, report
from evaluation.qa_eval import evaluate_qa
from evaluation.questions import EvalQuestion
from evaluation.retrieval_eval import evaluate_retrieval, relevance
from kgqa.records import AnswerSentence, Citation, PassageHit, QAResult, Timings


def _hit(title: str, text: str = "", passage_id: str = "") -> PassageHit:
    return PassageHit(passage_id=passage_id or f"{title}:0", page_id=1, title=title, section="", text=text,
                      url="u", score=1.0)


ALABAMA = EvalQuestion(id="a", question="What is the capital of Alabama?", answer="Montgomery",
                       gold_titles=["Alabama"], gold_passage_ids=["Alabama:0"])
ORWELL = EvalQuestion(id="b", question="Who wrote Animal Farm?", answer="George Orwell", gold_titles=["Animal Farm"])
NO_GOLD = EvalQuestion(id="c", question="Where is Algiers?", answer="Algeria")
FUTURE = EvalQuestion(id="d", question="Who will win the 2099 World Cup?", unanswerable=True, kind="future")


class ScriptedRetriever:
    """Dense ranks the gold article 1st, 3rd and never; sparse never finds anything."""

    rankings = {
        "dense": {"a": [_hit("Alabama")], "b": [_hit("X"), _hit("Y"), _hit("Animal Farm")], "c": [_hit("X")]},
        "sparse": {"a": [_hit("X")], "b": [_hit("X")], "c": [_hit("Y", "Algiers is in Algeria.")]},
    }

    def retrieve(self, question, *, k=10, mode="hybrid"):
        qid = {q.question: q.id for q in (ALABAMA, ORWELL, NO_GOLD)}[question]
        return self.rankings[mode][qid]


def test_relevance_uses_gold_titles_else_passage_ids_else_the_answer_string():
    assert relevance(ALABAMA, [_hit("Alabama"), _hit("Alaska")]) == [True, False]
    by_id = EvalQuestion(question="q", gold_passage_ids=["p2"])
    assert relevance(by_id, [_hit("A", passage_id="p1"), _hit("A", passage_id="p2")]) == [False, True]
    assert relevance(NO_GOLD, [_hit("Y", "Algiers, Algeria"), _hit("Z", "Nigeria")]) == [True, False]


def test_retrieval_eval_aggregates_known_ranks_per_mode():
    result = evaluate_retrieval(ScriptedRetriever(), [ALABAMA, ORWELL, NO_GOLD, FUTURE],
                                modes=("dense", "sparse"), progress=False)
    assert result["questions"] == 3 and result["skipped_unanswerable"] == 1
    dense, sparse = result["modes"]["dense"], result["modes"]["sparse"]
    assert dense["mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert (dense["recall@1"], dense["recall@5"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert sparse["mrr@10"] == pytest.approx(1 / 3)  # only the answer-string question, at rank 1
    assert dense["evidence_recall@5"] == 1.0 and dense["evidence_mrr@10"] == 1.0  # the one question with gold passage ids
    assert dense["curve"][:3] == [pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert result["per_question"][1]["first_hit_rank"] == {"dense": 3, "sparse": None}


ALABAMA_TEXT = "Alabama is a state of the United States. Its capital is Montgomery."


def _result(question: str, answer: str, *, abstained=False, cited=("1",), total=2.0) -> QAResult:
    citations = [
        Citation(id="1", kind="passage", title="Alabama", url="u", snippet=ALABAMA_TEXT, score=1.0, passage_id="Alabama:0"),
        Citation(id="2", kind="passage", title="Algeria", url="u", snippet="Algeria is in Africa.", score=0.5,
                 passage_id="Algeria:0"),
    ]
    sentences = [] if abstained else [AnswerSentence(text=answer, citations=list(cited), supported=True, support=1.0)]
    return QAResult(question=question, answer="" if abstained else answer, sentences=sentences, citations=citations,
                    facts=[], entities=[], abstained=abstained,
                    timings=Timings(retrieve=0.1, first_token=0.5, generate=total - 0.2, total=total))


class ScriptedAnswerer:
    def __init__(self, answers):
        self.answers = answers

    def ask(self, question):
        return self.answers[question]

    def retrieve(self, question, *, k=10, mode="hybrid"):
        return []


def test_qa_eval_scores_answers_citations_and_abstention():
    answerer = ScriptedAnswerer({
        ALABAMA.question: _result(ALABAMA.question, "The capital of Alabama is Montgomery [1][2].", cited=("1", "2")),
        ORWELL.question: _result(ORWELL.question, "", abstained=True, total=1.0),
        FUTURE.question: _result(FUTURE.question, "", abstained=True, total=0.5),
    })
    result = evaluate_qa(answerer, [ALABAMA, ORWELL, FUTURE], progress=False)
    s = result["summary"]
    assert (s["answerable"], s["unanswerable"]) == (2, 1)
    assert s["exact_match"] == 0.0 and s["answer_contained"] == 0.5  # a sentence, not the bare answer
    assert s["f1"] == pytest.approx((2 * (1 / 5) * 1 / (1 / 5 + 1)) / 2)  # 5 tokens once "the" goes
    assert s["citation_recall"] == 1.0 and s["citation_precision"] == 0.5  # citation [2] is not needed
    assert s["abstention_answerable"] == 0.5 and s["abstention_unanswerable"] == 1.0
    assert s["answerable_gold_retrieved"] == 1 and s["abstention_answerable_gold_retrieved"] == 0.0
    assert s["latency"]["total"]["p50_s"] == pytest.approx(1.0)
    # one of two answerable questions right: the interval is wide, and holds the rate
    low, high = s["intervals_95"]["accuracy"]
    assert low < 0.5 < high and high - low > 0.6
    assert s["intervals_95"]["wrong_cited"][0] == 0.0 and s["intervals_95"]["abstention_unanswerable"][1] == 1.0


def test_reports_write_markdown_json_and_pngs(tmp_path):
    retrieval = evaluate_retrieval(ScriptedRetriever(), [ALABAMA, ORWELL, NO_GOLD], modes=("dense", "sparse"),
                                   progress=False)
    markdown = report.retrieval_markdown(retrieval)
    assert "| dense | 0.333 | 0.667 |" in markdown and "sparse (BM25)" in markdown
    paths = report.write_report(tmp_path / "r", retrieval, markdown)
    assert json.loads(paths["json"].read_text())["modes"]["dense"]["recall@5"] == pytest.approx(2 / 3)
    png = plots.plot_recall_curves(retrieval, tmp_path / "r" / "recall_at_k.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    answerer = ScriptedAnswerer({ALABAMA.question: _result(ALABAMA.question, "Montgomery [1].")})
    qa = evaluate_qa(answerer, [ALABAMA], progress=False)
    markdown = report.qa_markdown(qa)
    assert "| exact match | 1.000 |" in markdown
    low, high = qa["summary"]["intervals_95"]["accuracy"]
    assert f"| 1.000 ({low:.3f}–{high:.3f}) |" in markdown and high == 1.0 and low < 0.5
    hist = plots.plot_latency_histogram(qa["per_question"], tmp_path / "latency.png")
    assert hist.stat().st_size > 1000
