"""Ledger and bank operations the other areas call, and the reader's balances.

- :meth:`Ledger.account_balances`: a reader's bank balance per currency
  (GetAccount, the portal);
- :meth:`Ledger.open_reader_accounts`: a new reader's accounts (register);
- :meth:`Ledger.settle_flags` and :meth:`Ledger.collect_coin`: before and
  for a purchase;
- :meth:`Ledger.pay_out`: the bank pays a vendor what it is owed (redeem);
- :meth:`Ledger.refund_expired_coin`: an expired coin's unclaimed value and
  the reader's refund balance go back to the reader.

Each runs inside the caller's unit of work (except the balances, a read).
"""

from __future__ import annotations

from broker.domain import AccountKind, AccountRef
from broker.services.ports import BrokerPorts
from broker.storage import Repos, StoredCoin
from netpay.errors import Insufficient, PermissionDenied

__all__ = ["Ledger"]


class Ledger:
    """The books as the other use cases move money in them."""

    def __init__(self, ports: BrokerPorts) -> None:
        self._ports = ports

    def account_balances(self, reader_id: str) -> dict[str, int]:
        """The reader's bank balance per currency (every offered currency listed)."""
        with self._ports.uow() as repos:
            balances = repos.ledger.balances_of(AccountKind.READER_BANK, reader_id)
        for currency in self._ports.currencies:
            balances.setdefault(currency, 0)
        return dict(sorted(balances.items()))

    def open_reader_accounts(self, repos: Repos, reader_id: str, now_ms: int) -> None:
        """A new reader's bank account in every offered currency (with the demo deposit)."""
        for currency in self._ports.currencies:
            self._ports.bank.open_reader_account(
                repos, reader_id, currency, f"demo-deposit:{reader_id}:{currency}", now_ms
            )

    def collect_coin(
        self,
        repos: Repos,
        reader_id: str,
        amount_minor: int,
        currency: str,
        ecoin_id: str,
        now_ms: int,
    ) -> int:
        """Debit the reader for a coin, into the broker float; the transaction id."""
        return self._ports.bank.collect(
            repos,
            reader_id,
            amount_minor,
            currency,
            kind="buy_coin",
            key=f"buy:{ecoin_id}",
            at_ms=now_ms,
        )

    def settle_flags(self, repos: Repos, reader_id: str, now_ms: int) -> None:
        """Before a purchase: a flagged reader's debt to the broker-loss account is
        debited from their account; PermissionDenied when it cannot be (nothing moves)."""
        bank = self._ports.bank
        for row in repos.redemption.flags(reader_id, for_update=True):
            owed = row.owed_minor - row.recovered_minor
            if owed <= 0:
                continue
            try:
                bank.collect(
                    repos,
                    reader_id,
                    owed,
                    row.currency,
                    kind="loss_recovery",
                    key=f"loss_recovery:{reader_id}:{row.currency}:{row.owed_minor}",
                    at_ms=now_ms,
                    into=AccountRef.broker_loss(row.currency),
                )
            except Insufficient as err:
                raise PermissionDenied(
                    f"words of your coin were spent twice; {owed} {row.currency} minor units "
                    "must be paid back before you buy a new coin"
                ) from err
            row.recovered_minor = row.owed_minor
            row.updated_at_ms = now_ms

    def pay_out(
        self, repos: Repos, vendor_id: str, batch_id: str, paid: dict[str, int], now_ms: int
    ) -> None:
        """The bank pays the vendor what it is owed in each currency this batch touched."""
        for currency in sorted(paid):
            owed = repos.ledger.balance_minor(
                AccountRef.vendor_payable(vendor_id, currency), for_update=True
            )
            if owed > 0:
                key = f"payout:{vendor_id}:{batch_id}:{currency}"
                self._ports.bank.pay_vendor(repos, vendor_id, owed, currency, key, now_ms)

    def refund_expired_coin(
        self, repos: Repos, stored: StoredCoin, unclaimed_minor: int, now_ms: int
    ) -> int:
        """Pay the reader of an expired coin its unclaimed value (from the float) and
        their refund balance; returns the refund balance paid."""
        refund_account = AccountRef.reader_refund(stored.owner, stored.currency)
        balance = repos.ledger.balance_minor(refund_account, for_update=True)
        self._ports.bank.refund_reader(
            repos,
            stored.owner,
            stored.currency,
            f"expiry_refund:{stored.view.ecoin_id}",
            now_ms,
            from_float_minor=unclaimed_minor,
            from_refund_balance_minor=max(balance, 0),
        )
        return max(balance, 0)
