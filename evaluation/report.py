"""Report writers: a markdown table for the terminal and the README, and report.json for diffs between runs."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from evaluation.qa_eval import STAGES
from evaluation.retrieval_eval import MODE_LABELS


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mode_rows(report: dict, columns: list[str]) -> list[list[str]]:
    return [
        [MODE_LABELS.get(mode, mode)] + [_fmt(values[c], 1 if c.endswith("_ms") else 3) for c in columns]
        for mode, values in report["modes"].items()
    ]


def retrieval_markdown(report: dict) -> str:
    article = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "latency_p50_ms"]
    evidence = ["evidence_recall@1", "evidence_recall@5", "evidence_recall@10", "evidence_mrr@10"]
    text = (f"### Retrieval: hit = passage of a gold article ({report['questions']} questions, k={report['k']})\n\n"
            + _table(["retriever"] + article, _mode_rows(report, article)))
    if report.get("evidence_questions"):
        text += (f"\n\n### Retrieval: hit = gold passage stating the answer ({report['evidence_questions']} questions)"
                 "\n\n" + _table(["retriever"] + evidence, _mode_rows(report, evidence)))
    if report.get("multihop_questions"):
        text += (f"\n\n### Retrieval: both hops' evidence in the top k ({report['multihop_questions']} answerable "
                 "multi-hop questions)\n\n" + _chain_table(report))
    return text


def _chain_table(report: dict) -> str:
    """One row per retriever and hop kind: how often both hops' passages, and each hop's alone, were retrieved."""
    columns = [name for name in next(values["chain"]["all"] for values in report["modes"].values() if "chain" in values)
               if name != "questions"]
    rows = [[MODE_LABELS.get(mode, mode), kind, str(figures["questions"])] + [_fmt(figures.get(c)) for c in columns]
            for mode, values in report["modes"].items() for kind, figures in values.get("chain", {}).items()]
    return _table(["retriever", "hop kind", "questions"] + [c.replace("_", " ") for c in columns], rows)


def _with_interval(summary: dict, name: str) -> str:
    """A rate and its 95% interval, "0.112 (0.075–0.166)", where the report has one."""
    interval = (summary.get("intervals_95") or {}).get(name)
    if summary.get(name) is None or not interval:
        return _fmt(summary.get(name))
    return f"{_fmt(summary[name])} ({interval[0]:.3f}–{interval[1]:.3f})"


def qa_markdown(report: dict) -> str:
    s = report["summary"]
    quality = [
        ["questions (answerable / unanswerable)", f"{s['questions']} ({s['answerable']} / {s['unanswerable']})"],
        ["accuracy (answerable, gold stated; 95% Wilson interval)", _with_interval(s, "accuracy")],
        ["wrong cited answers (of answerable)", _with_interval(s, "wrong_cited")],
        ["false abstention (of answerable)", _with_interval(s, "false_abstention")],
        ["exact match", _fmt(s["exact_match"])],
        ["token F1", _fmt(s["f1"])],
        ["answer contained", _fmt(s["answer_contained"])],
        ["answer contained, when answered", _fmt(s["answer_contained_when_answered"])],
        ["citation recall (ALCE)", _fmt(s["citation_recall"])],
        ["citation precision (ALCE)", _fmt(s["citation_precision"])],
        ["abstention, answerable", _fmt(s["abstention_answerable"])],
        [f"abstention, answerable with gold retrieved (n={s['answerable_gold_retrieved']})",
         _fmt(s["abstention_answerable_gold_retrieved"])],
        ["abstention, unanswerable", _with_interval(s, "abstention_unanswerable")],
        ["errors", str(s["errors"])],
    ]
    if s.get("stand_in_wrong_claims_shown"):
        shown = s["stand_in_wrong_claims_shown"]
        quality.append(["stand-in: questions whose answer shows a wrong claim",
                        f"{_fmt(shown['share'])} ({shown['with_a_wrong_claim_shown']} of {shown['questions']})"])
    latency = [[stage, _fmt(s["latency"][stage]["p50_s"]), _fmt(s["latency"][stage]["p95_s"])] for stage in STAGES]
    kinds = [
        [kind or "(none)", str(k["answerable"]), str(k["unanswerable"]), _fmt(k["accuracy"]), _fmt(k["wrong_cited"]),
         _fmt(k["false_abstention"]), _fmt(k["abstention_unanswerable"])]
        for kind, k in s.get("by_kind", {}).items()
    ]
    return (
        "### Answer quality\n\n" + _table(["metric", "value"], quality)
        + "\n\n### Per question kind\n\n"
        + _table(["kind", "answerable", "unanswerable", "accuracy", "wrong cited", "false abstention",
                  "abstention, unanswerable"], kinds)
        + "\n\n### Latency per stage (seconds)\n\n" + _table(["stage", "p50", "p95"], latency)
    )


def _claim_rows(figures: dict) -> list[list[str]]:
    rows = [
        ["right claims accepted (recall; 95% interval)",
         f"{_fmt(figures['right_accepted'])} of {figures['right_claims']} {_interval(figures['right_accepted_95'])}"],
        ["wrong claims accepted (95% interval)",
         f"{_fmt(figures['wrong_accepted'])} of {figures['wrong_claims']} {_interval(figures['wrong_accepted_95'])}"],
        ["precision of accepted claims", _fmt(figures["precision"])],
    ]
    rows += [[f"wrong claims accepted, {kind}", f"{_fmt(k['accepted'])} of {k['claims']}"]
             for kind, k in figures["wrong_accepted_by_kind"].items()]
    return rows


def _interval(bounds) -> str:
    return f"({bounds[0]:.3f}–{bounds[1]:.3f})" if bounds else ""


def checker_markdown(report: dict) -> str:
    s = report["summary"]
    return (f"### Claim checker (threshold {s['threshold']:.3f})\n\n"
            + _table(["metric", "value"], _claim_rows(s))
            + "\n\n### As the answer path checks a drafted sentence (comparison and bridge checks included)\n\n"
            + _table(["metric", "value"], _claim_rows(s["answer_path"])))


def checker_fit_markdown(report: dict) -> str:
    trade = [[_fmt(row["threshold"], 2), _fmt(row["right_accepted"]), _fmt(row["wrong_accepted"]), _fmt(row["precision"])]
             for row in report["trade_off"]]
    return (f"### Claim checker fitted on dev: threshold {report['threshold']:.3f}\n\n"
            "Out of fold (5 folds by article):\n\n" + _table(["metric", "value"], _claim_rows(report["out_of_fold"]))
            + "\n\nIn sample (the shipped model on the claims it was fitted on):\n\n"
            + _table(["metric", "value"], _claim_rows(report["in_sample"]))
            + "\n\nOut-of-fold trade-off:\n\n"
            + _table(["threshold", "right accepted", "wrong accepted", "precision"], trade))


def run_metadata(settings, questions_path: Path, extra: dict | None = None) -> dict:
    """What a reader needs to compare two reports: when, on what, with which models."""
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "questions_file": str(questions_path),
        "data_dir": str(settings.data_dir),
        "python": platform.python_version(),
        "machine": platform.machine(),
        **(extra or {}),
    }


def default_report_dir(settings, kind: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return settings.reports_dir / f"{kind}-{stamp}"


def write_report(report_dir: Path, report: dict, markdown: str) -> dict[str, Path]:
    """report.json and report.md in ``report_dir``; returns their paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / "report.json"
    md_path = report_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown + "\n", encoding="utf-8")
    return {"json": json_path, "markdown": md_path}
