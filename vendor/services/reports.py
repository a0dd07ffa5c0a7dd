"""What the operator and the reader read: the dashboard, a coin's clicks, the
window credit on its way back to a reader, and the redemption history (with
its CSV form, ``netpay vendor history``). Read-only use cases.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from netpay.clock import Clock
from netpay.errors import InvalidArgument
from netpay.money import Money
from vendor.domain import CoinView, VendorCoinState, WindowView
from vendor.services.ports import UnitOfWorkFactory
from vendor.storage import BatchLine, ClaimRecord, ClickRecord, RefundRecord, Revenue

__all__ = ["HISTORY_FIELDS", "MAX_HISTORY_ROWS", "Dashboard", "Reports", "write_history_csv"]

_DASHBOARD_MAX_ROWS = 1_000
MAX_HISTORY_ROWS = 10_000

HISTORY_FIELDS = (
    "kind",
    "time_ms",
    "time",
    "batch_id",
    "status",
    "ecoin_id",
    "epoch",
    "from_index",
    "to_index",
    "units",
    "amount_minor",
    "currency",
    "reason",
    "detail",
    "refund_id",
    "refund_reason",
    "item_id",
    "claims",
    "refunds",
)

# A history row's sort key: (time, -batch order, kind rank), newest first.
_Keyed = tuple[tuple[int, int, int], dict[str, Any]]


@dataclass(frozen=True)
class Dashboard:
    """The operator's view: clicks, revenue to be redeemed, the coins held."""

    click_count: int
    recent_clicks: Sequence[ClickRecord]
    revenue: Sequence[Revenue]
    coin_counts: Mapping[VendorCoinState, int]
    coins: Sequence[CoinView]  # HELD and HANDING_OFF, most recently changed first
    now_ms: int
    open_window_count: int = 0
    open_windows: Sequence[WindowView] = ()  # newest first


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _row(kind: str, time_ms: int, **values: object) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(HISTORY_FIELDS)
    row.update(kind=kind, time_ms=time_ms, time=_iso(time_ms), **values)
    return row


def write_history_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    """The history rows as CSV (header: :data:`HISTORY_FIELDS`; None is empty)."""
    writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in HISTORY_FIELDS})


class Reports:
    """Read-only views of the vendor's database."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def clicks(self, ecoin_id: str) -> Sequence[ClickRecord]:
        with self._uow(read_only=True) as unit:
            return unit.coins.clicks(ecoin_id)

    def refund_pending(self, ecoin_id: str) -> Money | None:
        """Window credit of the coin on its way back to the reader, as the broker
        last said (None when nothing is)."""
        with self._uow(read_only=True) as unit:
            units = unit.coins.refund_pending_units(ecoin_id)
            if not units:
                return None
            stored = unit.coins.get(ecoin_id)
        if stored is None:
            return None
        return Money(units * stored.view.unit_value_minor, stored.view.currency)

    def dashboard(self, *, clicks_limit: int = 20, coins_limit: int = 100) -> Dashboard:
        """Everything the operator's dashboard shows, read in one unit of work."""
        clicks_limit = max(0, min(clicks_limit, _DASHBOARD_MAX_ROWS))
        coins_limit = max(0, min(coins_limit, _DASHBOARD_MAX_ROWS))
        with self._uow(read_only=True) as unit:
            reads = unit.reports
            return Dashboard(
                click_count=reads.click_count(),
                recent_clicks=reads.recent_clicks(limit=clicks_limit),
                revenue=reads.revenue(),
                coin_counts=reads.coin_counts(),
                coins=[
                    s.view
                    for s in reads.coins_in(
                        (VendorCoinState.HELD, VendorCoinState.HANDING_OFF), limit=coins_limit
                    )
                ],
                now_ms=self._clock.now_ms(),
                open_window_count=reads.open_window_count(),
                open_windows=reads.open_windows(limit=coins_limit),
            )

    def history(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """The vendor's redemption history, newest first, at most ``limit`` rows
        (1..10,000): one row per batch (``kind`` "batch": its state, claim and
        refund counts), per claim ("claim": status, units, ``amount_minor`` paid,
        the broker's reason) at its batch's time, and per refund ("refund":
        status, ``amount_minor`` negative — money back to the reader — and the
        receipt it refunds) at the time it was recorded. Every row has the keys
        of :data:`HISTORY_FIELDS`."""
        if isinstance(limit, bool) or not 0 < limit <= MAX_HISTORY_ROWS:
            raise InvalidArgument(f"limit is 1..{MAX_HISTORY_ROWS}")
        with self._uow(read_only=True) as unit:
            batches = unit.reports.batches(limit=limit)
            batch_ids = [b.batch_id for b in batches]
            claims = unit.reports.claims_of(batch_ids)
            refunds = unit.reports.refunds_recorded(limit=limit)
            refund_counts = unit.reports.refunds_per_batch(batch_ids)
        keyed = [
            *_batch_rows(batches, claims, refund_counts),
            *_claim_rows(batches, claims),
            *(_refund_row(r) for r in refunds),
        ]
        # Newest first; inside one batch: the batch, then its claims in claim order.
        keyed.sort(key=lambda kv: kv[0], reverse=True)
        return [row for _, row in keyed][:limit]


def _batch_rows(
    batches: Sequence[BatchLine], claims: Sequence[ClaimRecord], refund_counts: dict[str, int]
) -> list[_Keyed]:
    claim_counts: dict[str, int] = defaultdict(int)
    for c in claims:
        claim_counts[c.batch_id] += 1
    return [
        (
            (b.created_at_ms, -order, 3),
            _row(
                "batch",
                b.created_at_ms,
                batch_id=b.batch_id,
                status=b.state,
                claims=claim_counts[b.batch_id],
                refunds=refund_counts.get(b.batch_id, 0),
            ),
        )
        for order, b in enumerate(batches)
    ]


def _claim_rows(batches: Sequence[BatchLine], claims: Sequence[ClaimRecord]) -> list[_Keyed]:
    times = {b.batch_id: b.created_at_ms for b in batches}
    order_of = {b.batch_id: i for i, b in enumerate(batches)}
    return [
        (
            (times[c.batch_id], -order_of[c.batch_id], 2),
            _row(
                "claim",
                times[c.batch_id],
                batch_id=c.batch_id,
                status=c.status.value,
                ecoin_id=c.ecoin_id,
                epoch=c.epoch,
                from_index=c.from_index,
                to_index=c.to_index,
                units=c.units,
                amount_minor=c.paid_minor,
                currency=c.currency,
                reason=c.reason,
                detail=c.detail,
            ),
        )
        for c in claims
    ]


def _refund_row(r: RefundRecord) -> _Keyed:
    return (
        (r.created_at_ms, 0, 1),
        _row(
            "refund",
            r.created_at_ms,
            batch_id=r.batch_id,
            status=r.status,
            ecoin_id=r.ecoin_id,
            epoch=r.epoch,
            to_index=r.receipt_to_index,
            amount_minor=-r.amount_minor,
            currency=r.currency,
            reason=r.result_reason,
            detail=r.result_detail,
            refund_id=r.refund_id,
            refund_reason=r.reason,
            item_id=r.item_id,
        ),
    )
