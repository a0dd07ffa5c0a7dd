"""The account blueprint: the start page, register, log in, log out (and /healthz)."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from broker.services import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from broker.web.common import (
    MAX_USERNAME_FIELD,
    SESSION_KEY,
    WALLET_SESSION_KEY,
    ViewResult,
    error_page,
    field,
    portal_services,
    start_session,
)
from netpay.errors import InvalidArgument, NetPayError

__all__ = ["bp", "healthz", "index", "login", "logout", "register"]

bp = Blueprint("accounts", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@bp.get("/")
def index() -> ViewResult:
    if g.reader_id is not None:
        return redirect(url_for("coins.coins"))
    return render_template("index.html")


# -- account ------------------------------------------------------------------------


@bp.route("/register", methods=["GET", "POST"])
def register() -> ViewResult:
    if request.method == "GET":
        return render_template("register.html", min_password=MIN_PASSWORD_CHARS)
    username = request.form.get("username", "")[:MAX_USERNAME_FIELD]
    try:
        password = field("password", MAX_PASSWORD_CHARS)
        if password != field("password_again", MAX_PASSWORD_CHARS):
            raise InvalidArgument("the two passwords differ")
        opened = portal_services().portal_register(field("username", MAX_USERNAME_FIELD), password)
    except NetPayError as err:
        return error_page(err, "register.html", username=username, min_password=MIN_PASSWORD_CHARS)
    start_session(opened.token)
    flash("Welcome! Your account is open.")
    return redirect(url_for("coins.coins"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> ViewResult:
    if request.method == "GET":
        return render_template("login.html")
    username = request.form.get("username", "")[:MAX_USERNAME_FIELD]
    try:
        opened = portal_services().portal_login(
            field("username", MAX_USERNAME_FIELD), field("password", MAX_PASSWORD_CHARS)
        )
    except NetPayError as err:
        return error_page(err, "login.html", username=username)
    start_session(opened.token)
    return redirect(url_for("coins.coins"))


@bp.post("/logout")
def logout() -> ViewResult:
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        portal_services().portal_logout(token)
    wallet_token = session.get(WALLET_SESSION_KEY)
    if isinstance(wallet_token, str):
        portal_services().wallet_session_end(wallet_token)
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("accounts.login"))
