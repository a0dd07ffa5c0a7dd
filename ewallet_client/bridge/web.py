"""The bridge's Flask app: who may ask, three small views, errors mapped in one place.

Who may ask (every rule refuses before anything moves): the ``Host`` header
must be one the bridge answers to (:func:`_check_host`); a page's ``Origin``
must be approved (:func:`_require_origin`); a POST body must be a small
``application/json`` object (:func:`_json_body`). CORS headers go to
approved origins only (:func:`_headers`). NetPay errors, HTTP errors and
anything else become the ``{"error", "detail"}`` answer in
:func:`_register_errors`, nowhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import cast

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from ewallet_client.bridge.rules import (
    MAX_BODY_BYTES,
    MAX_ORIGIN_CHARS,
    ORIGIN_HEADER_RE,
    normalize_origin,
)
from ewallet_client.bridge.service import BridgeApi
from netpay.errors import InvalidArgument, NetPayError, PermissionDenied

__all__ = ["create_app"]

log = logging.getLogger("ewallet_client.bridge")
_JSON = "application/json"
_BRIDGE = "netpay_bridge"  # app.extensions: the BridgeApi behind the views
_HOSTS = "netpay_bridge_hosts"  # app.extensions: the Host values it answers to


def create_app(bridge: BridgeApi, *, allowed_hosts: Iterable[str]) -> Flask:
    """The bridge's Flask app; ``allowed_hosts`` are the Host values it answers to."""
    app = Flask("netpay_bridge")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions[_BRIDGE] = bridge
    app.extensions[_HOSTS] = frozenset(h.lower() for h in allowed_hosts)
    app.before_request(_check_host)
    app.after_request(_headers)
    _register_errors(app)
    app.register_blueprint(_views())
    return app


def _bridge() -> BridgeApi:
    return cast(BridgeApi, current_app.extensions[_BRIDGE])


def _json(status: int, obj: dict[str, object]) -> Response:
    return Response(json.dumps(obj, sort_keys=True), status=status, mimetype=_JSON)


def _error(err: NetPayError, status: int | None = None) -> Response:
    return _json(status or err.http_status, {"error": err.code, "detail": err.detail[:500]})


# -- errors: mapped here only --------------------------------------------------


def _register_errors(app: Flask) -> None:
    app.register_error_handler(NetPayError, _netpay_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal)


def _netpay_error(err: NetPayError) -> Response:
    return _error(err)


def _http_error(err: HTTPException) -> Response:
    code = err.code or 500
    name = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        code, "invalid_argument"
    )
    return _json(code, {"error": name, "detail": err.description or name})


def _internal(err: Exception) -> Response:
    log.exception("bridge request failed")
    return _json(500, {"error": "internal", "detail": "internal error"})


# -- who may ask ---------------------------------------------------------------


def _check_host() -> Response | None:
    g.host_ok = request.host.lower() in current_app.extensions[_HOSTS]
    if not g.host_ok:
        return _error(PermissionDenied("wrong Host header: ask the bridge by its IP address"))
    return None


def _headers(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.vary.add("Origin")
    if g.get("host_ok"):
        origin = _caller_origin()
        if origin is not None:
            # Echo the browser's own spelling: it compares byte for byte.
            resp.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
    return resp


def _caller_origin() -> str | None:
    """The request's approved, normalised origin (or None): computed once."""
    if "origin" not in g:
        raw = request.headers.get("Origin", "")
        origin: str | None = None
        if raw and len(raw) <= MAX_ORIGIN_CHARS and ORIGIN_HEADER_RE.fullmatch(raw):
            try:
                candidate = normalize_origin(raw)
            except InvalidArgument:
                candidate = None
            if candidate is not None and _bridge().approved(candidate) is not None:
                origin = candidate
        g.origin = origin
    result: str | None = g.origin
    return result


def _require_origin() -> str:
    origin = _caller_origin()
    if origin is None:
        if not request.headers.get("Origin"):
            raise PermissionDenied("no Origin header: only approved web pages may ask")
        raise PermissionDenied(
            "this site is not approved: the reader runs "
            "`netpay wallet approve-origin <site>` to allow it"
        )
    return origin


def _preflight(methods: str) -> Response:
    _require_origin()
    resp = Response(status=204)
    resp.headers["Access-Control-Allow-Methods"] = methods
    resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
    resp.headers["Access-Control-Max-Age"] = "600"
    resp.headers["Access-Control-Allow-Private-Network"] = "true"
    return resp


def _json_body() -> dict[str, object] | Response:
    """The request's JSON object, or the error answer to send."""
    if request.mimetype != _JSON:
        return _error(InvalidArgument("Content-Type must be application/json"), 415)
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return _error(InvalidArgument(f"body larger than {MAX_BODY_BYTES} bytes"), 413)
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        return _error(InvalidArgument(f"body larger than {MAX_BODY_BYTES} bytes"), 413)
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidArgument("the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise InvalidArgument('the body must be {"url": "<absolute article URL>", ...}')
    return body


# -- the views -----------------------------------------------------------------


def _views() -> Blueprint:
    bp = Blueprint("bridge", __name__)
    # Each view answers its own OPTIONS (the CORS preflight): no automatic one.
    bp.add_url_rule(
        "/v1/authorize",
        "authorize",
        _authorize,
        methods=["POST", "OPTIONS"],
        provide_automatic_options=False,
    )
    bp.add_url_rule(
        "/v1/window",
        "window",
        _window,
        methods=["POST", "OPTIONS"],
        provide_automatic_options=False,
    )
    bp.add_url_rule(
        "/v1/status", "status", _status, methods=["GET", "OPTIONS"], provide_automatic_options=False
    )
    return bp


def _authorize() -> Response:
    if request.method == "OPTIONS":
        return _preflight("POST")
    origin = _require_origin()
    body = _json_body()
    if isinstance(body, Response):
        return body
    return _json(200, _bridge().authorize(origin, str(body["url"])))


def _window() -> Response:
    if request.method == "OPTIONS":
        return _preflight("POST")
    origin = _require_origin()
    body = _json_body()
    if isinstance(body, Response):
        return body
    units = body.get("units")
    if not isinstance(units, int) or isinstance(units, bool):
        raise InvalidArgument('the body must be {"url": "<site URL>", "units": <words>}')
    return _json(200, _bridge().window(origin, str(body["url"]), units))


def _status() -> Response:
    if request.method == "OPTIONS":
        return _preflight("GET")
    raw = request.headers.get("Origin", "")
    if not raw:
        raise PermissionDenied("no Origin header: only web pages may ask")
    origin = _caller_origin()
    if origin is None:
        return _json(200, {"approved": False})
    return _json(200, _bridge().status(origin))
