"""``kgqa ingest`` and ``kgqa kg stats|show|export|repair|delete``: thin click wrappers over plain functions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kgqa.settings import command_settings as _settings


@click.command("ingest")
@click.argument("dump", type=click.Path(path_type=Path))
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after N pages of the dump.")
@click.option("--resume", is_flag=True, help="Skip pages up to the last one committed by an unfinished run.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parser processes (default: all cores).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--sync", is_flag=True,
              help="The dump is the wiki now: also remove every stored page it no longer holds (a part of a split "
                   "dump, named -p<first>p<last>, only within its page ids). Not with --limit.")
@click.pass_context
def ingest_command(ctx: click.Context, dump: Path, limit, resume: bool, workers, no_progress: bool,
                   sync: bool) -> None:
    """Ingest a MediaWiki pages-articles dump (.xml, .xml.bz2, .xml.gz) into the knowledge base."""
    from kg.ingest import ingest_dump
    from kg.removal import turned_into_redirects

    if sync and limit is not None:
        raise click.UsageError("--sync removes every page the dump does not hold, so it reads the whole dump: "
                               "drop --limit (a partial ingest never deletes)")
    settings = _settings(ctx)
    summary = ingest_dump(settings, dump, limit=limit, resume=resume, progress=not no_progress, workers=workers,
                          sync=sync)
    click.echo(
        f"ingested {summary.pages} pages, {summary.redirects} redirects, {summary.passages} passages, "
        f"{summary.triples} triples; {summary.entities} entities in the knowledge base; "
        f"{summary.unchanged} unchanged, {summary.skipped} skipped; {summary.elapsed_s:.1f}s"
    )
    if summary.removed is not None:
        click.echo(f"sync: {summary.removed.describe()}; {turned_into_redirects(summary.redirected)}")


@click.group("kg")
def kg_group() -> None:
    """Inspect, export and edit the knowledge graph."""


@kg_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def stats_command(ctx: click.Context, as_json: bool) -> None:
    """Counts of pages, passages, entities, aliases and triples, and index consistency."""
    from kg.stats import kb_stats

    stats = kb_stats(_settings(ctx))
    if as_json:
        click.echo(json.dumps(stats, indent=2, default=str))
        return
    for key, value in stats.items():
        click.echo(f"{key:>24}: {value}")


@kg_group.command("repair")
@click.pass_context
def repair_command(ctx: click.Context) -> None:
    """Check every index file against its stamp; rebuild the damaged ones from the SQL store."""
    from kg.repair import repair_index

    report = repair_index(_settings(ctx))
    damaged = ", ".join(report["damaged"]) or "none"
    click.echo(f"damaged: {damaged}; vectors: {report['vectors']}")


@kg_group.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="TITLE_OR_ID...")
@click.pass_context
def delete_command(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove pages (titles or page ids, articles or redirects) and everything derived from them."""
    from kg.removal import delete_pages

    click.echo(delete_pages(_settings(ctx), names).describe())


@kg_group.command("show")
@click.argument("entity")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--max-links", default=20, show_default=True, help="Neighbours listed per direction.")
@click.pass_context
def show_command(ctx: click.Context, entity: str, as_json: bool, max_links: int) -> None:
    """An entity's aliases, facts with provenance, and in- and out-neighbours."""
    from kg.stats import show_entity

    view = show_entity(_settings(ctx), entity)
    if as_json:
        click.echo(view.model_dump_json(indent=2))
        return
    click.echo(f"{view.title}  (entity {view.entity_id})  {view.url}")
    if view.is_disambiguation:
        click.echo("  disambiguation page")
    click.echo(f"  aliases: {', '.join(view.aliases) or '-'}")
    click.echo(f"  categories: {', '.join(view.categories) or '-'}")
    click.echo(f"  facts ({len(view.facts)}):")
    for fact in view.facts:
        marker = "->" if fact.object_is_entity else "="
        click.echo(f"    {fact.predicate} {marker} {fact.object}   [page {fact.page_id} rev {fact.rev_id} field {fact.field}]")
    for label, items in (("out", view.out_neighbours), ("in", view.in_neighbours)):
        linked = [n for n in items if n.kind == "links_to"]
        click.echo(f"  {label}-neighbours ({len(linked)} links): "
                   + ", ".join(n.title for n in linked[:max_links]) + (" ..." if len(linked) > max_links else ""))


@kg_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["graphml", "jsonl"]), required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File (default: stdout for jsonl).")
@click.pass_context
def export_command(ctx: click.Context, fmt: str, output: Path | None) -> None:
    """Write the whole graph, page links included, as GraphML or JSON lines (which streams the links)."""
    from kg.export import export_graphml, export_jsonl
    from kg.graph import build_graph, graph_lines
    from kg.store import open_knowledge_base, session_factory

    settings = _settings(ctx)
    engine = open_knowledge_base(settings)
    try:
        with session_factory(engine)() as session:
            if fmt == "graphml":
                graph = build_graph(session, links=True)
                path = output or settings.data_dir / "graph.graphml"
                export_graphml(graph, path)
                click.echo(f"wrote {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges to {path}",
                           err=True)
                return
            if output is None:
                export_jsonl(graph_lines(session), sys.stdout)
                return
            with output.open("w", encoding="utf-8") as handle:
                lines = export_jsonl(graph_lines(session), handle)
            click.echo(f"wrote {lines} lines to {output}", err=True)
    finally:
        engine.dispose()
