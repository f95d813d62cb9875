"""The kgqa web service: a Q&A page, a JSON API and an OpenAI-compatible endpoint.

``create_app`` is the only way an app comes to life. Nothing is bound or loaded
at import time: the QA engine is built lazily and warmed once per process in a
background thread (started by ``kgqa serve`` or by the first request).
"""

from __future__ import annotations

from flask import Flask

from kgqa.assets import stay_offline
from kgqa.settings import Settings


def create_app(settings: Settings | None = None, *, engine=None) -> Flask:
    """Build the Flask app for ``settings``; ``engine`` injects a ready-made QA engine (tests, embedding)."""
    from app import api, errors, limits, openai_compat, responses_api, web
    from app.json_body import RequestJSONProvider, ServiceRequest
    from app.kb import RequestSessions
    from app.routing import ServiceFlask
    from app.runtime import EngineRuntime

    stay_offline()
    settings = settings or Settings()
    app = ServiceFlask(__name__)  # werkzeug's redirects with a relative Location
    app.request_class = ServiceRequest  # says why a JSON body was refused: 400 invalid_json
    app.json = RequestJSONProvider(app)  # bodies parsed as bounded I-JSON; responses keep field order
    app.config.update(
        KGQA_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SSE_KEEPALIVE_S=10.0,
    )
    app.extensions["kgqa_runtime"] = EngineRuntime(settings, engine=engine)
    app.extensions["kgqa_kb"] = RequestSessions(settings)
    app.extensions["kgqa_limits"] = limits.ServiceLimits(settings)

    app.register_blueprint(errors.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(openai_compat.bp)
    app.register_blueprint(responses_api.bp)
    app.register_blueprint(web.bp)

    limits.init_app(app)
    app.teardown_appcontext(RequestSessions.close_request_session)
    app.after_request(web.security_headers)

    from app.serve import serve_command

    app.cli.add_command(serve_command)
    return app
