"""The auto-load aggregate: the reader's standing agreement per currency.

An agreement buys a coin when a payment leaves the usable balance below its
threshold. ``enabled`` False (``--off``) keeps the row, so a purchase still
pending (``last_request_id``) is completed after the next payment all the
same. :meth:`AutoloadRepo.claim` stores the next coin to buy with a
compare-and-set on the agreement, so two processes never both start one.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ewallet_client.store.coins import CoinRepo
from ewallet_client.store.records import AutoloadAgreement, NewCoin, PendingCoin
from ewallet_client.store.tables import MAX_ERROR_CHARS, AutoloadRow, rowcount
from netpay.spending import MAX_LIMIT_MINOR

__all__ = ["MAX_AUTOLOAD_BELOW_MINOR", "AutoloadRepo"]

MAX_AUTOLOAD_BELOW_MINOR = MAX_LIMIT_MINOR


class AutoloadRepo:
    """Auto-load agreements; the coins they buy are in the :class:`CoinRepo`."""

    def __init__(self, session: Session, coins: CoinRepo) -> None:
        self._s = session
        self._coins = coins

    def _agreement(self, row: AutoloadRow) -> AutoloadAgreement:
        return AutoloadAgreement(
            currency=row.currency,
            enabled=row.enabled,
            below_minor=row.below_minor,
            units=row.units,
            unit_value_minor=row.unit_value_minor,
            created_at_ms=row.created_at_ms,
            last_request_id=row.last_request_id,
            last_attempt_at_ms=row.last_attempt_at_ms,
            last_ecoin_id=row.last_ecoin_id,
            last_error=row.last_error,
            pending=self._coins.pending_by_request(row.last_request_id) is not None,
        )

    def set(
        self,
        currency: str,
        *,
        below_minor: int,
        units: int,
        unit_value_minor: int,
        now_ms: int,
    ) -> AutoloadAgreement:
        """Make (or change) the agreement in ``currency``; the caller checked the terms."""
        assert 1 <= below_minor <= MAX_AUTOLOAD_BELOW_MINOR and units >= 1
        assert unit_value_minor >= 1
        row = self._s.get(AutoloadRow, currency)
        if row is None:
            row = AutoloadRow(currency=currency, last_request_id=None)
            self._s.add(row)
        row.enabled = True
        row.below_minor = below_minor
        row.units = units
        row.unit_value_minor = unit_value_minor
        row.created_at_ms = now_ms
        row.last_error = None
        self._s.flush()
        return self._agreement(row)

    def off(self, currency: str) -> AutoloadAgreement | None:
        """End the agreement (a purchase still pending is completed all the same)."""
        row = self._s.get(AutoloadRow, currency)
        if row is None:
            return None
        row.enabled = False
        self._s.flush()
        return self._agreement(row)

    def get(self, currency: str) -> AutoloadAgreement | None:
        """The agreement in ``currency`` (enabled or not), if any."""
        row = self._s.get(AutoloadRow, currency)
        return None if row is None else self._agreement(row)

    def all(self, *, enabled_only: bool = True) -> list[AutoloadAgreement]:
        query = select(AutoloadRow).order_by(AutoloadRow.currency)
        if enabled_only:
            query = query.where(AutoloadRow.enabled.is_(True))
        return [self._agreement(r) for r in self._s.scalars(query).all()]

    def pending_coin(self, currency: str) -> PendingCoin | None:
        """The agreement's latest coin while its purchase is not confirmed."""
        row = self._s.get(AutoloadRow, currency)
        return None if row is None else self._coins.pending_by_request(row.last_request_id)

    def claim(self, coin: NewCoin, *, now_ms: int, skew_ms: int) -> tuple[PendingCoin, bool] | None:
        """Store ``coin`` as the agreement's next purchase, if one is due.

        Returns ``(pending coin, is_new)``: the agreement's coin still pending
        if there is one (``coin`` is then not stored: the same request id is
        retried), else ``coin`` when the agreement is enabled, has these
        terms and the usable value in its currency is below the threshold;
        None when nothing is due. The agreement's ``last_request_id`` moves
        with a compare-and-set, so two processes never both start a purchase.
        """
        row = self._s.get(AutoloadRow, coin.currency)
        if row is None:
            return None
        pending = self._coins.pending_by_request(row.last_request_id)
        if pending is not None:
            return pending, False
        if (
            not row.enabled
            or (row.units, row.unit_value_minor) != (coin.n, coin.unit_value_minor)
            or self._coins.usable_value_minor(coin.currency, now_ms=now_ms, skew_ms=skew_ms)
            >= row.below_minor
        ):
            return None
        previous = row.last_request_id
        same = (
            AutoloadRow.last_request_id.is_(None)
            if previous is None
            else AutoloadRow.last_request_id == previous
        )
        moved = rowcount(
            self._s.execute(
                update(AutoloadRow)
                .where(AutoloadRow.currency == coin.currency, same)
                .values(
                    last_request_id=coin.request_id,
                    last_attempt_at_ms=now_ms,
                    last_ecoin_id=coin.ecoin_id,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if moved != 1:  # another process started a purchase meanwhile (PostgreSQL)
            return None
        return self._coins.insert_pending(coin, now_ms), True

    def attempted(
        self, currency: str, *, now_ms: int, ecoin_id: str | None, error: str | None
    ) -> None:
        """Record how the agreement's latest purchase went (``error`` None: bought).

        ``ecoin_id`` None: the attempt failed before a coin was chosen.
        """
        values: dict[str, object] = {
            "last_attempt_at_ms": now_ms,
            "last_error": None if error is None else error[:MAX_ERROR_CHARS],
        }
        if ecoin_id is not None:
            values["last_ecoin_id"] = ecoin_id
        self._s.execute(
            update(AutoloadRow).where(AutoloadRow.currency == currency).values(**values)
        )
