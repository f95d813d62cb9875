"""The ``kgqa`` command: a Flask ``FlaskGroup`` gathering every package's commands.

This is the one module that imports every layer. Each command is a thin click
wrapper, defined in its own package, around a plain function that tests call
directly; the group adds Flask's ``routes`` and ``shell`` for the app that
``create_app`` builds from the same settings.
"""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup, routes_command, shell_command
from pydantic import ValidationError

from app.serve import serve_command
from evaluation.cli import eval_group
from kg.cli import ingest_command, kg_group
from kgqa.assets import stay_offline
from kgqa.errors import KgqaError
from kgqa.settings import command_settings
from models.cli import setup_command
from qa.cli import ask_command


def _create_app_from_context():
    from app import create_app

    return create_app(command_settings(click.get_current_context()))


class KgqaGroup(FlaskGroup):
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


@click.group(
    cls=KgqaGroup,
    create_app=_create_app_from_context,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
@click.pass_context
def main(ctx: click.Context) -> None:
    """kgqa: grounded, cited question answering over Wikipedia dumps."""
    stay_offline()
    command_settings(ctx)  # read KGQA_* once, here, so a refused value fails before any work


# Flask's --app/--debug/--env-file options choose another app or environment; kgqa's app is
# always create_app(Settings()) from KGQA_* variables, so the group leaves them out.
main.params = [p for p in main.params if p.name not in {"app", "debug", "env_file"}]

for _command in (setup_command, ingest_command, kg_group, ask_command, serve_command, eval_group,
                 routes_command, shell_command):
    main.add_command(_command)


if __name__ == "__main__":
    main()
