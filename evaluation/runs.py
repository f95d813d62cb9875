"""The evaluation runs behind ``kgqa eval``: plain functions that tests call directly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from kg.store import Passage, open_knowledge_base, session_factory
from evaluation import plots, report
from evaluation.devset import make_devset
from evaluation.metrics import normalize_answer
from evaluation.questions import EvalQuestion, load_questions, save_questions
from kgqa.settings import Settings


def _sessions(settings: Settings):
    return session_factory(open_knowledge_base(settings))


def _qa_engine(settings: Settings, *, load_lm: bool, load_reader: bool = True, load_checker: bool = True,
               generator=None):
    """The engine under test; retrieval alone never loads the LM (``retrieve`` warms only the index)."""
    from qa.engine import QAEngine

    engine = QAEngine(settings, load_reader=load_reader, load_checker=load_checker, generator=generator)
    if load_lm:
        engine.warm_up()
    return engine


def build_devset(settings: Settings, out: Path, *, max_questions: int | None = None, seed: int = 13) -> list[EvalQuestion]:
    """Generate the dev set from the KB's infobox facts and write it as JSONL."""
    with _sessions(settings)() as session:
        questions = make_devset(session, max_questions=max_questions, seed=seed)
    save_questions(questions, out)
    return questions


def _passage_counts(settings: Settings) -> Counter:
    """Passages per (normalised) title: the number of relevant items nDCG's ideal ranking can hold."""
    with _sessions(settings)() as session:
        rows = session.execute(select(Passage.title, func.count()).group_by(Passage.title))
        return Counter({normalize_answer(title): count for title, count in rows})


def run_retrieval_eval(settings: Settings, questions_path: Path, *, report_dir: Path | None = None,
                       modes=None, k: int = 10, limit: int | None = None, engine=None, progress: bool = True):
    """Every retriever on the question set; writes report.json, report.md and recall_at_k.png."""
    from evaluation.retrieval_eval import MODES, evaluate_retrieval

    questions = load_questions(questions_path, limit=limit)
    counts = _passage_counts(settings)

    def relevant_count(question: EvalQuestion) -> int | None:
        if question.gold_titles:
            return sum(counts[normalize_answer(t)] for t in question.gold_titles) or None
        return len(question.gold_passage_ids) or None

    engine = engine or _qa_engine(settings, load_lm=False)
    result = evaluate_retrieval(engine, questions, modes=modes or MODES, k=k,
                                relevant_count=relevant_count, progress=progress)
    result["meta"] = report.run_metadata(settings, questions_path)
    report_dir = Path(report_dir) if report_dir else report.default_report_dir(settings, "retrieval")
    markdown = report.retrieval_markdown(result)
    paths = report.write_report(report_dir, result, markdown)
    paths["recall_plot"] = plots.plot_recall_curves(result, report_dir / "recall_at_k.png")
    return result, markdown, paths


def run_fusion_tuning(settings: Settings, questions_path: Path, *, report_dir: Path | None = None,
                      limit: int | None = None, pipeline=None, progress: bool = True):
    """Grid-search graph mode's fusion settings on a DEV question set; writes report.json and report.md."""
    from evaluation.fusion_tuning import collect, tune, tuning_markdown
    from retrieval.knowledge_base import KnowledgeBase
    from retrieval.pipeline import RetrievalPipeline

    questions = load_questions(questions_path, limit=limit)
    if pipeline is None:
        kb = KnowledgeBase(settings)
        kb.warm_up()
        pipeline = RetrievalPipeline(kb)
    result = tune(collect(pipeline, questions, progress=progress), progress=progress)
    result["meta"] = report.run_metadata(settings, questions_path)
    report_dir = Path(report_dir) if report_dir else report.default_report_dir(settings, "fusion")
    markdown = tuning_markdown(result)
    return result, markdown, report.write_report(report_dir, result, markdown)


def _embedding_similarity(settings: Settings):
    from models.embedding.embedder import Embedder

    embedder = Embedder(settings)
    embedder.warm_up()
    return embedder.encode_documents


def stand_in(claims_path: Path, right_share: float):
    """The generator that writes the claim file's hand-written claims (``evaluation.claim_set``)."""
    from evaluation.claim_set import StandInGenerator, load_claims

    return StandInGenerator(load_claims(claims_path), right_share=right_share)


def wrong_claims_shown(rows: list[dict], generator) -> dict:
    """With a stand-in: the questions whose shown answer holds one of their wrong claims, as written."""
    wrong = {c.question.strip(): {w.text.rstrip(".") for w in c.labelled("wrong")}
             for c in generator.by_question.values()}
    shown = [r for r in rows if any(s.rstrip(".") in wrong.get(r["question"].strip(), ()) for s in r.get("shown", []))]
    return {"questions": len(rows), "with_a_wrong_claim_shown": len(shown),
            "share": len(shown) / len(rows) if rows else None, "ids": [r["id"] for r in shown]}


def run_qa_eval(settings: Settings, questions_path: Path, *, report_dir: Path | None = None,
                limit: int | None = None, engine=None, use_embeddings: bool = True, progress: bool = True,
                stand_in_claims: Path | None = None, right_share: float = 1.0):
    """Ask every question; writes report.json, report.md and latency.png.

    ``stand_in_claims``: draft with the hand-written claims of that file (``StandInGenerator``)
    instead of the configured LM.
    """
    from evaluation.evidence import StoreEvidence
    from evaluation.qa_eval import evaluate_qa
    from evaluation.support import SupportChecker

    questions = load_questions(questions_path, limit=limit)
    _sessions(settings)
    generator = stand_in(stand_in_claims, right_share) if stand_in_claims else None
    engine = engine or _qa_engine(settings, load_lm=True, generator=generator)
    checker = SupportChecker(embed=_embedding_similarity(settings) if use_embeddings else None)
    result = evaluate_qa(engine, questions, checker=checker, evidence_text=StoreEvidence(settings),
                         retrieval_k=settings.top_k, progress=progress)
    if generator is not None:
        result["summary"]["stand_in_wrong_claims_shown"] = wrong_claims_shown(result["per_question"], generator)
    result["meta"] = report.run_metadata(settings, questions_path, {
        "model": engine.generator.model_name if engine.generator else "",
        "stand_in": {"claims": str(stand_in_claims), "right_share": right_share} if stand_in_claims else None,
        "support_checker": checker.__dict__ | {"embed": use_embeddings}})
    report_dir = Path(report_dir) if report_dir else report.default_report_dir(settings, "qa")
    markdown = report.qa_markdown(result)
    paths = report.write_report(report_dir, result, markdown)
    paths["latency_plot"] = plots.plot_latency_histogram(result["per_question"], report_dir / "latency.png")
    return result, markdown, paths


def run_calibration(settings: Settings, questions_path: Path, *, out: Path, report_dir: Path | None = None,
                    limit: int | None = None, drafts: Path | None = None, engine=None, progress: bool = True):
    """Choose the claim checker's threshold for the configured LM on a DEV set; writes its model to ``out``."""
    from evaluation.calibrate import calibrate, calibration_markdown

    questions = load_questions(questions_path, limit=limit)
    _sessions(settings)
    engine = engine or _qa_engine(settings, load_lm=True)
    report_dir = Path(report_dir) if report_dir else report.default_report_dir(settings, "calibration")
    report_dir.mkdir(parents=True, exist_ok=True)
    model, result = calibrate(engine, questions, drafts=drafts or report_dir / "drafts.jsonl", source=str(questions_path),
                              progress=progress)
    model.save(out)
    result["meta"] = report.run_metadata(settings, questions_path, {"model": engine.generator.model_name})
    markdown = calibration_markdown(result) + f"\n\nmodel: {out} (serve with KGQA_CHECKER_MODEL={out})"
    return result, markdown, report.write_report(report_dir, result, markdown)


def run_checker_fit(settings: Settings, questions_path: Path, claims_path: Path, *, out: Path,
                    report_dir: Path | None = None, engine=None, progress: bool = True):
    """Fit the claim checker on a DEV claim set and write its model to ``out``."""
    from evaluation.checker_fit import fit_checker
    from evaluation.claim_set import load_claims

    questions = load_questions(questions_path)
    _sessions(settings)
    engine = engine or _qa_engine(settings, load_lm=False, load_checker=False)
    model, result = fit_checker(engine, questions, load_claims(claims_path), out=out, source=str(claims_path),
                                progress=progress)
    model.save(out)
    result["meta"] = report.run_metadata(settings, questions_path, {"claims": str(claims_path)})
    report_dir = Path(report_dir) if report_dir else report.default_report_dir(settings, "checker-fit")
    markdown = report.checker_fit_markdown(result) + f"\n\nmodel: {out}"
    return result, markdown, report.write_report(report_dir, result, markdown)


def run_checker_eval(settings: Settings, questions_path: Path, claims_path: Path, *,
                     report_dir: Path | None = None, engine=None, progress: bool = True):
    """The claim checker as a classifier on a claim set: right and wrong claims accepted."""
    from evaluation.checker_fit import evaluate_checker
    from evaluation.claim_set import load_claims

    questions = load_questions(questions_path)
    _sessions(settings)
    engine = engine or _qa_engine(settings, load_lm=False)
    result = evaluate_checker(engine, questions, load_claims(claims_path), progress=progress)
    result["meta"] = report.run_metadata(settings, questions_path, {"claims": str(claims_path)})
    report_dir = Path(report_dir) if report_dir else report.default_report_dir(settings, "claims")
    markdown = report.checker_markdown(result)
    return result, markdown, report.write_report(report_dir, result, markdown)


def run_reader_fit(settings: Settings, questions_path: Path, *, out: Path, report_dir: Path | None = None,
                   limit: int | None = None, drafts: Path | None = None, risk: str = "empirical", engine=None,
                   progress: bool = True):
    """Fit the reader on a DEV set and write its model to ``out``; the report goes to report.json and report.md."""
    from evaluation.reader_fit import fit_markdown, fit_reader

    questions = load_questions(questions_path, limit=limit)
    _sessions(settings)
    engine = engine or _qa_engine(settings, load_lm=True, load_reader=False)
    report_dir = Path(report_dir) if report_dir else report.default_report_dir(settings, "reader")
    report_dir.mkdir(parents=True, exist_ok=True)
    model, result = fit_reader(engine, questions, drafts=drafts or report_dir / "drafts.jsonl",
                               source=str(questions_path), risk=risk, progress=progress)
    model.save(out)
    result["meta"] = report.run_metadata(settings, questions_path)
    markdown = fit_markdown(result) + f"\n\nmodel: {out}"
    return result, markdown, report.write_report(report_dir, result, markdown)
