"""Reading request bodies as JSON: UTF-8 I-JSON (RFC 7493), nested at most ``MAX_JSON_DEPTH`` deep.

The app's JSON provider parses every request body through ``load_request_json``,
so ``request.get_json()`` can neither recurse without bound (the standard parser
raises ``RecursionError`` near a thousand nested arrays) nor hand a view a string
no text encoder accepts. Refused, each with a one-line reason: bytes that are not
UTF-8, nesting deeper than ``MAX_JSON_DEPTH`` (counted before parsing), unpaired
surrogate escapes such as ``"\\ud800"``, ``NaN``/``Infinity``, and numbers out of
range: a float beyond a double, an integer beyond 64 bits (I-JSON's own bound is
2**53; 64 bits lets OpenAI clients' seeds through). The request class turns any
such failure into a 400 ``invalid_json`` with the reason as its message.
"""

from __future__ import annotations

import itertools
import json
import math
import re

from flask import Request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest

# No request of the API nests deeper than a handful of levels (an OpenAI tool schema, a dozen);
# the cap leaves room for those and stops a pathological body long before the parser's recursion limit.
MAX_JSON_DEPTH = 64

_STRUCTURAL = re.compile(r'[\[\]{}"\\]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class InvalidJSON(BadRequest):
    """A request body that is not the JSON this service reads."""

    error_code = "invalid_json"


def check_nesting(text: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """``ValueError`` when ``text`` nests arrays/objects deeper than ``max_depth`` (brackets in strings don't count)."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper than its number of opening brackets
    depth, in_string, escaped_at = 0, False, -1
    for match in _STRUCTURAL.finditer(text):
        at = match.start()
        if at == escaped_at:
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise ValueError(f"arrays and objects nest more than {max_depth} levels deep")
        elif char in "]}":
            depth -= 1


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _out_of_range(literal: str) -> ValueError:
    return ValueError(f"the number {literal[:24]}{'...' if len(literal) > 24 else ''} is out of range")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _out_of_range(literal)
    return value


def _int64(literal: str) -> int:
    """Integers a typed client can send (signed 64-bit); longer literals are refused before conversion."""
    value = int(literal) if len(literal) <= 20 else None
    if value is None or not -(2**63) <= value < 2**63:
        raise _out_of_range(literal)
    return value


def _lone_surrogate(value) -> str | None:
    """The first unpaired surrogate in any string (key or value) of ``value``, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return value[exc.start]
        return None
    if isinstance(value, dict):
        children = itertools.chain(value.keys(), value.values())
    elif isinstance(value, list):
        children = iter(value)
    else:
        return None
    return next((found for child in children if (found := _lone_surrogate(child)) is not None), None)


def load_request_json(data: bytes | str, max_depth: int = MAX_JSON_DEPTH):
    """The JSON value of a request body, or ``ValueError`` saying in one line why it is refused."""
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data  # RFC 8259: UTF-8 only
    check_nesting(text, max_depth)
    value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int64)
    if _SURROGATE_ESCAPE.search(text):  # the only way a decoded UTF-8 body can hold a surrogate
        surrogate = _lone_surrogate(value)
        if surrogate is not None:
            raise ValueError(f"a string holds an unpaired surrogate escape (\\u{ord(surrogate):04x})")
    return value


class RequestJSONProvider(DefaultJSONProvider):
    """Flask's provider, reading bodies with ``load_request_json``; responses keep the records' field order."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs):
        return load_request_json(s)


class ServiceRequest(Request):
    """Flask's request, saying why a JSON body was refused (Flask hides the reason outside debug mode)."""

    def on_json_loading_failed(self, e: ValueError | None):
        if e is None:
            return super().on_json_loading_failed(e)  # not application/json: 415
        raise InvalidJSON(f"the body is not valid JSON: {e}") from e
