"""``kgqa setup``: fetch the sample dump and prepare the bundled models, once (idempotent)."""

from __future__ import annotations

import click

from kgqa.settings import command_settings


@click.command("setup")
@click.option("--dump/--no-dump", default=True, help="Fetch the bundled sample dump.")
@click.option("--lm/--no-lm", default=True, help="Convert the bundled GGUF LM to safetensors.")
@click.option("--embedder/--no-embedder", default=True, help="Export the embedder to int8 ONNX.")
@click.pass_context
def setup_command(ctx: click.Context, dump: bool, lm: bool, embedder: bool) -> None:
    """Fetch the sample dump and prepare the bundled models under the data folder."""
    from kgqa import assets

    settings = command_settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"embedder: {assets.resolve_embedder(settings)}")
    if embedder:
        from models.embedding.embedder import prepare

        click.echo(f"embedder export: {prepare(settings)}")
    if dump:
        click.echo(f"sample dump: {assets.fetch_sample_dump(settings)}")
    if lm:
        from models.lm.prepare import convert_bundled_lm

        click.echo(f"LM: {convert_bundled_lm(settings)}")
