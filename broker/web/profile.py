"""The profile blueprint: personal data, spending limits, password, erasure."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from broker.domain.personal import MAX_EMAIL_CHARS, MAX_PROFILE_NAME_CHARS
from broker.services import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from broker.web.common import (
    SESSION_KEY,
    ViewResult,
    error_page,
    field,
    login_required,
    optional_amount,
    portal_services,
    signed_in_reader,
)
from netpay.encoding import check_currency
from netpay.errors import InvalidArgument, NetPayError
from netpay.spending import SpendingLimits

__all__ = ["bp", "profile", "profile_erase", "profile_limits", "profile_password", "profile_update"]

bp = Blueprint("profile", __name__)


def _profile_page(error: NetPayError | None = None) -> ViewResult:
    profile = portal_services().reader_profile(signed_in_reader())
    context = {
        "profile": profile,
        "max_name": MAX_PROFILE_NAME_CHARS,
        "max_email": MAX_EMAIL_CHARS,
        "min_password": MIN_PASSWORD_CHARS,
        "limits": portal_services().spending_limits(signed_in_reader()),
    }
    if error is not None:
        return error_page(error, "profile.html", **context)
    return render_template("profile.html", **context)


@bp.get("/profile")
@login_required
def profile() -> ViewResult:
    return _profile_page()


@bp.post("/profile/limits")
@login_required
def profile_limits() -> ViewResult:
    try:
        limits = SpendingLimits(
            check_currency(field("currency", 3)),
            optional_amount("max_click_minor", "Limit per click"),
            optional_amount("max_day_minor", "Limit per day"),
        )
        portal_services().set_spending_limits(signed_in_reader(), limits)
    except NetPayError as err:
        return _profile_page(err)
    flash(f"Your spending limits in {limits.currency} are saved.")
    return redirect(url_for("profile.profile"))


@bp.post("/profile")
@login_required
def profile_update() -> ViewResult:
    try:
        portal_services().update_profile(
            signed_in_reader(),
            field("display_name", MAX_PROFILE_NAME_CHARS),
            field("email", MAX_EMAIL_CHARS),
        )
    except NetPayError as err:
        return _profile_page(err)
    flash("Your personal data is saved.")
    return redirect(url_for("profile.profile"))


@bp.post("/profile/password")
@login_required
def profile_password() -> ViewResult:
    try:
        new = field("new_password", MAX_PASSWORD_CHARS)
        if new != field("new_password_again", MAX_PASSWORD_CHARS):
            raise InvalidArgument("the two new passwords differ")
        portal_services().change_password(
            signed_in_reader(),
            field("current_password", MAX_PASSWORD_CHARS),
            new,
            keep_session=session.get(SESSION_KEY),
        )
    except NetPayError as err:
        return _profile_page(err)
    flash("Your password is changed. Other sessions and wallets must log in again.")
    return redirect(url_for("profile.profile"))


@bp.post("/profile/erase")
@login_required
def profile_erase() -> ViewResult:
    if request.form.get("confirm") != "yes":
        return _profile_page(InvalidArgument("tick the box to confirm the deletion"))
    portal_services().erase_personal_data(signed_in_reader())
    flash("Your personal data and payment instruments are deleted.")
    return redirect(url_for("profile.profile"))
