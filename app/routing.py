"""The service's Flask class: werkzeug's own redirects point at a path on this server, never at the Host header.

werkzeug answers a path with doubled slashes (``//healthz``) or without a rule's trailing
slash with a 308 whose ``Location`` is absolute, its host taken from the request's Host
header: a forged Host makes the service redirect to any site. ``ServiceFlask`` sends the
same redirect with a relative ``Location`` (the path and query alone, never starting with
``//`` or ``/\\``, which a browser would read as another host).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from flask import Flask
from werkzeug.routing import RequestRedirect


def relative_location(url: str) -> str:
    """The path and query of ``url``, as a Location that can only name this server."""
    parts = urlsplit(url)
    return urlunsplit(("", "", "/" + parts.path.lstrip("/\\"), parts.query, ""))


class ServiceFlask(Flask):
    def raise_routing_exception(self, request):
        """A routing redirect with a relative Location; every other routing failure as Flask raises it."""
        redirect = request.routing_exception
        if isinstance(redirect, RequestRedirect):
            relative = RequestRedirect(relative_location(redirect.new_url))
            relative.code = redirect.code
            raise relative from None
        super().raise_routing_exception(request)
