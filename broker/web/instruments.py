"""The payment-instruments blueprint: demo cards and bank accounts."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from broker.domain.personal import MAX_HOLDER_CHARS, MAX_INSTRUMENTS, parse_card, parse_iban
from broker.web.common import (
    ViewResult,
    error_page,
    field,
    login_required,
    portal_services,
    signed_in_reader,
)
from netpay.errors import NetPayError

__all__ = [
    "bp",
    "instruments",
    "instruments_add_bank",
    "instruments_add_card",
    "instruments_default",
    "instruments_remove",
]

bp = Blueprint("instruments", __name__)


def _instruments_page(error: NetPayError | None = None) -> ViewResult:
    context = {
        "instruments": portal_services().list_instruments(signed_in_reader()),
        "max_instruments": MAX_INSTRUMENTS,
        "max_holder": MAX_HOLDER_CHARS,
    }
    if error is not None:
        return error_page(error, "instruments.html", **context)
    return render_template("instruments.html", **context)


@bp.get("/instruments")
@login_required
def instruments() -> ViewResult:
    return _instruments_page()


@bp.post("/instruments/card")
@login_required
def instruments_add_card() -> ViewResult:
    services = portal_services()
    try:
        details = parse_card(
            field("holder_name", MAX_HOLDER_CHARS),
            field("card_number", 32),
            field("exp_month", 8),
            field("exp_year", 8),
            services.clock.now_ms(),
        )
        services.add_instrument(
            signed_in_reader(), details, make_default=request.form.get("make_default") == "yes"
        )
    except NetPayError as err:
        return _instruments_page(err)
    flash(f"Card ending {details.last4} added.")
    return redirect(url_for("instruments.instruments"))


@bp.post("/instruments/bank")
@login_required
def instruments_add_bank() -> ViewResult:
    try:
        details = parse_iban(field("holder_name", MAX_HOLDER_CHARS), field("iban", 48))
        portal_services().add_instrument(
            signed_in_reader(), details, make_default=request.form.get("make_default") == "yes"
        )
    except NetPayError as err:
        return _instruments_page(err)
    flash(f"Bank account ending {details.last4} added.")
    return redirect(url_for("instruments.instruments"))


@bp.post("/instruments/<instrument_id>/default")
@login_required
def instruments_default(instrument_id: str) -> ViewResult:
    try:
        portal_services().set_default_instrument(signed_in_reader(), instrument_id[:64])
    except NetPayError as err:
        return _instruments_page(err)
    flash("Default payment instrument changed.")
    return redirect(url_for("instruments.instruments"))


@bp.post("/instruments/<instrument_id>/remove")
@login_required
def instruments_remove(instrument_id: str) -> ViewResult:
    try:
        portal_services().remove_instrument(signed_in_reader(), instrument_id[:64])
    except NetPayError as err:
        return _instruments_page(err)
    flash("Payment instrument removed.")
    return redirect(url_for("instruments.instruments"))
