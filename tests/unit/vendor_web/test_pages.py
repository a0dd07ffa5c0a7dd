"""Every payment error's HTML page and unchanged JSON body, through Flask's
test client with a fake VendorServices whose ``pay`` raises the error; and
the pieces of the dashboard login (password file, limiter, hosts, money)."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netpay.clock import FakeClock
from netpay.encoding import b64url_encode, is_loopback_host
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    BrokerUnavailable,
    CoinBusy,
    Expired,
    Insufficient,
    InvalidArgument,
    LimitExceeded,
    Malformed,
    NetPayError,
    PermissionDenied,
    Revoked,
    WrongAmount,
    WrongCurrency,
)
from netpay.header import parse_challenge
from netpay.money import Money
from vendor.articles import load_newspaper
from vendor.dashboard import (
    PASSWORD_FILE,
    SECRET_FILE,
    LoginLimiter,
    ensure_secret_key,
    load_password_hash,
    read_password_file,
    read_secret_key,
    set_dashboard_password,
    verify_password,
)
from vendor.web import WebDeps, create_app, format_money

HTML = {"Accept": "text/html", "Authorization": 'NetPay ecoin="00"'}
JSON = {"Accept": "application/json", "Authorization": 'NetPay ecoin="00"'}
SEEN = bytes(range(32))


@dataclass
class FakeServices:
    """The two names the pages read and a ``pay`` that raises what it is told."""

    error: NetPayError | None = None
    vendor_id: str = "daily-hash"
    broker_id: str = "broker"
    calls: list[str] = field(default_factory=list)

    def pay(self, header: str, item: object, now_ms: int) -> object:
        self.calls.append(header)
        assert self.error is not None
        raise self.error


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def client(services: FakeServices):
    paper = load_newspaper("The Daily Hash")
    app = create_app(WebDeps(services=services, newspaper=paper, clock=FakeClock()))  # type: ignore[arg-type]
    return app.test_client()


# code, error, status, the page's title, a phrase of what to do
CASES = [
    (
        "malformed",
        Malformed("bad header"),
        400,
        "Your wallet sent a payment we could not read",
        "Nothing was charged",
    ),
    (
        "bad_payword",
        BadPayword("payword does not verify"),
        402,
        "The payment did not check out",
        "resynchronise",
    ),
    (
        "wrong_amount",
        WrongAmount("3 words", index=4, seen=SEEN),
        402,
        "The payment was for the wrong amount",
        "retry with the right price",
    ),
    (
        "wrong_currency",
        WrongCurrency("USD vs EUR"),
        402,
        "Your coin is in another currency",
        "coin in EUR",
    ),
    ("expired", Expired("the coin has expired"), 402, "Your coin has expired", "Buy a new coin"),
    ("revoked", Revoked("reported lost"), 402, "This coin has been frozen", "contact your broker"),
    (
        "insufficient",
        Insufficient("2 words left"),
        402,
        "Not enough credit left on your coin",
        "Buy a new coin",
    ),
    (
        "limit_exceeded",
        LimitExceeded("too many unreported"),
        402,
        "This payment is over a limit",
        "your wallet will retry",
    ),
    (
        "already_spent",
        AlreadySpent("spent", index=9, seen=SEEN),
        409,
        "These words of your coin were already spent",
        "pay with the next words",
    ),
    (
        "coin_busy",
        CoinBusy("handing off", retry_after_s=3),
        409,
        "Your coin is moving between newspapers",
        "retry in 3 seconds",
    ),
    (
        "broker_unavailable",
        BrokerUnavailable("down"),
        503,
        "We cannot reach the payment broker right now",
        "try again in a minute",
    ),
]


@pytest.mark.parametrize(
    ("code", "error", "status", "title", "todo"), CASES, ids=[c[0] for c in CASES]
)
def test_every_payment_error_has_a_page_and_the_protocol_json(
    client, services: FakeServices, code, error, status, title, todo
) -> None:
    services.error = error
    page = client.get("/articles/7", headers=HTML)  # 10 cents
    assert page.status_code == status
    assert page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert f"<h2>{title}</h2>" in text
    assert "What you can do:" in text and todo in text
    assert '<span class="price" title="0.10 EUR">€0.10</span>' in text
    assert f"<code>{code}</code>" in text
    if error.index is not None:
        assert f"your coin stands at index {error.index} here" in text

    api = client.get("/articles/7", headers=JSON)
    assert api.status_code == status
    expected: dict[str, object] = {"error": code, "detail": error.detail}
    if error.index is not None:
        # 1.1: the index and seen = SHA-256("NP1-seen" || w[index]), never the word.
        expected |= {"index": error.index, "seen": b64url_encode(SEEN)}
    assert api.get_json() == expected
    assert list(api.get_json()) == list(expected)  # and in the protocol's order

    for resp in (page, api):
        challenge = parse_challenge(resp.headers["WWW-Authenticate"])
        assert (challenge.realm, challenge.amount_minor, challenge.currency) == (
            "daily-hash",
            10,
            "EUR",
        )
        assert resp.headers["Cache-Control"] == "private, no-store"
        if code == "coin_busy":
            assert resp.headers["Retry-After"] == "3"
        else:
            assert "Retry-After" not in resp.headers
    assert len(services.calls) == 2


def test_payment_required_page(client) -> None:
    page = client.get("/articles/12", headers={"Accept": "text/html"})
    assert page.status_code == 402
    text = page.get_data(as_text=True)
    assert "<h2>This article is paid</h2>" in text and "This article costs €0.25" in text
    assert "netpay wallet read http://localhost/articles/12" in text
    assert "<code>payment_required</code>" not in text  # no error code on the plain 402
    api = client.get("/articles/12", headers={"Accept": "application/json"})
    assert api.get_json() == {
        "error": "payment_required",
        "detail": "This article costs 0.25 EUR. Pay with NetPay.",
        "amount": 25,
        "currency": "EUR",
    }


def test_without_a_data_dir_there_is_no_dashboard(client) -> None:
    resp = client.get("/dashboard")
    assert resp.status_code == 403
    assert "started without a data directory" in resp.get_data(as_text=True)
    assert client.post("/dashboard/logout").status_code == 404


def test_format_money() -> None:
    assert format_money(Money(5, "EUR")) == "€0.05"
    assert format_money(Money(123_456, "USD")) == "$1,234.56"
    assert format_money(Money(-250, "GBP")) == "-£2.50"
    assert format_money(Money(1000, "CHF")) == "10.00 CHF"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:8001", True),
        ("127.1.2.3", True),
        ("localhost:80", True),
        ("[::1]:8443", True),
        ("news.localhost", True),
        ("news.example", False),
        ("news.example:443", False),
        ("10.0.0.5:8001", False),
        ("[2001:db8::1]:80", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_password_file_first_line_and_bounds() -> None:
    assert read_password_file("s3cret pass\nsecond\n") == "s3cret pass"
    assert read_password_file("s3cret pass\r\n") == "s3cret pass"
    for bad in ("short\n", "", "\nlong enough on line two", "x" * 1025):
        with pytest.raises(InvalidArgument):
            read_password_file(bad)


def test_password_hash_and_secret_key_files(tmp_path: Path) -> None:
    assert load_password_hash(tmp_path) is None
    assert load_password_hash(None) is None
    set_dashboard_password(tmp_path, "s3cret pass")
    digest = load_password_hash(tmp_path)
    assert digest is not None and digest.startswith("$argon2id$")
    assert verify_password(digest, "s3cret pass")
    assert not verify_password(digest, "s3cret pasS")
    assert not verify_password(digest, "")
    assert not verify_password("not a hash", "s3cret pass")
    assert stat.S_IMODE((tmp_path / PASSWORD_FILE).stat().st_mode) == 0o600

    with pytest.raises(InvalidArgument):
        read_secret_key(tmp_path)  # workers never make the key
    key = ensure_secret_key(tmp_path)
    assert len(key) == 32 and ensure_secret_key(tmp_path) == key == read_secret_key(tmp_path)
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600

    (tmp_path / PASSWORD_FILE).chmod(0o644)
    with pytest.raises(PermissionDenied):
        load_password_hash(tmp_path)


def test_login_limiter_window_and_bound() -> None:
    limiter = LoginLimiter(max_failures=3, window_s=60, max_clients=2)
    now = 1_000_000
    for i in range(3):
        assert limiter.retry_after_s("a", now + i) == 0
        limiter.failed("a", now + i)
    assert limiter.retry_after_s("a", now + 10) == 60  # the first failure leaves at now+60
    assert limiter.retry_after_s("b", now + 10) == 0  # per address
    assert limiter.retry_after_s("a", now + 60_001) == 0
    limiter.succeeded("a")
    limiter.failed("a", now)
    limiter.failed("b", now + 1)
    limiter.failed("c", now + 2)  # full: the oldest address ("a") is dropped
    assert set(limiter._failures) == {"b", "c"}
