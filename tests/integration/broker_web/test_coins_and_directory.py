"""The coins page and the newspaper directory, with real vendors and the real wallet."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.server import add_vendor
from ewallet_client import Wallet
from vendor.server import VendorConfig, VendorHandle, start_vendor

from .conftest import DEPOSIT_MINOR, PASSWORD, Browser, Portal

NEWSPAPERS = (("daily-hash", "The Daily Hash"), ("chain-gazette", "The Chain Gazette"))


@pytest.fixture
def vendors(portal: Portal, tmp_path: Path) -> Iterator[list[VendorHandle]]:
    started: list[VendorHandle] = []
    try:
        for vendor_id, name in NEWSPAPERS:
            token = add_vendor(portal.data_dir, vendor_id)
            started.append(
                start_vendor(
                    VendorConfig(
                        data_dir=tmp_path / vendor_id,
                        broker_addr=portal.broker.grpc_address,
                        enroll_token=token,
                        workers=0,
                        display_name=name,
                        background=False,
                    ),
                    clock=portal.clock,
                )
            )
        yield started
    finally:
        for v in reversed(started):
            v.stop()


def _coin_section(page: str, ecoin_id: str) -> str:
    match = re.search(
        rf"<section class=\"coin\">\s*<h3><code>{ecoin_id}</code>.*?</section>", page, re.S
    )
    assert match is not None, page
    return match.group(0)


def _epoch_rows(section: str) -> list[list[str]]:
    body = section.split("<tbody>", 1)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [re.sub(r"\s+", " ", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def test_the_coins_page_shows_custody_after_two_newspapers(
    portal: Portal, vendors: list[VendorHandle], browser: Browser, tmp_path: Path
) -> None:
    daily, gazette = vendors
    with Wallet(tmp_path / "wallet", clock=portal.clock) as wallet:
        wallet.register(portal.broker.grpc_address, "reader", PASSWORD)
        coin = wallet.buy(300)
        assert browser.login("reader").status_code == 200

        section = _coin_section(browser.get("/coins").text, coin.ecoin_id)
        assert "No newspaper has used this coin yet." in section
        assert "300 of 300" in section and "3.00 EUR" in section
        assert ">free<" in section.replace('class="state">', ">")

        for vendor, article in ((daily, "4"), (gazette, "7")):  # 5 and 10 cents
            result = wallet.read(f"{vendor.web_url}/articles/{article}")
            assert result.status == 200 and result.paid

    page = browser.get("/coins").text
    assert f"{(DEPOSIT_MINOR - 300) // 100}.00 EUR" in page  # the bank balance
    section = _coin_section(page, coin.ecoin_id)
    # Epoch 1 at the Daily Hash from word 0 to 5 (closed by the hand-off),
    # epoch 2 at the Gazette from 5, still open.
    assert _epoch_rows(section) == [
        ["1", "daily-hash", "acquire", "0", "5"],
        ["2", "chain-gazette", "handoff from daily-hash", "5", "open"],
    ]
    assert "chain-gazette" in section and ">held<" in section.replace('class="state">', ">")
    # What the broker knows: the hand-off reported word 5; the Gazette's 10 cents
    # are not reported yet.
    assert "295 of 300" in section
    assert "<caption>Redeemed clicks" not in section  # nothing redeemed yet

    # The newspapers redeem (daily, or now): the clicks appear, newest first.
    assert daily.redeemer.redeem().paid_minor == {"EUR": 5}
    assert gazette.redeemer.redeem().paid_minor == {"EUR": 10}
    section = _coin_section(browser.get("/coins").text, coin.ecoin_id)
    clicks = section.split("<caption>Redeemed clicks (newest first)</caption>", 1)[1]
    rows = _epoch_rows(clicks)
    assert [row[1:] for row in rows] == [
        ["chain-gazette", "7", "5&ndash;15", "0.10 EUR"],
        ["daily-hash", "4", "0&ndash;5", "0.05 EUR"],
    ]


def test_a_reader_reports_a_coin_lost_and_unfreezes_it(
    portal: Portal, browser: Browser, tmp_path: Path
) -> None:
    with Wallet(tmp_path / "wallet", clock=portal.clock) as wallet:
        wallet.register(portal.broker.grpc_address, "reader", PASSWORD)
        coin = wallet.buy(100)
    assert browser.login("reader").status_code == 200
    freeze = browser.post(f"/coins/{coin.ecoin_id}/freeze", form_page="/coins")
    assert freeze.status_code == 200 and "Coin reported lost" in freeze.text
    assert "(frozen)" in _coin_section(freeze.text, coin.ecoin_id)
    assert portal.broker.services.get_coin(coin.ecoin_id, vendor_id="any").frozen
    # Without the CSRF token nothing changes.
    forged = browser.post(f"/coins/{coin.ecoin_id}/unfreeze", csrf="forged", form_page="/coins")
    assert forged.status_code == 400
    assert portal.broker.services.get_coin(coin.ecoin_id, vendor_id="any").frozen
    thawed = browser.post(f"/coins/{coin.ecoin_id}/unfreeze", form_page="/coins")
    assert "Coin unfrozen" in thawed.text
    assert not portal.broker.services.get_coin(coin.ecoin_id, vendor_id="any").frozen
    # Another reader's coin (or a garbled id) is not found, and nothing changes.
    other = browser.post("/coins/" + "ab" * 16 + "/freeze", form_page="/coins")
    assert other.status_code == 404


def test_the_directory_lists_every_certified_newspaper(
    portal: Portal, vendors: list[VendorHandle], browser: Browser
) -> None:
    add_vendor(portal.data_dir, "not-yet-enrolled")
    page = browser.get("/newspapers")  # public: no login needed
    assert page.status_code == 200
    links = re.findall(r'<a href="([^"]+)/" rel="noopener">([^<]+)</a>', page.text)
    assert sorted(links) == sorted(
        (v.web_url, name) for v, (_, name) in zip(vendors, NEWSPAPERS, strict=True)
    )
    for vendor_id, _ in NEWSPAPERS:
        assert f"<code>{vendor_id}</code>" in page.text
    assert "not-yet-enrolled" not in page.text

    # A certificate past its validity drops the newspaper from the directory.
    portal.clock.advance(8 * 86_400)
    assert "No newspaper is taking part" in browser.get("/newspapers").text
