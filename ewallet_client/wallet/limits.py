"""The reader's spending limits: set, sync with the broker, report, check a price.

Use cases: ``set_spending_limits`` (kept here and pushed to the broker),
``sync_spending_limits`` (the broker's limits, set on the portal or by
another wallet, taken into this one), ``spending_report`` (limits and
today's spending per currency) and the per-click check every payment makes
(:meth:`Limits.check_click`). The daily limit is counted in the transaction
that moves a coin's index (:mod:`ewallet_client.store.ranges`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ewallet_client.domain import CoinState
from ewallet_client.store import KEEP, Keep
from ewallet_client.wallet.ports import WalletPorts
from netpay.encoding import check_currency
from netpay.errors import NetPayError
from netpay.header import Challenge
from netpay.spending import SpendingLimits, check_spend, utc_day
from netpay.v1 import broker_pb2

__all__ = ["Limits"]


class Limits:
    """Spending limits, here and at the broker."""

    def __init__(self, ports: WalletPorts) -> None:
        self._ports = ports
        self._uow = ports.uow
        # Why the last set_spending_limits could not reach the broker (None: it did).
        self.sync_error: str | None = None

    def set_spending_limits(
        self,
        currency: str,
        *,
        max_click_minor: int | Keep | None = KEEP,
        max_day_minor: int | Keep | None = KEEP,
    ) -> SpendingLimits:
        """Set (an int), clear (None) or keep (``KEEP``) the limits in ``currency``.

        The values are checked by :class:`netpay.spending.SpendingLimits`.
        """
        check_currency(currency)
        with self._uow() as unit:
            limits = unit.spending.set_limits(
                currency,
                now_ms=self._ports.clock.now_ms(),
                max_click_minor=max_click_minor,
                max_day_minor=max_day_minor,
            )
            unit.commit()
        self.sync_error = None
        st = self._ports.link.settings()
        if st.token and st.broker_addr:
            # One set of limits: the broker keeps them too (for server-side coins
            # and for this reader's other wallets). The wallet's copy rules here.
            try:
                self._push(limits)
            except NetPayError as err:
                self.sync_error = f"{err.code}: {err.detail}"
        return limits

    def _push(self, limits: SpendingLimits) -> None:
        msg = broker_pb2.SpendingLimit(currency=limits.currency)
        if limits.max_click_minor is not None:
            msg.max_click_minor = limits.max_click_minor
        if limits.max_day_minor is not None:
            msg.max_day_minor = limits.max_day_minor
        link = self._ports.link
        link.broker().set_spending_limits(link.token(), msg)

    def sync_spending_limits(self) -> list[SpendingLimits]:
        """Take the limits kept at the broker (set on the portal or by another wallet)
        into this wallet; they rule its own coins from then on."""
        link = self._ports.link
        account = link.broker().get_account(link.token())
        taken = []
        for lim in account.limits:
            check_currency(lim.currency)
            with self._uow() as unit:
                taken.append(
                    unit.spending.set_limits(
                        lim.currency,
                        now_ms=self._ports.clock.now_ms(),
                        max_click_minor=lim.max_click_minor
                        if lim.HasField("max_click_minor")
                        else None,
                        max_day_minor=lim.max_day_minor if lim.HasField("max_day_minor") else None,
                    )
                )
                unit.commit()
        return taken

    def spending_report(self, currency: str | None = None) -> list[dict[str, object]]:
        """Limits and today's spending (UTC) per currency, as JSON-ready objects.

        With ``currency``, that one; else every currency with a limit,
        spending today or a coin (EUR when there is none).
        """
        day = utc_day(self._ports.clock.now_ms())
        with self._uow(read_only=True) as unit:
            spent = unit.spending.day(day)
            limits = {lim.currency: lim for lim in unit.spending.all_limits()}
        if currency is not None:
            check_currency(currency)
            currencies = [currency]
        else:
            with self._uow() as unit:
                coins = unit.coins.all()
            held = {c.currency for c in coins if c.state is CoinState.ACTIVE}
            currencies = sorted(set(limits) | set(spent) | held) or ["EUR"]
        out: list[dict[str, object]] = []
        for cur in currencies:
            lim = limits.get(cur, SpendingLimits(cur))
            spent_minor, payments = spent.get(cur, (0, 0))
            out.append(
                {
                    "currency": cur,
                    "max_click_minor": lim.max_click_minor,
                    "max_day_minor": lim.max_day_minor,
                    "day": datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat(),
                    "spent_today_minor": spent_minor,
                    "payments_today": payments,
                    "left_today_minor": None
                    if lim.max_day_minor is None
                    else max(0, lim.max_day_minor - spent_minor),
                }
            )
        return out

    def check_click(self, challenge: Challenge) -> None:
        """The reader's per-click limit on a price (for clicks paid from a window too)."""
        with self._uow(read_only=True) as unit:
            limits = unit.spending.limits(challenge.currency)
        if limits is not None and limits.max_click_minor is not None:
            # The click part of the one rule; the day was counted when paid.
            check_spend(replace(limits, max_day_minor=None), challenge.amount_minor, 0)
