"""Auto-load: the reader's standing agreement to buy a coin when the balance runs low.

Use cases: ``set_autoload``, ``autoload_off``, ``autoload_agreements`` and
the run after a payment (:meth:`Autoload.after_payment`): at most one
purchase per payment, by :meth:`ewallet_client.wallet.coins.Coins.buy`'s
path (a pending coin, BuyCoin, the touchstone checks). A failed auto-load
never fails the payment; when no coin can pay at all, one auto-load and one
more try (:meth:`Autoload.allocate`).
"""

from __future__ import annotations

from collections.abc import Callable

from ewallet_client.domain import CoinState, CoinView
from ewallet_client.store import MAX_AUTOLOAD_BELOW_MINOR, Allocation, AutoloadAgreement
from ewallet_client.wallet.coins import Coins, new_coin
from ewallet_client.wallet.ports import WalletPorts, log
from ewallet_client.wallet.results import AutoloadResult
from netpay.encoding import check_currency
from netpay.errors import Insufficient, InvalidArgument, NetPayError, NotFound

__all__ = ["Autoload"]


class Autoload:
    """The auto-load agreements and the purchases they make."""

    def __init__(self, ports: WalletPorts, coins: Coins) -> None:
        self._ports = ports
        self._uow = ports.uow
        self._notes = ports.notes
        self._coins = coins

    def set_autoload(
        self, currency: str, below_minor: int, units: int, unit_value_minor: int = 1
    ) -> AutoloadAgreement:
        """A standing agreement: buy a coin of ``units`` words when a payment leaves
        the usable balance in ``currency`` below ``below_minor``.

        The coin must be worth at least the threshold (else one purchase would
        not lift the balance over it and every payment would buy again).
        """
        self._coins.check_coin_terms(units, unit_value_minor, currency)
        if (
            isinstance(below_minor, bool)
            or not isinstance(below_minor, int)
            or not 1 <= below_minor <= MAX_AUTOLOAD_BELOW_MINOR
        ):
            raise InvalidArgument(f"the threshold is 1..{MAX_AUTOLOAD_BELOW_MINOR} minor units")
        if units * unit_value_minor < below_minor:
            raise InvalidArgument(
                f"the auto-load coin ({units} x {unit_value_minor} minor units) must be worth "
                f"at least the threshold ({below_minor}): else every payment would buy again"
            )
        with self._uow() as unit:
            agreement = unit.autoload.set(
                currency,
                below_minor=below_minor,
                units=units,
                unit_value_minor=unit_value_minor,
                now_ms=self._ports.clock.now_ms(),
            )
            unit.commit()
            return agreement

    def autoload_off(self, currency: str) -> AutoloadAgreement | None:
        """End the agreement in ``currency`` (None: there was none).

        A purchase it started and the broker has not confirmed is still
        completed after the next payment (same request id).
        """
        check_currency(currency)
        with self._uow() as unit:
            agreement = unit.autoload.off(currency)
            unit.commit()
            return agreement

    def autoload_agreements(self) -> list[AutoloadAgreement]:
        """The agreements in force, by currency."""
        with self._uow(read_only=True) as unit:
            return unit.autoload.all()

    def autoload(self, currency: str) -> AutoloadAgreement | None:
        """The agreement in ``currency``, in force or off (None: there is none)."""
        with self._uow(read_only=True) as unit:
            return unit.autoload.get(currency)

    def after_payment(self, currency: str) -> None:
        """A payment was made: run the auto-load agreement (at most once per payment)."""
        result = self._run(currency)
        if result is not None:
            self._notes.autoloads.append(result)

    def allocate(self, currency: str, allocate: Callable[[], Allocation]) -> Allocation:
        """``allocate()``; when no coin can pay (``insufficient``), auto-load and try once more."""
        try:
            return allocate()
        except Insufficient as exc:
            result = self._run(currency)
            if result is None:
                raise
            self._notes.autoloads.append(result)
            if result.error is not None:
                raise Insufficient(
                    f"{exc.detail}; the auto-load failed: {result.error.code}: "
                    f"{result.error.detail}"
                ) from exc
            return allocate()

    def _due(self, currency: str) -> AutoloadAgreement | None:
        """The agreement, when it has a purchase pending or the balance is below it."""
        if self._notes.autoload_ran:
            return None
        skew_ms = self._ports.skew_ms()
        with self._uow(read_only=True) as unit:
            agreement = unit.autoload.get(currency)
            if agreement is None or agreement.pending:
                return agreement
            if not agreement.enabled:
                return None
            usable_minor = unit.coins.usable_value_minor(
                currency, now_ms=self._ports.clock.now_ms(), skew_ms=skew_ms
            )
        return agreement if usable_minor < agreement.below_minor else None

    def _run(self, currency: str) -> AutoloadResult | None:
        """At most one auto-load purchase per payment; never raises a NetPayError.

        The agreement's coin still pending (broker down, lost reply, crash)
        is retried with its request id; else, when the usable balance is below
        the threshold, a new coin is stored as pending (a compare-and-set on
        the agreement) and bought — :meth:`Coins.buy`'s path: the same pending
        coin, BuyCoin and touchstone checks.
        """
        agreement = self._due(currency)
        if agreement is None:
            return None
        self._notes.autoload_ran = True
        now_ms = self._ports.clock.now_ms()
        ecoin_id: str | None = agreement.last_ecoin_id if agreement.pending else None
        try:
            token = self._ports.link.token()
            client = self._ports.link.broker()
            with self._uow(read_only=True) as unit:
                pending = unit.autoload.pending_coin(currency)
            if pending is None:
                coin = new_coin(agreement.units, agreement.unit_value_minor, currency)
                skew_ms = self._ports.skew_ms()
                with self._uow() as unit:
                    claimed = unit.autoload.claim(coin, now_ms=now_ms, skew_ms=skew_ms)
                    unit.commit()
                self._ports.keep_private()
                if claimed is None:  # nothing due any more (another process bought)
                    return None
                pending = claimed[0]
            else:
                log.debug("retrying the auto-load purchase of pending coin %s", pending.ecoin_id)
            ecoin_id = pending.ecoin_id
            bought = self._coins.complete_purchase(client, token, pending)
        except NetPayError as err:
            done = self._bought_meanwhile(ecoin_id)
            if done is None:
                self._attempted(currency, now_ms, ecoin_id, f"{err.code}: {err.detail}")
                log.debug("auto-load in %s failed: %s: %s", currency, err.code, err.detail)
                return AutoloadResult(currency, ecoin_id, None, err)
            bought = done
        self._attempted(currency, now_ms, bought.ecoin_id, None)
        log.debug("auto-load in %s bought coin %s", currency, bought.ecoin_id)
        return AutoloadResult(currency, bought.ecoin_id, bought)

    def _attempted(
        self, currency: str, now_ms: int, ecoin_id: str | None, error: str | None
    ) -> None:
        with self._uow() as unit:
            unit.autoload.attempted(currency, now_ms=now_ms, ecoin_id=ecoin_id, error=error)
            unit.commit()

    def _bought_meanwhile(self, ecoin_id: str | None) -> CoinView | None:
        """The coin if it is active after all (another process completed the purchase)."""
        if ecoin_id is None:
            return None
        try:
            coin = self._coins.coin(ecoin_id)
        except NotFound:
            return None
        return coin if coin.state is CoinState.ACTIVE else None
