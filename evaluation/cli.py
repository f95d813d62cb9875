"""``kgqa eval``: make the dev set, then measure retrieval and answers; thin wrappers around ``runs``."""

from __future__ import annotations

from pathlib import Path

import click

from evaluation import runs
from kgqa.settings import command_settings as _settings

_QUESTIONS = click.argument("questions", type=click.Path(path_type=Path, dir_okay=False))
_REPORT_DIR = click.option("--report-dir", type=click.Path(path_type=Path, file_okay=False),
                           help="Where report.json, report.md and the PNGs go [default: <data>/reports/<kind>-<time>].")
_LIMIT = click.option("--limit", type=click.IntRange(min=1), help="Only the first N questions.")
_DRAFTS = click.option("--drafts", type=click.Path(path_type=Path, dir_okay=False),
                       help="JSONL of the LM's drafts to reuse and extend [default: <report dir>/drafts.jsonl].")


def _show(markdown: str, paths: dict) -> None:
    click.echo(markdown)
    click.echo("\nreport: " + ", ".join(str(p) for p in paths.values()))


@click.group("eval")
def eval_group() -> None:
    """Measure retrieval and answer quality on a question set (JSONL)."""


@eval_group.command("make-devset")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="[default: <data>/eval/dev.jsonl]")
@click.option("--max", "max_questions", type=click.IntRange(min=2), help="At most N questions in all.")
@click.option("--seed", type=int, default=13, show_default=True)
@click.pass_context
def make_devset_command(ctx: click.Context, out: Path | None, max_questions: int | None, seed: int) -> None:
    """Generate dev questions from the knowledge graph's infobox facts, plus unanswerable ones."""
    settings = _settings(ctx)
    out = out or settings.eval_dir / "dev.jsonl"
    questions = runs.build_devset(settings, out, max_questions=max_questions, seed=seed)
    unanswerable = sum(q.unanswerable for q in questions)
    click.echo(f"wrote {len(questions)} questions ({len(questions) - unanswerable} answerable, "
               f"{unanswerable} unanswerable) to {out}")


@eval_group.command("retrieval")
@_QUESTIONS
@_REPORT_DIR
@_LIMIT
@click.option("--k", type=click.IntRange(1, 50), default=10, show_default=True)
@click.option("--modes", default="dense,sparse,hybrid,graph", show_default=True,
              help="Comma-separated retrievers to compare.")
@click.pass_context
def retrieval_command(ctx, questions: Path, report_dir, limit, k: int, modes: str) -> None:
    """recall@1/5/10, MRR@10 and nDCG@10 per retriever, side by side; multi-hop sets add both hops in the top 5, 10, k."""
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = set(chosen) - {"dense", "sparse", "hybrid", "graph"}
    if unknown or not chosen:
        raise click.BadParameter(f"unknown retriever(s): {', '.join(sorted(unknown)) or 'none given'}", param_hint="--modes")
    _, markdown, paths = runs.run_retrieval_eval(_settings(ctx), questions, report_dir=report_dir,
                                                 modes=chosen, k=k, limit=limit)
    _show(markdown, paths)


@eval_group.command("tune-fusion")
@_QUESTIONS
@_REPORT_DIR
@_LIMIT
@click.pass_context
def tune_fusion_command(ctx, questions: Path, report_dir, limit) -> None:
    """Choose graph mode's fusion weights and gates on a DEV question set (never the test set)."""
    _, markdown, paths = runs.run_fusion_tuning(_settings(ctx), questions, report_dir=report_dir, limit=limit)
    _show(markdown, paths)


@eval_group.command("qa")
@_QUESTIONS
@_REPORT_DIR
@_LIMIT
@click.option("--embedding-check/--no-embedding-check", default=True, show_default=True,
              help="Let sentence-evidence embedding similarity rescue paraphrases in the support check.")
@click.option("--stand-in", "stand_in", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Draft with this claim file's hand-written claims instead of the LM: what the answer path "
                   "lets through for a capable model.")
@click.option("--right-share", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="With --stand-in: share of answerable questions whose draft holds a right claim "
                   "(every draft also holds a wrong one).")
@click.pass_context
def qa_command(ctx, questions: Path, report_dir, limit, embedding_check: bool, stand_in, right_share) -> None:
    """EM/F1, citation recall/precision, abstention and latency per stage (runs the LM)."""
    _, markdown, paths = runs.run_qa_eval(_settings(ctx), questions, report_dir=report_dir,
                                          limit=limit, use_embeddings=embedding_check,
                                          stand_in_claims=stand_in, right_share=right_share)
    _show(markdown, paths)


_CLAIMS = click.argument("claims", type=click.Path(path_type=Path, dir_okay=False))


@eval_group.command("claims")
@_QUESTIONS
@_CLAIMS
@_REPORT_DIR
@click.pass_context
def claims_command(ctx, questions: Path, claims: Path, report_dir) -> None:
    """The claim checker as a classifier: right and wrong hand-written claims accepted (no LM)."""
    _, markdown, paths = runs.run_checker_eval(_settings(ctx), questions, claims, report_dir=report_dir)
    _show(markdown, paths)


@eval_group.command("fit-checker")
@_QUESTIONS
@_CLAIMS
@_REPORT_DIR
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where the fitted model goes (the engine reads qa/checker_model.json).")
@click.pass_context
def fit_checker_command(ctx, questions: Path, claims: Path, report_dir, out: Path) -> None:
    """Fit the claim checker's trees, cross-encoder and threshold on a DEV claim set (never the test set)."""
    _, markdown, paths = runs.run_checker_fit(_settings(ctx), questions, claims, out=out, report_dir=report_dir)
    _show(markdown, paths)


@eval_group.command("calibrate")
@_QUESTIONS
@_REPORT_DIR
@_LIMIT
@_DRAFTS
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where the calibrated checker model goes; serve with KGQA_CHECKER_MODEL=<out>.")
@click.pass_context
def calibrate_command(ctx, questions: Path, report_dir, limit, drafts, out: Path) -> None:
    """Choose the claim checker's threshold for the configured LM (KGQA_LM_PATH / KGQA_LM_URL) on a DEV question set."""
    _, markdown, paths = runs.run_calibration(_settings(ctx), questions, out=out, report_dir=report_dir, limit=limit,
                                              drafts=drafts)
    _show(markdown, paths)


@eval_group.command("fit-reader")
@_QUESTIONS
@_REPORT_DIR
@_LIMIT
@_DRAFTS
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where the fitted model goes (the engine reads qa/reader_model.json).")
@click.option("--risk", type=click.Choice(["empirical", "conformal"]), default="empirical", show_default=True,
              help="How dev's rates must meet the trust targets: as measured, or with conformal risk control "
                   "(abstains more, misses the targets on new questions less often).")
@click.pass_context
def fit_reader_command(ctx, questions: Path, report_dir, limit, drafts, out: Path, risk: str) -> None:
    """Fit the reader's weights, candidate count and threshold on a DEV question set (never the test set)."""
    _, markdown, paths = runs.run_reader_fit(_settings(ctx), questions, out=out, report_dir=report_dir, limit=limit,
                                             drafts=drafts, risk=risk)
    _show(markdown, paths)
