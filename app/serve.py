"""``kgqa serve``: run the app under waitress, a production WSGI server.

waitress rather than the Flask dev server: it is pure Python, threaded (no
fork, so the model is loaded once and shared), and runs the same everywhere.
It needs more threads than model slots, so that requests beyond the slots get
an immediate 503 instead of waiting in the socket backlog.
"""

from __future__ import annotations

import click

from kgqa.settings import Settings, command_settings


def build_server(app, *, host: str = "127.0.0.1", port: int = 5000, threads: int | None = None):
    """A bound (not yet running) waitress server; ``port=0`` picks a free port (``server.effective_port``)."""
    from waitress import create_server

    settings: Settings = app.config["KGQA_SETTINGS"]
    threads = threads or settings.queue_size + 8
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=max(100, threads * 4),
        channel_timeout=120,
        ident="kgqa",
    )


def serve(app, *, host: str, port: int, threads: int | None = None) -> None:
    """Warm the engine in the background and serve until interrupted."""
    server = build_server(app, host=host, port=port, threads=threads)
    app.extensions["kgqa_runtime"].start_warm_up()
    click.echo(f"kgqa serving on http://{host}:{server.effective_port} (engine warming up; see /readyz)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _app_for(ctx: click.Context):
    """The app of ``flask --app app serve``, else one built from the ``kgqa`` group's settings."""
    from flask.cli import ScriptInfo

    info = ctx.find_object(ScriptInfo)
    if info is not None:
        return info.load_app()
    from app import create_app

    return create_app(command_settings(ctx))


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 exposes it.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", type=click.IntRange(1, 512), default=None, help="Worker threads [default: queue size + 8].")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, threads: int | None) -> None:
    """Serve the web page, the JSON API and the OpenAI-compatible endpoint."""
    serve(_app_for(ctx), host=host, port=port, threads=threads)
