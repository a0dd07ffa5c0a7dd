"""The site's machine-facing routes: ``/healthz``, ``/api/articles`` (the
articles and their prices, as JSON) and ``/netpay/bridge.js`` (the wallet
bridge's browser library, which the 402 page's pay button loads)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, url_for

from netpay.browser import BRIDGE_SCRIPT_PATH
from vendor.web.common import deps

__all__ = ["api_articles", "bp", "healthz", "netpay_bridge_script"]

bp = Blueprint("api", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    d = deps()
    return jsonify(status="ok", vendor_id=d.services.vendor_id)


@bp.get("/netpay/bridge.js")
def netpay_bridge_script() -> Response:
    resp = Response(BRIDGE_SCRIPT_PATH.read_bytes(), mimetype="text/javascript")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/api/articles")
def api_articles() -> Response:
    d = deps()
    return jsonify(
        [
            {
                "id": a.article_id,
                "title": d.newspaper.headline(a),
                "amount": a.amount_minor,
                "currency": a.currency,
                "url": url_for("site.article", article_id=a.article_id, _external=True),
            }
            for a in d.newspaper.articles
        ]
    )
