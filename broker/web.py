"""The broker's web portal (Flask): account, profile, instruments, coins, directory,
buying a server-side wallet (``/wallets/buy``), and the server-side wallet sign-in a
newspaper redirects readers to (``/wallet/signin``, contract in docs/protocol.md
"Server-side wallets").

The purchase form carries a random request id made when it is rendered and
remembered in the session (the last few); ``buy_coin`` is idempotent by request
id, so submitting the same form twice returns the same coin and charges once.

Views only translate: each reads a length-limited form, calls one
:class:`broker.services.BrokerServices` method in process (never the
broker's own gRPC) and renders the answer; a NetPayError becomes a friendly
HTML page with its HTTP status. The app is a plain WSGI app made by
:func:`create_app`, served in the broker process (``broker.server``) or by
any WSGI server.

Security: every POST carries a CSRF token bound to the session (compared
with ``secrets.compare_digest``; missing or wrong -> 400 before the view
runs). The session cookie is HttpOnly and SameSite=Lax (Lax, not Strict:
the reader arrives from a newspaper's page by a top-level link or redirect
and must find their broker session there), and Secure with the ``__Host-``
prefix when the portal is not on a loopback address. The cookie carries an
opaque portal-session token whose hash is stored by the broker, so logging
out ends the session for good. Passwords are never logged nor echoed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import (
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from broker.domain.personal import (
    MAX_EMAIL_CHARS,
    MAX_HOLDER_CHARS,
    MAX_INSTRUMENTS,
    MAX_PROFILE_NAME_CHARS,
    parse_card,
    parse_iban,
)
from broker.services import (
    MAX_PASSWORD_CHARS,
    MAX_RETURN_TO_CHARS,
    MIN_PASSWORD_CHARS,
    PORTAL_SESSION_TTL_S,
    BrokerServices,
    BuyCoinInput,
    PurchaseResult,
    SigninTarget,
    WalletKind,
    WalletSignin,
)
from netpay.encoding import check_currency
from netpay.errors import (
    Insufficient,
    InvalidArgument,
    NetPayError,
    PermissionDenied,
    Unauthenticated,
)
from netpay.money import Money
from netpay.spending import SpendingLimits
from netpay.v1 import statements_pb2 as pb
from netpay.webforms import CSRF_FIELD, check_csrf, csrf_token

__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "SECRET_FILE",
    "SECURE_COOKIE_NAME",
    "PortalDeps",
    "create_app",
]

log = logging.getLogger(__name__)

SECRET_FILE = "web-secret.key"
SECRET_BYTES = 32
# Distinct from any vendor's cookie: browsers do not separate cookies by port,
# and on loopback the broker and the newspapers share 127.0.0.1.
COOKIE_NAME = "netpay_broker_session"
SECURE_COOKIE_NAME = "__Host-netpay_broker_session"
MAX_REQUEST_BYTES = 16 * 1024
MAX_USERNAME_FIELD = 64
MAX_FIELD_CHARS = 256
_EXTENSION = "netpay_broker_portal"
_SESSION_KEY = "sid"
# The browser's wallet session (server-side wallet sign-in), independent of the login.
_WALLET_SESSION_KEY = "wsid"
CODE_PARAM = "netpay_code"
# Request ids of the wallet-purchase forms this session rendered (newest last, a few kept):
# a form's second submit reuses its id, and buy_coin answers it with the first coin.
_BUY_REQUESTS_KEY = "buy_rids"
_MAX_BUY_REQUESTS = 8
_BUY_REQUEST_ID_BYTES = 18  # 24 characters, within MAX_REQUEST_ID_CHARS
_MAX_NUMBER_CHARS = 12


def _csp(form_origin: str | None = None) -> str:
    # The wallet sign-in form redirects to the newspaper: form-action must allow it.
    form_action = f"'self' {form_origin}" if form_origin else "'self'"
    return (
        f"default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


F = TypeVar("F", bound=Callable[..., Any])
ViewResult = str | Response | WerkzeugResponse | tuple[str, int]


@dataclass(frozen=True)
class PortalDeps:
    """What the portal needs: the services, the session key, the cookie policy."""

    services: BrokerServices
    secret_key: bytes
    # True when the portal is reached over HTTPS (not on a loopback address):
    # the cookie is then Secure and named with the __Host- prefix.
    secure_cookies: bool


def _deps() -> PortalDeps:
    deps = current_app.extensions[_EXTENSION]
    assert isinstance(deps, PortalDeps)
    return deps


def _services() -> BrokerServices:
    return _deps().services


# -- forms, CSRF and the signed-in reader ------------------------------------------------


def _field(name: str, max_chars: int = MAX_FIELD_CHARS) -> str:
    value = request.form.get(name, "")
    if len(value) > max_chars:
        raise InvalidArgument(f"{name.replace('_', ' ')}: at most {max_chars} characters")
    return value


def _optional_amount(name: str, label: str) -> int | None:
    """An amount in minor units from the form, or None when left empty (no limit)."""
    raw = _field(name, _MAX_NUMBER_CHARS).strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise InvalidArgument(f"{label}: a whole number of cents, or empty for no limit")
    return int(raw)


def _positive_int(name: str, label: str, default: int | None = None) -> int:
    """A whole number >= 1 from the form (empty -> default); the ranges are buy_coin's."""
    raw = _field(name, _MAX_NUMBER_CHARS).strip()
    if not raw and default is not None:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise InvalidArgument(f"{label} must be a whole number of at least 1")
    return int(raw)


def _reader_id() -> str:
    reader_id = g.get("reader_id")
    assert isinstance(reader_id, str)
    return reader_id


def _login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("reader_id") is None:
            flash("Please log in first.")
            return redirect(url_for("login"))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def _start_session(token: str) -> None:
    """A fresh session (new CSRF token too): nothing from before the login survives."""
    session.clear()  # the CSRF token too: the next form gets a fresh one
    session[_SESSION_KEY] = token


def _error_page(err: NetPayError, template: str | None = None, **context: Any) -> Response:
    status = err.http_status
    headers: dict[str, str] = {}
    if isinstance(err, PermissionDenied) and err.retry_after_s is not None:
        status = 429
        headers["Retry-After"] = str(err.retry_after_s)
    if status >= 500:
        log.warning("portal: %s: %s", err.code, err.detail)
    body = render_template(
        template or "message.html",
        error=err.detail,
        title="Something went wrong" if template is None else None,
        **context,
    )
    return Response(body, status=status, headers=headers, mimetype="text/html")


# -- formatting ---------------------------------------------------------------------------


def _format_ms(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _format_money(amount_minor: int, currency: str) -> str:
    return str(Money(amount_minor, currency))


# -- the app ------------------------------------------------------------------------------


def create_app(deps: PortalDeps) -> Flask:
    """The portal as a WSGI app over in-process broker services."""
    here = Path(__file__).parent
    app = Flask(
        __name__,
        template_folder=str(here / "templates"),
        static_folder=str(here / "static"),
        static_url_path="/static",
    )
    app.config.update(
        SECRET_KEY=deps.secret_key,
        SESSION_COOKIE_NAME=SECURE_COOKIE_NAME if deps.secure_cookies else COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=deps.secure_cookies,
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        PERMANENT_SESSION_LIFETIME=PORTAL_SESSION_TTL_S,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
        MAX_FORM_PARTS=50,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions[_EXTENSION] = deps
    app.jinja_env.globals.update(
        csrf_token=csrf_token,
        csrf_field=CSRF_FIELD,
        format_ms=_format_ms,
        money=_format_money,
    )

    @app.before_request
    def _before() -> None:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            check_csrf()
        g.reader_id = None
        token = session.get(_SESSION_KEY)
        if isinstance(token, str):
            try:
                g.reader_id = _services().portal_reader(token)
            except Unauthenticated:
                session.pop(_SESSION_KEY, None)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = _csp(g.get("form_action_origin"))
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        body = render_template(
            "message.html", title=f"{status} {err.name}", error=err.description or err.name
        )
        return Response(body, status=status, mimetype="text/html")

    @app.errorhandler(NetPayError)
    def _netpay_error(err: NetPayError) -> Response:
        return _error_page(err)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("portal: unexpected error on %s %s", request.method, request.path)
        body = render_template(
            "message.html",
            title="500 Internal Server Error",
            error="Something broke on our side. Nothing was changed; please try again.",
        )
        return Response(body, status=500, mimetype="text/html")

    _add_routes(app)
    return app


def _add_routes(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/")
    def index() -> ViewResult:
        if g.reader_id is not None:
            return redirect(url_for("coins"))
        return render_template("index.html")

    # -- account ------------------------------------------------------------------------

    @app.route("/register", methods=["GET", "POST"])
    def register() -> ViewResult:
        if request.method == "GET":
            return render_template("register.html", min_password=MIN_PASSWORD_CHARS)
        username = request.form.get("username", "")[:MAX_USERNAME_FIELD]
        try:
            password = _field("password", MAX_PASSWORD_CHARS)
            if password != _field("password_again", MAX_PASSWORD_CHARS):
                raise InvalidArgument("the two passwords differ")
            opened = _services().portal_register(_field("username", MAX_USERNAME_FIELD), password)
        except NetPayError as err:
            return _error_page(
                err, "register.html", username=username, min_password=MIN_PASSWORD_CHARS
            )
        _start_session(opened.token)
        flash("Welcome! Your account is open.")
        return redirect(url_for("coins"))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> ViewResult:
        if request.method == "GET":
            return render_template("login.html")
        username = request.form.get("username", "")[:MAX_USERNAME_FIELD]
        try:
            opened = _services().portal_login(
                _field("username", MAX_USERNAME_FIELD), _field("password", MAX_PASSWORD_CHARS)
            )
        except NetPayError as err:
            return _error_page(err, "login.html", username=username)
        _start_session(opened.token)
        return redirect(url_for("coins"))

    @app.post("/logout")
    def logout() -> ViewResult:
        token = session.get(_SESSION_KEY)
        if isinstance(token, str):
            _services().portal_logout(token)
        wallet_token = session.get(_WALLET_SESSION_KEY)
        if isinstance(wallet_token, str):
            _services().wallet_session_end(wallet_token)
        session.clear()
        flash("You are logged out.")
        return redirect(url_for("login"))

    # -- profile ------------------------------------------------------------------------

    def _profile_page(error: NetPayError | None = None) -> ViewResult:
        profile = _services().reader_profile(_reader_id())
        context = {
            "profile": profile,
            "max_name": MAX_PROFILE_NAME_CHARS,
            "max_email": MAX_EMAIL_CHARS,
            "min_password": MIN_PASSWORD_CHARS,
            "limits": _services().spending_limits(_reader_id()),
        }
        if error is not None:
            return _error_page(error, "profile.html", **context)
        return render_template("profile.html", **context)

    @app.get("/profile")
    @_login_required
    def profile() -> ViewResult:
        return _profile_page()

    @app.post("/profile/limits")
    @_login_required
    def profile_limits() -> ViewResult:
        try:
            limits = SpendingLimits(
                check_currency(_field("currency", 3)),
                _optional_amount("max_click_minor", "Limit per click"),
                _optional_amount("max_day_minor", "Limit per day"),
            )
            _services().set_spending_limits(_reader_id(), limits)
        except NetPayError as err:
            return _profile_page(err)
        flash(f"Your spending limits in {limits.currency} are saved.")
        return redirect(url_for("profile"))

    @app.post("/profile")
    @_login_required
    def profile_update() -> ViewResult:
        try:
            _services().update_profile(
                _reader_id(),
                _field("display_name", MAX_PROFILE_NAME_CHARS),
                _field("email", MAX_EMAIL_CHARS),
            )
        except NetPayError as err:
            return _profile_page(err)
        flash("Your personal data is saved.")
        return redirect(url_for("profile"))

    @app.post("/profile/password")
    @_login_required
    def profile_password() -> ViewResult:
        try:
            new = _field("new_password", MAX_PASSWORD_CHARS)
            if new != _field("new_password_again", MAX_PASSWORD_CHARS):
                raise InvalidArgument("the two new passwords differ")
            _services().change_password(
                _reader_id(),
                _field("current_password", MAX_PASSWORD_CHARS),
                new,
                keep_session=session.get(_SESSION_KEY),
            )
        except NetPayError as err:
            return _profile_page(err)
        flash("Your password is changed. Other sessions and wallets must log in again.")
        return redirect(url_for("profile"))

    @app.post("/profile/erase")
    @_login_required
    def profile_erase() -> ViewResult:
        if request.form.get("confirm") != "yes":
            return _profile_page(InvalidArgument("tick the box to confirm the deletion"))
        _services().erase_personal_data(_reader_id())
        flash("Your personal data and payment instruments are deleted.")
        return redirect(url_for("profile"))

    # -- payment instruments ------------------------------------------------------------

    def _instruments_page(error: NetPayError | None = None) -> ViewResult:
        context = {
            "instruments": _services().list_instruments(_reader_id()),
            "max_instruments": MAX_INSTRUMENTS,
            "max_holder": MAX_HOLDER_CHARS,
        }
        if error is not None:
            return _error_page(error, "instruments.html", **context)
        return render_template("instruments.html", **context)

    @app.get("/instruments")
    @_login_required
    def instruments() -> ViewResult:
        return _instruments_page()

    @app.post("/instruments/card")
    @_login_required
    def instruments_add_card() -> ViewResult:
        services = _services()
        try:
            details = parse_card(
                _field("holder_name", MAX_HOLDER_CHARS),
                _field("card_number", 32),
                _field("exp_month", 8),
                _field("exp_year", 8),
                services.clock.now_ms(),
            )
            services.add_instrument(
                _reader_id(), details, make_default=request.form.get("make_default") == "yes"
            )
        except NetPayError as err:
            return _instruments_page(err)
        flash(f"Card ending {details.last4} added.")
        return redirect(url_for("instruments"))

    @app.post("/instruments/bank")
    @_login_required
    def instruments_add_bank() -> ViewResult:
        try:
            details = parse_iban(_field("holder_name", MAX_HOLDER_CHARS), _field("iban", 48))
            _services().add_instrument(
                _reader_id(), details, make_default=request.form.get("make_default") == "yes"
            )
        except NetPayError as err:
            return _instruments_page(err)
        flash(f"Bank account ending {details.last4} added.")
        return redirect(url_for("instruments"))

    @app.post("/instruments/<instrument_id>/default")
    @_login_required
    def instruments_default(instrument_id: str) -> ViewResult:
        try:
            _services().set_default_instrument(_reader_id(), instrument_id[:64])
        except NetPayError as err:
            return _instruments_page(err)
        flash("Default payment instrument changed.")
        return redirect(url_for("instruments"))

    @app.post("/instruments/<instrument_id>/remove")
    @_login_required
    def instruments_remove(instrument_id: str) -> ViewResult:
        try:
            _services().remove_instrument(_reader_id(), instrument_id[:64])
        except NetPayError as err:
            return _instruments_page(err)
        flash("Payment instrument removed.")
        return redirect(url_for("instruments"))

    # -- coins and the directory --------------------------------------------------------

    @app.get("/coins")
    @_login_required
    def coins() -> ViewResult:
        services = _services()
        reader_id = _reader_id()
        return render_template(
            "coins.html",
            coins=services.portal_coins(reader_id),
            balances=services.account_balances(reader_id),
            profile=services.reader_profile(reader_id),
        )

    @app.post("/coins/<ecoin_id>/freeze")
    @_login_required
    def coins_freeze(ecoin_id: str) -> ViewResult:
        _services().freeze_coin(ecoin_id[:64], frozen=True, reader_id=_reader_id())
        flash(
            "Coin reported lost: every newspaper refuses it within a minute. "
            "What is left on it stays yours; unfreeze it if you find it again."
        )
        return redirect(url_for("coins"))

    @app.post("/coins/<ecoin_id>/unfreeze")
    @_login_required
    def coins_unfreeze(ecoin_id: str) -> ViewResult:
        _services().freeze_coin(ecoin_id[:64], frozen=False, reader_id=_reader_id())
        flash("Coin unfrozen: it pays again.")
        return redirect(url_for("coins"))

    @app.get("/newspapers")
    def newspapers() -> ViewResult:
        return render_template("newspapers.html", vendors=_services().vendor_directory())

    # -- server-side wallet sign-in at a newspaper ------------------------------------------

    def _signin_target(values: Any) -> SigninTarget:
        vendor = str(values.get("vendor", ""))[:64]
        return_to = str(values.get("return_to", ""))[: MAX_RETURN_TO_CHARS + 1]
        target = _services().signin_target(vendor, return_to)
        g.form_action_origin = target.web_origin
        return target

    def _wallet_token() -> str | None:
        token = session.get(_WALLET_SESSION_KEY)
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
            session_coin = _services().wallet_session_coin(token)
        context = {"target": target, "session_coin": session_coin, "ecoin_id": ecoin_id}
        if error is not None:
            return _error_page(error, "wallet_signin.html", **context)
        return render_template("wallet_signin.html", **context)

    def _back_with_code(target: SigninTarget, signed: WalletSignin) -> WerkzeugResponse:
        parts = urlsplit(target.return_to)
        extra = urlencode({CODE_PARAM: signed.code})
        query = f"{parts.query}&{extra}" if parts.query else extra
        return redirect(urlunsplit(parts._replace(query=query)), code=303)

    @app.get("/wallet/signin")
    def wallet_signin() -> ViewResult:
        target = _signin_target(request.args)
        return _signin_page(target, other=request.args.get("other") == "1")

    @app.post("/wallet/signin")
    def wallet_signin_post() -> ViewResult:
        target = _signin_target(request.form)
        services = _services()
        if request.form.get("continue") == "yes":
            try:
                signed = services.wallet_continue(_wallet_token() or "", target.vendor_id)
            except Unauthenticated as err:
                session.pop(_WALLET_SESSION_KEY, None)
                return _signin_page(target, err)
            return _back_with_code(target, signed)
        ecoin_id = request.form.get("ecoin_id", "")[:64]
        try:
            signed = services.wallet_signin(
                _field("ecoin_id", 64), _field("password", MAX_PASSWORD_CHARS), target.vendor_id
            )
        except NetPayError as err:
            return _signin_page(target, err, ecoin_id=ecoin_id, other=True)
        previous = _wallet_token()
        if previous is not None:
            services.wallet_session_end(previous)
        session[_WALLET_SESSION_KEY] = signed.session_token
        return _back_with_code(target, signed)

    # -- buying a server-side wallet -------------------------------------------------------

    def _new_buy_request_id() -> str:
        request_id = secrets.token_urlsafe(_BUY_REQUEST_ID_BYTES)
        known = session.get(_BUY_REQUESTS_KEY)
        ids = [i for i in known if isinstance(i, str)] if isinstance(known, list) else []
        session[_BUY_REQUESTS_KEY] = [*ids, request_id][-_MAX_BUY_REQUESTS:]
        return request_id

    def _buy_page(error: NetPayError | None = None) -> ViewResult:
        services = _services()
        reader_id = _reader_id()
        default = next((i for i in services.list_instruments(reader_id) if i.is_default), None)
        form = request.form  # empty on GET; after an error the choices are kept
        context = {
            "request_id": _new_buy_request_id(),
            "currencies": services.currencies,
            "balances": services.account_balances(reader_id),
            "instrument": default,
            "units": str(form.get("units", ""))[:_MAX_NUMBER_CHARS],
            "unit_value": str(form.get("unit_value", "1"))[:_MAX_NUMBER_CHARS],
            "currency": str(form.get("currency", ""))[:8],
            "max_units": services.limits.max_chain_units,
            "max_unit_value": services.limits.max_click_amount_minor,
            "min_password": MIN_PASSWORD_CHARS,
            "max_password": MAX_PASSWORD_CHARS,
        }
        if error is None:
            return render_template("buy_wallet.html", **context)
        return _error_page(error, "buy_wallet.html", **context)

    def _insufficient(currency: str, units: int, unit_value: int) -> NetPayError:
        balance = _services().account_balances(_reader_id()).get(currency, 0)
        return Insufficient(
            f"Your demo bank balance ({_format_money(balance, currency)}) does not cover "
            f"this wallet ({_format_money(units * unit_value, currency)}). "
            "Nothing was bought and nothing was charged."
        )

    @app.get("/wallets/buy")
    @_login_required
    def buy_wallet() -> ViewResult:
        return _buy_page()

    @app.post("/wallets/buy")
    @_login_required
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
            units = _positive_int("units", "units")
            unit_value = _positive_int("unit_value", "unit value", default=1)
            currency = _field("currency", 8) or _services().currencies[0]
            password = _field("password", MAX_PASSWORD_CHARS)
            if password != _field("password_again", MAX_PASSWORD_CHARS):
                raise InvalidArgument("the two wallet passwords differ")
            bought = _services().buy_coin(
                _reader_id(),
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
