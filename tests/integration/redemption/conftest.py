"""A real broker and real vendors in process (from tests/integration/vendor), the
window helpers of tests/integration/vendor_windows, and the books' checks."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.domain import AccountRef
from broker.reconcile import Reconciliation, reconcile
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
