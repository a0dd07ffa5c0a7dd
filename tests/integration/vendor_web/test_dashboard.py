"""The vendor's dashboard over real HTTP: disabled without a password, the
login (CSRF, wrong/right password, attempt limit), what it shows after
payments, the cookie's flags, logout; and under gunicorn (two workers
sharing the data dir's secret key)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from vendor.dashboard import PASSWORD_FILE, SECRET_FILE

from .conftest import CSRF_RE, DASHBOARD_PASSWORD, Site, log_in, login_form


def _cookie_header(resp: requests.Response) -> str:
    cookie = resp.headers.get("Set-Cookie")
    assert cookie is not None and cookie.startswith("netpay_dashboard_"), resp.headers
    return cookie


def test_without_a_password_the_dashboard_is_disabled(start_vendor_here, tmp_path: Path) -> None:
    vendor = start_vendor_here("no-password")
    for path in ("/dashboard", "/dashboard/login"):
        resp = requests.get(vendor.web_url + path, timeout=30)
        assert resp.status_code == 403
        assert "The vendor dashboard is disabled" in resp.text
        assert "--dashboard-password-file" in resp.text
        assert "Set-Cookie" not in resp.headers
    resp = requests.post(vendor.web_url + "/dashboard/login", data={"password": "x"}, timeout=30)
    assert resp.status_code == 403
    # The secret key is made at first start anyway, private; no password file.
    assert stat.S_IMODE((tmp_path / "no-password" / SECRET_FILE).stat().st_mode) == 0o600
    assert not (tmp_path / "no-password" / PASSWORD_FILE).exists()


def test_the_password_and_secret_key_are_private_files(site: Site, tmp_path: Path) -> None:
    data_dir = tmp_path / "daily-hash"
    for name in (PASSWORD_FILE, SECRET_FILE):
        mode = stat.S_IMODE((data_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    stored = (data_dir / PASSWORD_FILE).read_text()
    assert stored.startswith("$argon2id$") and DASHBOARD_PASSWORD not in stored


def test_the_dashboard_needs_a_login(site: Site) -> None:
    resp = requests.get(site.url + "/dashboard", allow_redirects=False, timeout=30)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/dashboard/login")


def test_login_without_csrf_token_is_400(site: Site) -> None:
    http = requests.Session()
    login_form(http, site.url)
    resp = http.post(
        site.url + "/dashboard/login", data={"password": DASHBOARD_PASSWORD}, timeout=30
    )
    assert resp.status_code == 400
    # A token that is not the session's is refused the same way.
    resp = http.post(
        site.url + "/dashboard/login",
        data={"password": DASHBOARD_PASSWORD, "csrf_token": "forged"},
        timeout=30,
    )
    assert resp.status_code == 400
    # And a fresh client with no session at all.
    resp = requests.post(
        site.url + "/dashboard/login",
        data={"password": DASHBOARD_PASSWORD, "csrf_token": "forged"},
        timeout=30,
    )
    assert resp.status_code == 400
    assert http.get(site.url + "/dashboard", allow_redirects=False, timeout=30).status_code == 303


def test_wrong_then_right_password(site: Site) -> None:
    http = requests.Session()
    token = login_form(http, site.url)
    wrong = http.post(
        site.url + "/dashboard/login",
        data={"csrf_token": token, "password": "not the password"},
        allow_redirects=False,
        timeout=30,
    )
    assert wrong.status_code == 401 and "Wrong password." in wrong.text
    assert http.get(site.url + "/dashboard", allow_redirects=False, timeout=30).status_code == 303
    log_in(http, site.url)
    page = http.get(site.url + "/dashboard", timeout=30)
    assert page.status_code == 200 and "Vendor dashboard" in page.text


def test_login_attempts_are_limited_per_address(site: Site) -> None:
    http = requests.Session()
    token = login_form(http, site.url)

    def attempt(password: str) -> requests.Response:
        return http.post(
            site.url + "/dashboard/login",
            data={"csrf_token": token, "password": password},
            allow_redirects=False,
            timeout=30,
        )

    for _ in range(5):
        assert attempt("wrong guess").status_code == 401
    blocked = attempt(DASHBOARD_PASSWORD)  # even the right one, until the window passes
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) == 300
    site.clock.advance(301)
    assert attempt(DASHBOARD_PASSWORD).status_code == 303


def test_session_cookie_flags(site: Site) -> None:
    http = requests.Session()
    token = login_form(http, site.url)
    resp = http.post(
        site.url + "/dashboard/login",
        data={"csrf_token": token, "password": DASHBOARD_PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    cookie = _cookie_header(resp).lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    assert "secure" not in cookie.split(";", 1)[1]  # served on loopback: plain http works
    # Reached under a public host name (TLS in front of it): the cookie is Secure.
    public = requests.get(
        site.url + "/dashboard/login", headers={"Host": "news.example"}, timeout=30
    )
    flags = [f.strip() for f in _cookie_header(public).lower().split(";")]
    assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags
    # Readers never get a cookie from the newspaper's pages.
    assert "Set-Cookie" not in requests.get(site.url + "/", timeout=30).headers
    assert "Set-Cookie" not in requests.get(site.url + "/articles/7", timeout=30).headers


def test_the_dashboard_shows_clicks_revenue_and_coins(site: Site) -> None:
    first = site.reader.buy(100)
    second = site.reader.buy(50, unit_value_minor=5)
    assert site.get("/articles/7", first.header(10)).status_code == 200  # €0.10
    assert site.get("/articles/12", first.header(25)).status_code == 200  # €0.25
    assert site.get("/articles/4", second.header(1)).status_code == 200  # €0.05

    http = requests.Session()
    log_in(http, site.url)
    page = http.get(site.url + "/dashboard", timeout=30)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "private, no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    text = page.text

    count = re.search(r'id="click-count"><strong>(\d+)</strong>', text)
    assert count is not None and count.group(1) == "3"
    revenue = re.search(
        r'<tr><td>EUR</td><td class="num">(\d+)</td><td class="num">([^<]+)</td>', text
    )
    assert revenue is not None and revenue.groups() == ("3", "€0.40")
    assert "to be redeemed" in text

    clicks = text.split('id="clicks"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>", clicks)
    assert len(rows) == 3 and all(r.endswith(" UTC") for r in rows)
    assert clicks.index(second.ecoin_id[:8]) < clicks.index(first.ecoin_id[:8])  # newest first
    assert "words 10&ndash;35" in clicks and "words 0&ndash;10" in clicks
    assert first.ecoin_id not in clicks.replace(f'title="{first.ecoin_id}"', "")  # shortened

    coins = text.split('id="coins"', 1)[1].split("</table>", 1)[0]
    for coin, index, n, left, credit in (
        (first, 35, 100, 65, "€0.65"),
        (second, 1, 50, 49, "€2.45"),
    ):
        row = coins.split(f'title="{coin.ecoin_id}"', 1)[1].split("</tr>", 1)[0]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert cells[:5] == ["held", "1", f"{index} / {n}", str(left), credit], cells
        assert "live until" in cells[5]
    # The lease runs out: the dashboard says so.
    site.clock.advance(3600)
    later = http.get(site.url + "/dashboard", timeout=30).text
    coins = later.split('id="coins"', 1)[1].split("</table>", 1)[0]
    assert coins.count('class="expired">expired') == 2
    assert "None yet" in later.split('id="windows"', 1)[1]
    assert "Nothing redeemed yet." in later

    # After a redemption the operator sees the batch and its claims.
    assert site.vendor.redeemer.redeem().paid_minor == {"EUR": 40}
    redeemed = http.get(site.url + "/dashboard", timeout=30).text
    table = redeemed.split('id="redemptions"', 1)[1].split("</table>", 1)[0]
    assert table.count('<tr class="claim">') == 2 and table.count('<tr class="batch">') == 1
    assert "(2 claims, 0 refunds)" in table and "€0.35" in table and "€0.05" in table


def test_logout_needs_csrf_and_ends_the_session(site: Site) -> None:
    http = requests.Session()
    log_in(http, site.url)
    page = http.get(site.url + "/dashboard", timeout=30)
    match = CSRF_RE.search(page.text)
    assert match is not None
    assert http.post(site.url + "/dashboard/logout", timeout=30).status_code == 400
    assert http.get(site.url + "/dashboard", timeout=30).status_code == 200  # still logged in
    out = http.post(
        site.url + "/dashboard/logout",
        data={"csrf_token": match.group(1)},
        allow_redirects=False,
        timeout=30,
    )
    assert out.status_code == 303 and out.headers["Location"].endswith("/dashboard/login")
    assert http.get(site.url + "/dashboard", allow_redirects=False, timeout=30).status_code == 303


def test_a_restart_keeps_the_password_and_the_key_without_the_flag(
    start_vendor_here, password_file: Path, tmp_path: Path
) -> None:
    first = start_vendor_here("restarted", dashboard_password_file=password_file)
    key = (tmp_path / "restarted" / SECRET_FILE).read_bytes()
    first.stop()
    again = start_vendor_here("restarted", enroll_token=None)
    http = requests.Session()
    log_in(http, again.web_url)
    assert http.get(again.web_url + "/dashboard", timeout=30).status_code == 200
    assert (tmp_path / "restarted" / SECRET_FILE).read_bytes() == key


@pytest.mark.e2e
def test_gunicorn_workers_share_the_secret_key(
    start_vendor_here, password_file: Path, tmp_path: Path
) -> None:
    vendor = start_vendor_here(
        "gunicorn-news", fake_clock=False, workers=2, dashboard_password_file=password_file
    )
    http = requests.Session()
    log_in(http, vendor.web_url)
    # The worker signed the session with the data dir's key, not one of its own.
    app = Flask("check")
    app.secret_key = (tmp_path / "gunicorn-news" / SECRET_FILE).read_bytes()
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    [value] = [c.value for c in http.cookies if c.name.startswith("netpay_dashboard_")]
    assert isinstance(serializer.loads(value)["operator"], str)
    # Each request may land on either worker; every one must accept the session.
    for _ in range(12):
        page = http.get(vendor.web_url + "/dashboard", allow_redirects=False, timeout=30)
        assert page.status_code == 200, page.headers
        assert "Vendor dashboard" in page.text
        http = _fresh_connection(http)


def _fresh_connection(http: requests.Session) -> requests.Session:
    """A new connection with the same cookies (gunicorn may pick another worker)."""
    fresh = requests.Session()
    fresh.cookies.update(http.cookies)
    http.close()
    return fresh
