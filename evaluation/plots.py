"""PNG plots for a report folder: recall@k curves per retriever and a latency histogram (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from evaluation.retrieval_eval import CURVE_KS, MODE_LABELS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_recall_curves(report: dict, path: Path) -> Path:
    """recall@k for k = 1..10, one line per retriever; a second panel for evidence-level hits when known."""
    plt = _pyplot()
    panels = [("curve", f"gold article ({report['questions']} questions)")]
    if report.get("evidence_questions"):
        panels.append(("evidence_curve", f"gold passage ({report['evidence_questions']} questions)"))
    figure, axes_list = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for axes, (key, title) in zip(axes_list[0], panels):
        for mode, values in report["modes"].items():
            curve = values.get(key) or []
            axes.plot(list(CURVE_KS[: len(curve)]), curve, marker="o", label=MODE_LABELS.get(mode, mode))
        axes.set_xlabel("k (passages retrieved)")
        axes.set_ylabel("recall@k")
        axes.set_ylim(0, 1.02)
        axes.set_xticks(list(CURVE_KS))
        axes.set_title(f"Retrieval recall@k: hit = {title}")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_latency_histogram(rows: list[dict], path: Path) -> Path:
    """Distribution of end-to-end seconds per question, with retrieval and generation overlaid."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    timed = [r["timings"] for r in rows if r.get("timings")]
    for stage, colour in (("total", "tab:blue"), ("generate", "tab:orange"), ("retrieve", "tab:green")):
        values = [t[stage] for t in timed]
        if values:
            axes.hist(values, bins=min(20, max(5, len(values) // 2)), alpha=0.55, label=stage, color=colour)
    axes.set_xlabel("seconds")
    axes.set_ylabel("questions")
    axes.set_title(f"Latency per question ({len(timed)} questions)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
