"""A coin's index ranges: the writes that span aggregates, each in one transaction.

* :func:`allocate` gives a fresh range ``(p, j]`` to exactly one header: a
  compare-and-set on the coin's index (``UPDATE ... WHERE index = p``) inside
  one unit (``BEGIN IMMEDIATE`` on SQLite), so two threads or two wallet
  processes never hand out overlapping ranges; the same statements work on
  PostgreSQL. The reader's spending limits and an approved origin's caps
  (the browser bridge) are checked, and counted with their own
  compare-and-sets, in that same unit: a refused payment moves nothing.
* :func:`resync`, :func:`record_receipt` and :func:`window_opened` move a
  coin up or settle its outstanding headers when a vendor's index, a
  receipt or an opened window covers them.

The last three work in the caller's unit (the caller commits).
"""

from __future__ import annotations

from dataclasses import dataclass

from ewallet_client.domain import choose_coin
from ewallet_client.store.records import (
    Allocation,
    BridgeCharge,
    WindowRequest,
    WindowView,
    effective_caps,
)
from ewallet_client.store.unit import WalletUnit, WalletUow
from netpay.errors import Conflict, LimitExceeded, PermissionDenied
from netpay.spending import check_spend, utc_day
from netpay.v1 import statements_pb2 as pb

__all__ = ["CAS_ATTEMPTS", "RangeRequest", "allocate", "record_receipt", "resync", "window_opened"]

CAS_ATTEMPTS = 3


@dataclass(frozen=True)
class RangeRequest:
    """What :func:`allocate` is asked for: one click's price, or a window's words.

    With ``window``, the range is ``window.units`` words (``amount_minor`` is
    then the price a window click will pay: the coin's unit value must divide
    it), and with ``window.origin`` the window is recorded in the same unit.
    With ``charge``, the amount (a window's: units * unit value) is also
    added to the origin's spending of the day; a cap it would pass (or an
    origin no longer approved) refuses the whole allocation. With ``spend``
    (every payment but a header re-issued for the same click after a
    resync), the amount is checked against the reader's spending limits and
    added to the UTC day's spending.
    """

    amount_minor: int
    currency: str
    realm: str
    url: str
    now_ms: int
    skew_ms: int
    charge: BridgeCharge | None = None
    window: WindowRequest | None = None
    spend: bool = True


def allocate(uow: WalletUow, request: RangeRequest) -> Allocation:
    """Pick a coin and move its index past a fresh range, in one transaction.

    ``p = coin.index``, ``j = p + amount / u``, ``coin.index = j``: the
    range ``(p, j]`` belongs to this header alone, whatever else runs.
    """
    for _ in range(CAS_ATTEMPTS):
        with uow() as unit:
            alloc = _try_allocate(unit, request)
            if alloc is not None:
                unit.commit()
                return alloc
            # another writer moved the coin (PostgreSQL): roll back, choose again
    raise Conflict("could not allocate an index range: the coins kept changing")


def _try_allocate(unit: WalletUnit, r: RangeRequest) -> Allocation | None:
    """One attempt; None when the compare-and-set on the coin's index was lost."""
    if r.charge is not None and r.window is None:
        _charge(unit, r.charge, amount_minor=r.amount_minor, currency=r.currency)
    coin, words = choose_coin(
        unit.coins.active(r.currency),
        amount_minor=r.amount_minor,
        currency=r.currency,
        realm=r.realm,
        now_ms=r.now_ms,
        skew_ms=r.skew_ms,
        words=None if r.window is None else r.window.units,
        windowed_elsewhere=unit.windows.coins_windowed_elsewhere(r.realm),
    )
    amount_minor = words * coin.unit_value_minor
    if r.charge is not None and r.window is not None:
        _charge(unit, r.charge, amount_minor=amount_minor, currency=r.currency, per_click=False)
    if r.spend:
        _spend(
            unit,
            currency=r.currency,
            day=utc_day(r.now_ms),
            amount_minor=amount_minor,
            per_click=r.window is None,
        )
    prev = coin.index
    index = prev + words
    assert 0 < index <= coin.n
    if not unit.coins.move_index(coin.ecoin_id, prev, index):
        return None
    outstanding = unit.receipts.outstanding_words(coin.ecoin_id)
    unit.receipts.add_outstanding(
        ecoin_id=coin.ecoin_id,
        prev=prev,
        index=index,
        vendor_id=r.realm,
        url=r.url,
        now_ms=r.now_ms,
    )
    window_id = None
    if r.window is not None and r.window.origin is not None:
        window_id = unit.windows.add_opening(
            vendor_id=r.realm,
            origin=r.window.origin,
            coin=coin,
            prev=prev,
            index=index,
            url=r.url,
            now_ms=r.now_ms,
        )
    return Allocation(coin, prev, index, outstanding, window_id)


def _spend(
    unit: WalletUnit, *, currency: str, day: int, amount_minor: int, per_click: bool
) -> None:
    """Check ``amount_minor`` against the reader's limits and count it on ``day``.

    The rules are :func:`netpay.spending.check_spend`'s; the day's row moves
    with a compare-and-set, and a refusal leaves the unit to roll back.
    """
    limits = unit.spending.limits(currency)
    unit.spending.open_day(day, currency)
    check_spend(limits, amount_minor, unit.spending.spent(day, currency), per_click=per_click)
    cap = None if limits is None else limits.max_day_minor
    if not unit.spending.add(day, currency, amount_minor, day_cap_minor=cap):
        # another payment passed first: the fresh total decides
        check_spend(limits, amount_minor, unit.spending.spent(day, currency), per_click=per_click)
        raise LimitExceeded(f"the daily limit in {currency} was reached meanwhile")


def _charge(
    unit: WalletUnit,
    charge: BridgeCharge,
    *,
    amount_minor: int,
    currency: str,
    per_click: bool = True,
) -> None:
    """Add ``amount_minor`` to the origin's spending of the day, within its caps.

    ``per_click=False`` (a window: its clicks' prices are checked one by one
    by the page's own requests) skips the per-click cap; the daily cap applies.
    """
    approved = unit.bridge.approved(charge.origin)
    if approved is None:
        raise PermissionDenied(f"{charge.origin} is not an origin this wallet approved")
    click_cap, day_cap = effective_caps(
        approved, max_click_minor=charge.max_click_minor, max_day_minor=charge.max_day_minor
    )
    if per_click and amount_minor > click_cap:
        raise LimitExceeded(
            f"price {amount_minor} {currency} minor units is above the per-click cap "
            f"of {click_cap} for {charge.origin}"
        )
    if not unit.bridge.add_spending(
        charge.origin, charge.day, currency, amount_minor, day_cap_minor=day_cap
    ):
        spent = unit.bridge.spent(charge.origin, charge.day, currency)
        raise LimitExceeded(
            f"{charge.origin} has spent {spent} of its daily cap of {day_cap} "
            f"{currency} minor units today; this click costs {amount_minor}"
        )


def resync(unit: WalletUnit, ecoin_id: str, index: int) -> bool:
    """Move a coin's index up to ``index`` (never down); True if it moved.

    The caller has checked the vendor's index (its ``seen`` is that of this
    coin's ``w[index]``) or the broker's (its word is this coin's). Headers
    at or below ``index`` are settled either way.
    """
    moved = unit.coins.move_up(ecoin_id, index)
    unit.receipts.settle(ecoin_id, index)
    return moved


def record_receipt(
    unit: WalletUnit,
    receipt: pb.Receipt,
    *,
    envelope: bytes,
    url: str,
    now_ms: int,
    window_id: int | None = None,
) -> None:
    """A verified receipt: keep it, move ``accepted_index``, settle the headers.

    With ``window_id`` (a click paid from that window), the window's
    consumed index moves up to the receipt's ``to`` in the same unit.
    """
    if window_id is not None:
        unit.windows.consume_up_to(window_id, receipt.to_index)
    coin = unit.coins.get(receipt.ecoin_id)
    assert receipt.to_index <= coin.index, "a receipt above the wallet's own index"
    unit.receipts.add(receipt, envelope=envelope, url=url, now_ms=now_ms)
    unit.coins.accepted(receipt.ecoin_id, receipt.to_index, receipt.vendor_id)
    unit.receipts.settle(receipt.ecoin_id, receipt.to_index)


def window_opened(
    unit: WalletUnit,
    window_id: int,
    *,
    epoch: int,
    expires_at_ms: int,
    handle: str,
    consumed_index: int,
) -> WindowView:
    """The vendor opened the window: keep its handle; the range is settled.

    The coin's ``accepted_index`` moves to the window top and the headers at
    or below it are settled, as a receipt would do.
    """
    view = unit.windows.accept(
        window_id,
        epoch=epoch,
        expires_at_ms=expires_at_ms,
        handle=handle,
        consumed_index=consumed_index,
    )
    unit.coins.accepted(view.ecoin_id, view.window_top, view.vendor_id)
    unit.receipts.settle(view.ecoin_id, view.window_top)
    return view
