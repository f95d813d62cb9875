"""The ``kgqa`` command: one click group gathering each package's commands.

Each command is a thin wrapper around a plain function that tests call directly.
The same commands are registered on the Flask app, so ``flask --app app ...`` works too.
"""

from __future__ import annotations

import sys

import click

from pydantic import ValidationError

from kgqa.errors import KgqaError
from kgqa.settings import Settings


class KgqaGroup(click.Group):
    """Turns expected failures (missing assets, bad input, bad settings) into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KgqaError as exc:
            click.echo(f"kgqa: {exc}", err=True)
            sys.exit(2)
        except ValidationError as exc:  # a KGQA_* variable holds a value Settings refuses
            problems = "; ".join(
                f"KGQA_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
            )
            click.echo(f"kgqa: invalid setting: {problems}", err=True)
            sys.exit(2)


@click.group(cls=KgqaGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """kgqa: grounded, cited question answering over Wikipedia dumps."""
    ctx.ensure_object(dict)
    ctx.obj.setdefault("settings", Settings())


@main.command("setup")
@click.option("--dump/--no-dump", default=True, help="Fetch the bundled sample dump.")
@click.option("--lm/--no-lm", default=True, help="Convert the bundled GGUF LM to safetensors.")
@click.option("--embedder/--no-embedder", default=True, help="Export the embedder to int8 ONNX.")
@click.pass_obj
def setup_command(obj: dict, dump: bool, lm: bool, embedder: bool) -> None:
    """Fetch the sample dump and prepare the bundled models under the data folder."""
    from kgqa import assets

    settings: Settings = obj["settings"]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"embedder: {assets.resolve_embedder(settings)}")
    if embedder:
        from retrieval.embedder import prepare

        click.echo(f"embedder export: {prepare(settings)}")
    if dump:
        click.echo(f"sample dump: {assets.fetch_sample_dump(settings)}")
    if lm:
        click.echo(f"LM: {assets.convert_bundled_lm(settings)}")


def _register_package_commands(group: click.Group) -> None:
    """Add the commands each package defines (imports are light: each command loads what it needs)."""
    from app.cli import serve_command
    from kg.cli import ingest_command, kg_group
    from kgqa.evaluation.cli import eval_group
    from kgqa.qa.cli import ask_command

    for command in (ingest_command, kg_group, ask_command, serve_command, eval_group):
        group.add_command(command)


_register_package_commands(main)

if __name__ == "__main__":
    main()
