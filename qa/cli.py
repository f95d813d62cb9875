"""``kgqa ask``: answer one question from the command line."""

from __future__ import annotations

import click

from kgqa.records import QAResult
from kgqa.settings import command_settings


def render(result: QAResult) -> str:
    """The answer, then numbered sources with their URLs, as a person reads it."""
    lines = [result.answer, ""]
    if result.abstained and result.abstain_reason:
        lines += [f"(abstained: {result.abstain_reason})", ""]
    if result.citations:
        lines.append("Sources:")
        for citation in result.citations:
            where = f"{citation.title} — {citation.section}" if citation.section else citation.title
            lines.append(f"  [{citation.id}] {where}  {citation.url}")
    if result.dropped_sentences:
        lines += ["", f"({len(result.dropped_sentences)} unsupported generated sentence(s) left out)"]
    t = result.timings
    lines += ["", f"{result.model} on {result.device} ({result.backend}): retrieve {t.link + t.retrieve:.2f}s, "
                  f"first token {t.first_token:.2f}s, total {t.total:.2f}s"]
    return "\n".join(lines)


@click.command("ask")
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--k", type=click.IntRange(1, 50), default=None, help="Passages to retrieve (default: settings.top_k).")
@click.option("--stream", is_flag=True, help="Print the model's tokens as they come, then the grounded answer.")
@click.pass_context
def ask_command(ctx: click.Context, question: str, as_json: bool, k: int | None, stream: bool) -> None:
    """Answer QUESTION from the knowledge base, with citations, or say it is not there."""
    from qa.engine import QAEngine

    engine = QAEngine(command_settings(ctx))
    result = None
    for event in engine.ask_stream(question, k=k):
        if event.type == "token" and stream and not as_json:
            click.echo(event.text, nl=False)
        elif event.type == "result":
            result = event.result
    if stream and not as_json:
        click.echo("\n")
    click.echo(result.model_dump_json(indent=2) if as_json else render(result))
