"""The newspaper site's app factory: :func:`create_app` wires the blueprints
(site, windows, wallet, dashboard, api), the dashboard's session, the
templates' filters and the response hardening."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Flask, Response

from netpay.money import Money
from vendor.dashboard import LoginLimiter, read_secret_key
from vendor.web import api, dashboard, site, wallet, windows
from vendor.web.common import (
    DASHBOARD_SESSION,
    EXTENSION,
    LazyDeps,
    Site,
    WebDeps,
    format_money,
)

__all__ = ["create_app"]

_SESSION_LIFETIME = timedelta(hours=8)
# Templates and static files stay in vendor/ (templates/, static/).
_ROOT = Path(__file__).resolve().parent.parent


def _amount_in(amount_minor: int, currency: str) -> str:
    return format_money(Money(amount_minor, currency))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(ecoin_id: str) -> str:
    return f"{ecoin_id[:8]}…{ecoin_id[-4:]}" if len(ecoin_id) > 12 else ecoin_id


def _hardening(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


def create_app(deps: WebDeps | Callable[[], WebDeps], *, data_dir: Path | None = None) -> Flask:
    """The newspaper site; ``deps`` may be a factory called on first request.

    ``data_dir`` (the vendor's) enables the dashboard: it holds the web secret
    key (made by the main process) and the operator password hash.
    """
    app = Flask("vendor.web", root_path=str(_ROOT))
    app.extensions[EXTENSION] = Site(LazyDeps(deps), data_dir, LoginLimiter())
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = dashboard.DashboardSessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE=DASHBOARD_SESSION.samesite,
        SESSION_COOKIE_PATH=DASHBOARD_SESSION.path,
        PERMANENT_SESSION_LIFETIME=_SESSION_LIFETIME,
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_MEMORY_SIZE=16 * 1024,
        MAX_FORM_PARTS=16,
    )
    if data_dir is not None:
        app.secret_key = read_secret_key(data_dir)
        app.config["SESSION_COOKIE_NAME"] = dashboard.cookie_name(app.secret_key)
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.filters["amount_in"] = _amount_in
    app.jinja_env.filters["when"] = _when
    app.jinja_env.filters["short"] = _short
    app.after_request(_hardening)
    for blueprint in (api.bp, site.bp, windows.bp, wallet.bp, dashboard.bp):
        app.register_blueprint(blueprint)
    return app
