"""The bank adapter: every macro-payment between the outside world and the broker.

NetPay's money enters when a reader buys a coin and leaves when the broker
pays a vendor or refunds a reader. :class:`broker.services.ports.Bank` is
that seam; the built-in :class:`DemoBank` keeps the readers' and vendors'
bank accounts in the broker's own double-entry ledger, so a movement and
the books it changes commit in one transaction. A real bank adapter would post the same ledger
transactions and call its bank (idempotently, by the same ``key``) from an
outbox; nothing else in the broker changes.

Every method runs inside the caller's unit of work, posts one balanced
transaction whose idempotency key is ``key`` (unique per movement: a retry
with the same key cannot post twice), and raises a typed NetPayError
without posting anything when it cannot move the money.
"""

from __future__ import annotations

from broker.domain import AccountRef, LedgerEntry, Transaction
from broker.storage import Repos
from netpay.errors import Insufficient

__all__ = ["DemoBank"]


class DemoBank:
    """The built-in demo bank: its accounts live in the broker's own ledger."""

    def __init__(self, opening_deposit_minor: int = 0) -> None:
        self.opening_deposit_minor = opening_deposit_minor

    def open_reader_account(
        self, repos: Repos, reader_id: str, currency: str, key: str, at_ms: int
    ) -> None:
        account = AccountRef.reader(reader_id, currency)
        repos.ledger.account_id(account)
        if self.opening_deposit_minor > 0:
            repos.ledger.post(
                Transaction.transfer(
                    "demo_deposit",
                    key,
                    at_ms,
                    source=AccountRef.demo_funding(currency),
                    destination=account,
                    amount_minor=self.opening_deposit_minor,
                )
            )

    def collect(
        self,
        repos: Repos,
        reader_id: str,
        amount_minor: int,
        currency: str,
        *,
        kind: str,
        key: str,
        at_ms: int,
        into: AccountRef | None = None,
    ) -> int:
        account = AccountRef.reader(reader_id, currency)
        balance_minor = repos.ledger.balance_minor(account, for_update=True)
        if balance_minor < amount_minor:
            raise Insufficient(
                f"this costs {amount_minor}, the balance is {balance_minor} "
                f"({currency} minor units)"
            )
        return repos.ledger.post(
            Transaction.transfer(
                kind,
                key,
                at_ms,
                source=account,
                destination=into or AccountRef.broker_float(currency),
                amount_minor=amount_minor,
            )
        )

    def pay_vendor(
        self, repos: Repos, vendor_id: str, amount_minor: int, currency: str, key: str, at_ms: int
    ) -> None:
        repos.ledger.post(
            Transaction.transfer(
                "payout",
                key,
                at_ms,
                source=AccountRef.vendor_payable(vendor_id, currency),
                destination=AccountRef.vendor_bank(vendor_id, currency),
                amount_minor=amount_minor,
            )
        )

    def refund_reader(
        self,
        repos: Repos,
        reader_id: str,
        currency: str,
        key: str,
        at_ms: int,
        *,
        from_float_minor: int,
        from_refund_balance_minor: int,
    ) -> None:
        entries = []
        if from_float_minor:
            entries.append(LedgerEntry(AccountRef.broker_float(currency), -from_float_minor))
        if from_refund_balance_minor:
            entries.append(
                LedgerEntry(
                    AccountRef.reader_refund(reader_id, currency), -from_refund_balance_minor
                )
            )
        total = from_float_minor + from_refund_balance_minor
        if total:
            entries.append(LedgerEntry(AccountRef.reader(reader_id, currency), total))
            repos.ledger.post(Transaction("expiry_refund", key, at_ms, tuple(entries)))
