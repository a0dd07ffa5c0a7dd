"""The coins blueprint: the reader's coins, freeze and unfreeze."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from broker.web.common import (
    ViewResult,
    login_required,
    portal_services,
    signed_in_reader,
)

__all__ = ["bp", "coins", "coins_freeze", "coins_unfreeze"]

bp = Blueprint("coins", __name__)


@bp.get("/coins")
@login_required
def coins() -> ViewResult:
    services = portal_services()
    reader_id = signed_in_reader()
    return render_template(
        "coins.html",
        coins=services.portal_coins(reader_id),
        balances=services.account_balances(reader_id),
        profile=services.reader_profile(reader_id),
    )


@bp.post("/coins/<ecoin_id>/freeze")
@login_required
def coins_freeze(ecoin_id: str) -> ViewResult:
    portal_services().freeze_coin(ecoin_id[:64], frozen=True, reader_id=signed_in_reader())
    flash(
        "Coin reported lost: every newspaper refuses it within a minute. "
        "What is left on it stays yours; unfreeze it if you find it again."
    )
    return redirect(url_for("coins.coins"))


@bp.post("/coins/<ecoin_id>/unfreeze")
@login_required
def coins_unfreeze(ecoin_id: str) -> ViewResult:
    portal_services().freeze_coin(ecoin_id[:64], frozen=False, reader_id=signed_in_reader())
    flash("Coin unfrozen: it pays again.")
    return redirect(url_for("coins.coins"))
