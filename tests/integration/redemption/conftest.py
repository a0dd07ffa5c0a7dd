"""A real broker and real vendors in process (from tests/integration/vendor), the
window helpers of tests/integration/vendor_windows, and the books' checks."""

from __future__ import annotations

from datetime import UTC, datetime

import requests

from broker.domain import AccountRef
from broker.services.reconcile import Reconciliation, reconcile
from tests.integration.vendor_windows.conftest import (  # noqa: F401 (fixtures, re-exported)
    JSON,
    Reader,
    StartVendor,
    broker,
    broker_dir,
    broker_stub,
    click,
    clock,
    close,
    handle_of,
    open_window,
    pay_header,
    reader,
    start,
)


def balance(broker_handle, ref: AccountRef) -> int:
    with broker_handle.services.store.begin(read_only=True) as repos:
        return repos.ledger.balance_minor(ref)


def books(broker_handle, fake_clock) -> Reconciliation:
    day = datetime.fromtimestamp(fake_clock.now_ms() / 1000, tz=UTC).date().isoformat()
    return reconcile(broker_handle.services.store, day)


# article id -> price in cents (vendor/data/articles.json)
PRICE = {"1": 1, "2": 2, "3": 3, "4": 5, "5": 7, "6": 8, "7": 10}


def send(
    vendor, chain, prev: int, article: str, *, accept: str = "application/json"
) -> requests.Response:
    """One article paid with ``(prev, prev + price]`` of ``chain``, whatever the answer."""
    return requests.get(
        f"{vendor.web_url}/articles/{article}",
        headers={"Accept": accept, "Authorization": pay_header(chain, prev, prev + PRICE[article])},
        timeout=30,
    )


def pay(
    vendor, chain, prev: int, article: str, *, accept: str = "application/json"
) -> requests.Response:
    """:func:`send`, which must be paid (200)."""
    resp = send(vendor, chain, prev, article, accept=accept)
    assert resp.status_code == 200, resp.text
    return resp


def reader_id(broker_handle, username: str = "alice") -> str:
    with broker_handle.services.store.begin(read_only=True) as repos:
        row = repos.readers.by_username(username)
        assert row is not None
        return row.reader_id
