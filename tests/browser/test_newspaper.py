"""A reader's browser on the demo newspaper (no wallet yet): pages, prices, the 402 page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.server import BrokerConfig, add_vendor, start_broker
from vendor.server import VendorConfig, VendorHandle, start_vendor

pytestmark = pytest.mark.browser


@pytest.fixture
def newspaper(tmp_path: Path) -> Iterator[VendorHandle]:
    broker = start_broker(BrokerConfig(data_dir=tmp_path / "b"))
    vendor = start_vendor(
        VendorConfig(
            data_dir=tmp_path / "v",
            broker_addr=broker.grpc_address,
            enroll_token=add_vendor(tmp_path / "b", "daily-hash"),
            workers=0,
            background=False,
            display_name="The Daily Hash",
        )
    )
    try:
        yield vendor
    finally:
        vendor.stop()
        broker.stop()


def test_front_page_free_article_and_the_payment_page(
    browser: Any, newspaper: VendorHandle, screenshot_dir: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        response = page.goto(newspaper.web_url + "/")
        assert response is not None and response.status == 200
        assert "The Daily Hash" in page.content()
        page.screenshot(path=str(screenshot_dir / "front-page.png"), full_page=True)

        response = page.goto(newspaper.web_url + "/articles/free")
        assert response is not None and response.status == 200

        # A paid article without a wallet: the browser gets the HTML 402 page.
        response = page.goto(newspaper.web_url + "/articles/7")
        assert response is not None and response.status == 402
        assert "text/html" in response.headers["content-type"]
        assert response.headers["www-authenticate"].startswith("NetPay ")
        page.screenshot(path=str(screenshot_dir / "payment-required.png"), full_page=True)
    finally:
        context.close()
