"""Server-side wallets at the portal: buying one (``/wallets/buy``) and the wallet
sign-in a newspaper redirects readers to (``/wallet/signin``, contract in
docs/protocol.md "Server-side wallets").

The purchase form carries a random request id made when it is rendered and
remembered in the session (the last few); ``buy_coin`` is idempotent by request
id, so submitting the same form twice returns the same coin and charges once.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Blueprint, g, redirect, render_template, request, session
from werkzeug.wrappers import Response as WerkzeugResponse

from broker.services import (
    MAX_PASSWORD_CHARS,
    MAX_RETURN_TO_CHARS,
    MIN_PASSWORD_CHARS,
    BuyCoinInput,
    PurchaseResult,
    SigninTarget,
    WalletKind,
    WalletSignin,
)
from broker.web.common import (
    MAX_NUMBER_CHARS,
    WALLET_SESSION_KEY,
    ViewResult,
    error_page,
    field,
    format_money,
    login_required,
    portal_services,
    positive_int,
    signed_in_reader,
)
from netpay.errors import Insufficient, InvalidArgument, NetPayError, Unauthenticated
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "CODE_PARAM",
    "bp",
    "buy_wallet",
    "buy_wallet_post",
    "wallet_signin",
    "wallet_signin_post",
]

# The one-time code's query parameter on the way back to the newspaper.
CODE_PARAM = "netpay_code"
# Request ids of the wallet-purchase forms this session rendered (newest last, a few kept):
# a form's second submit reuses its id, and buy_coin answers it with the first coin.
_BUY_REQUESTS_KEY = "buy_rids"
_MAX_BUY_REQUESTS = 8
_BUY_REQUEST_ID_BYTES = 18  # 24 characters, within MAX_REQUEST_ID_CHARS

bp = Blueprint("wallets", __name__)


# -- server-side wallet sign-in at a newspaper ------------------------------------------


def _signin_target(values: Any) -> SigninTarget:
    vendor = str(values.get("vendor", ""))[:64]
    return_to = str(values.get("return_to", ""))[: MAX_RETURN_TO_CHARS + 1]
    target = portal_services().signin_target(vendor, return_to)
    g.form_action_origin = target.web_origin
    return target


def _wallet_token() -> str | None:
    token = session.get(WALLET_SESSION_KEY)
    return token if isinstance(token, str) else None


def _signin_page(
    target: SigninTarget,
    error: NetPayError | None = None,
    *,
    ecoin_id: str = "",
    other: bool = False,
) -> ViewResult:
    token = _wallet_token()
    session_coin = None
    if token is not None and not other:
        session_coin = portal_services().wallet_session_coin(token)
    context = {"target": target, "session_coin": session_coin, "ecoin_id": ecoin_id}
    if error is not None:
        return error_page(error, "wallet_signin.html", **context)
    return render_template("wallet_signin.html", **context)


def _back_with_code(target: SigninTarget, signed: WalletSignin) -> WerkzeugResponse:
    parts = urlsplit(target.return_to)
    extra = urlencode({CODE_PARAM: signed.code})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return redirect(urlunsplit(parts._replace(query=query)), code=303)


@bp.get("/wallet/signin")
def wallet_signin() -> ViewResult:
    target = _signin_target(request.args)
    return _signin_page(target, other=request.args.get("other") == "1")


@bp.post("/wallet/signin")
def wallet_signin_post() -> ViewResult:
    target = _signin_target(request.form)
    services = portal_services()
    if request.form.get("continue") == "yes":
        try:
            signed = services.wallet_continue(_wallet_token() or "", target.vendor_id)
        except Unauthenticated as err:
            session.pop(WALLET_SESSION_KEY, None)
            return _signin_page(target, err)
        return _back_with_code(target, signed)
    ecoin_id = request.form.get("ecoin_id", "")[:64]
    try:
        signed = services.wallet_signin(
            field("ecoin_id", 64), field("password", MAX_PASSWORD_CHARS), target.vendor_id
        )
    except NetPayError as err:
        return _signin_page(target, err, ecoin_id=ecoin_id, other=True)
    previous = _wallet_token()
    if previous is not None:
        services.wallet_session_end(previous)
    session[WALLET_SESSION_KEY] = signed.session_token
    return _back_with_code(target, signed)


# -- buying a server-side wallet -------------------------------------------------------


def _new_buy_request_id() -> str:
    request_id = secrets.token_urlsafe(_BUY_REQUEST_ID_BYTES)
    known = session.get(_BUY_REQUESTS_KEY)
    ids = [i for i in known if isinstance(i, str)] if isinstance(known, list) else []
    session[_BUY_REQUESTS_KEY] = [*ids, request_id][-_MAX_BUY_REQUESTS:]
    return request_id


def _buy_page(error: NetPayError | None = None) -> ViewResult:
    services = portal_services()
    reader_id = signed_in_reader()
    default = next((i for i in services.list_instruments(reader_id) if i.is_default), None)
    form = request.form  # empty on GET; after an error the choices are kept
    context = {
        "request_id": _new_buy_request_id(),
        "currencies": services.currencies,
        "balances": services.account_balances(reader_id),
        "instrument": default,
        "units": str(form.get("units", ""))[:MAX_NUMBER_CHARS],
        "unit_value": str(form.get("unit_value", "1"))[:MAX_NUMBER_CHARS],
        "currency": str(form.get("currency", ""))[:8],
        "max_units": services.limits.max_chain_units,
        "max_unit_value": services.limits.max_click_amount_minor,
        "min_password": MIN_PASSWORD_CHARS,
        "max_password": MAX_PASSWORD_CHARS,
    }
    if error is None:
        return render_template("buy_wallet.html", **context)
    return error_page(error, "buy_wallet.html", **context)


def _insufficient(currency: str, units: int, unit_value: int) -> NetPayError:
    balance = portal_services().account_balances(signed_in_reader()).get(currency, 0)
    return Insufficient(
        f"Your demo bank balance ({format_money(balance, currency)}) does not cover "
        f"this wallet ({format_money(units * unit_value, currency)}). "
        "Nothing was bought and nothing was charged."
    )


@bp.get("/wallets/buy")
@login_required
def buy_wallet() -> ViewResult:
    return _buy_page()


@bp.post("/wallets/buy")
@login_required
def buy_wallet_post() -> ViewResult:
    request_id = request.form.get("request_id", "")
    known = session.get(_BUY_REQUESTS_KEY)
    if not isinstance(known, list) or request_id not in known:
        return _buy_page(
            InvalidArgument("This form expired. Nothing was bought; please fill it in again.")
        )
    currency = ""
    units = unit_value = 0
    try:
        units = positive_int("units", "units")
        unit_value = positive_int("unit_value", "unit value", default=1)
        currency = field("currency", 8) or portal_services().currencies[0]
        password = field("password", MAX_PASSWORD_CHARS)
        if password != field("password_again", MAX_PASSWORD_CHARS):
            raise InvalidArgument("the two wallet passwords differ")
        bought = portal_services().buy_coin(
            signed_in_reader(),
            BuyCoinInput(
                request_id=request_id,
                ecoin_id="",
                root=b"",
                n=units,
                unit_value_minor=unit_value,
                currency=currency,
                wallet_kind=WalletKind.SERVER_SIDE,
                wallet_password=password,
            ),
        )
    except Insufficient:
        return _buy_page(_insufficient(currency, units, unit_value))
    except NetPayError as err:
        return _buy_page(err)
    return _bought_page(bought)


def _bought_page(bought: PurchaseResult) -> ViewResult:
    # The touchstone was signed by this broker a moment ago (or is the replayed one).
    touchstone = pb.Touchstone.FromString(bought.touchstone.payload)
    return render_template(
        "wallet_bought.html",
        ecoin_id=bought.ecoin_id,
        amount_minor=bought.amount_minor,
        currency=bought.currency,
        n=touchstone.n,
        unit_value_minor=touchstone.unit_value_minor,
        expires_at_ms=touchstone.expires_at_ms,
    )
