"""The directory blueprint: the participating newspapers."""

from __future__ import annotations

from flask import Blueprint, render_template

from broker.web.common import (
    ViewResult,
    portal_services,
)

__all__ = ["bp", "newspapers"]

bp = Blueprint("directory", __name__)


@bp.get("/newspapers")
def newspapers() -> ViewResult:
    return render_template("newspapers.html", vendors=portal_services().vendor_directory())
