"""Both eval commands end to end through the CLI, on a small generated set against the real sample KB."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def devset(sample_kb, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "dev.jsonl"
    result = CliRunner().invoke(main, ["eval", "make-devset", "--out", str(out), "--max", "12", "--seed", "5"],
                                obj={"settings": sample_kb})
    assert result.exit_code == 0, result.output
    assert "answerable" in result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) <= 12 and any(q.get("unanswerable") for q in lines) and any(q.get("answer") for q in lines)
    return out


def test_retrieval_eval_writes_markdown_json_and_recall_plot(sample_kb, devset, tmp_path):
    report_dir = tmp_path / "retrieval"
    result = CliRunner().invoke(main, ["eval", "retrieval", str(devset), "--report-dir", str(report_dir)],
                                obj={"settings": sample_kb})
    assert result.exit_code == 0, result.output
    for label in ("| dense |", "| sparse (BM25) |", "| hybrid |", "| hybrid + graph |"):
        assert label in result.output
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["modes"]) == {"dense", "sparse", "hybrid", "graph"}
    for values in report["modes"].values():
        assert 0.0 <= values["recall@1"] <= values["recall@5"] <= values["recall@10"] <= 1.0
        assert values["mrr@10"] <= values["recall@10"] and len(values["curve"]) == 10
    # The dev set names each question's subject, so the graph-aware retriever must find its article.
    assert report["modes"]["graph"]["recall@10"] >= 0.8
    assert (report_dir / "recall_at_k.png").read_bytes()[:4] == b"\x89PNG"
    assert (report_dir / "report.md").read_text().startswith("### Retrieval")


def test_qa_eval_scores_answers_citations_abstention_and_latency(sample_kb, devset, tmp_path):
    report_dir = tmp_path / "qa"
    result = CliRunner().invoke(main, ["eval", "qa", str(devset), "--limit", "5", "--report-dir", str(report_dir)],
                                obj={"settings": sample_kb})
    assert result.exit_code == 0, result.output
    assert "citation precision (ALCE)" in result.output and "| total |" in result.output
    report = json.loads((report_dir / "report.json").read_text())
    summary = report["summary"]
    assert summary["questions"] == 5 and summary["errors"] == 0
    assert summary["answerable"] >= 1 and summary["unanswerable"] >= 1
    assert summary["latency"]["total"]["p50_s"] > 0
    for row in report["per_question"]:
        assert row["timings"]["total"] >= row["timings"]["generate"] >= 0
        assert row["abstained"] or row["sentences"] >= 1
    assert (report_dir / "latency.png").stat().st_size > 1000


def test_a_bad_question_file_is_one_clear_line(sample_kb, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": ""}\n')
    result = CliRunner().invoke(main, ["eval", "retrieval", str(bad)], obj={"settings": sample_kb})
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output
