"""Money history (``Broker.History``): a reader's purchases, redeemed clicks, window
credits, vendor refunds and expiry refunds, or a vendor's claims; newest first.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.services.ports import BrokerPorts
from broker.storage import Repos, StoredCoin
from netpay.encoding import check_ecoin_id
from netpay.errors import InvalidArgument, NotFound

__all__ = ["History", "HistoryItem"]

_HISTORY_MAX = 1000
_HISTORY_DEFAULT = 100
_MAX_READER_COINS = 10_000
_KIND_ORDER = {
    "purchase": 0,
    "click": 1,
    "window_credit": 2,
    "claim": 3,
    "vendor_refund": 4,
    "expiry_refund": 5,
}


@dataclass(frozen=True)
class HistoryItem:
    """One line of a reader's or a vendor's money history (``Broker.History``)."""

    time_ms: int
    kind: str
    ecoin_id: str = ""
    vendor_id: str = ""
    item_id: str = ""
    epoch: int = 0
    from_index: int = 0
    to_index: int = 0
    amount_minor: int = 0
    currency: str = ""
    batch_id: str = ""


def _before(time_ms: int, before: int | None) -> bool:
    return before is None or time_ms < before


class History:
    """Reads the records of money that moved; changes nothing."""

    def __init__(self, ports: BrokerPorts) -> None:
        self._ports = ports

    def history(
        self,
        *,
        reader_id: str | None = None,
        vendor_id: str | None = None,
        ecoin_id: str = "",
        limit: int = 0,
        before_ms: int = 0,
    ) -> list[HistoryItem]:
        """Newest first: a reader's purchases, redeemed clicks and credits, or a vendor's
        claims, refunds and payouts."""
        assert (reader_id is None) != (vendor_id is None)
        if ecoin_id:
            check_ecoin_id(ecoin_id)
        if limit < 0 or limit > _HISTORY_MAX:
            raise InvalidArgument(f"limit is 1..{_HISTORY_MAX} (0: {_HISTORY_DEFAULT})")
        limit = limit or _HISTORY_DEFAULT
        before = before_ms if before_ms > 0 else None
        with self._ports.uow(read_only=True) as repos:
            if reader_id is not None:
                items = _reader_history(repos, reader_id, ecoin_id, limit, before)
            else:
                assert vendor_id is not None
                items = _vendor_history(repos, vendor_id, ecoin_id, limit, before)
        # Newest first; at the same millisecond in the order things happen.
        items.sort(key=lambda h: (h.time_ms, _KIND_ORDER.get(h.kind, 99)), reverse=True)
        return items[:limit]


def _reader_history(
    repos: Repos, reader_id: str, ecoin_id: str, limit: int, before: int | None
) -> list[HistoryItem]:
    coins = repos.coins.list_for_owner(reader_id, _MAX_READER_COINS)
    if ecoin_id:
        coins = [c for c in coins if c.view.ecoin_id == ecoin_id]
        if not coins:
            raise NotFound(f"no coin {ecoin_id} of yours")
    ids = [c.view.ecoin_id for c in coins]
    return [
        *_purchases(repos, ids, before),
        *_clicks(repos, ids, limit, before),
        *_vendor_refunds(repos, ids, before),
        *_expiry_refunds(repos, ids, before),
        *_window_credits(repos, coins, before),
    ]


def _purchases(repos: Repos, ids: list[str], before: int | None) -> list[HistoryItem]:
    return [
        HistoryItem(
            time_ms=purchase.created_at_ms,
            kind="purchase",
            ecoin_id=purchase.ecoin_id,
            amount_minor=-purchase.amount_minor,
            currency=purchase.currency,
        )
        for purchase in repos.purchases.of_coins(ids)
        if _before(purchase.created_at_ms, before)
    ]


def _clicks(repos: Repos, ids: list[str], limit: int, before: int | None) -> list[HistoryItem]:
    return [
        HistoryItem(
            time_ms=r.time_ms,
            kind="click",
            ecoin_id=r.ecoin_id,
            vendor_id=r.vendor_id,
            item_id=r.item_id,
            epoch=r.epoch,
            from_index=r.from_index,
            to_index=r.to_index,
            amount_minor=-r.amount_minor,
            currency=r.currency,
        )
        for r in repos.redemption.ranges(ecoin_ids=ids, before_ms=before, limit=limit)
    ]


def _vendor_refunds(repos: Repos, ids: list[str], before: int | None) -> list[HistoryItem]:
    return [
        HistoryItem(
            time_ms=vendor_refund.created_at_ms,
            kind="vendor_refund",
            ecoin_id=vendor_refund.ecoin_id,
            vendor_id=vendor_refund.vendor_id,
            to_index=vendor_refund.receipt_to_index,
            amount_minor=vendor_refund.amount_minor,
            currency=vendor_refund.currency,
        )
        for vendor_refund in repos.redemption.refunds_of(ids)
        if _before(vendor_refund.created_at_ms, before)
    ]


def _expiry_refunds(repos: Repos, ids: list[str], before: int | None) -> list[HistoryItem]:
    items = []
    for ecoin in ids:
        refund = repos.redemption.expiry_refund(ecoin)
        if refund is not None and _before(refund.created_at_ms, before):
            items.append(
                HistoryItem(
                    time_ms=refund.created_at_ms,
                    kind="expiry_refund",
                    ecoin_id=ecoin,
                    amount_minor=refund.amount_minor + refund.refund_balance_minor,
                    currency=refund.currency,
                )
            )
    return items


def _window_credits(repos: Repos, coins: list[StoredCoin], before: int | None) -> list[HistoryItem]:
    units = {c.view.ecoin_id: (c.view.unit_value_minor, c.currency) for c in coins}
    items = []
    for credit in repos.redemption.credits_of(list(units)):
        if not _before(credit.received_at_ms, before):
            continue
        u, currency = units[credit.ecoin_id]
        items.append(
            HistoryItem(
                time_ms=credit.received_at_ms,
                kind="window_credit",
                ecoin_id=credit.ecoin_id,
                vendor_id=credit.vendor_id,
                epoch=credit.epoch,
                from_index=credit.consumed_index,
                to_index=credit.window_top,
                amount_minor=credit.refund_units * u,
                currency=currency,
            )
        )
    return items


def _vendor_history(
    repos: Repos, vendor_id: str, ecoin_id: str, limit: int, before: int | None
) -> list[HistoryItem]:
    claims = repos.redemption.claims(
        vendor_id=vendor_id,
        ecoin_ids=[ecoin_id] if ecoin_id else None,
        before_ms=before,
        limit=limit,
    )
    return [
        HistoryItem(
            time_ms=c.created_at_ms,
            kind="claim",
            ecoin_id=c.ecoin_id,
            vendor_id=c.vendor_id,
            epoch=c.epoch,
            from_index=c.from_index,
            to_index=c.to_index,
            amount_minor=c.amount_minor,
            currency=c.currency,
            batch_id=c.batch_id,
        )
        for c in claims
    ]
