"""The double-entry ledger: accounts, balanced transactions, corrections."""

from __future__ import annotations

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from broker.domain import (
    AccountKind,
    AccountRef,
    LedgerEntry,
    Transaction,
    assert_balanced,
)
from broker.storage.tables import (
    AccountRow,
    CorrectionRow,
    EntryRow,
    TransactionRow,
)
from netpay.errors import Conflict

__all__ = ["LedgerRepo"]


class LedgerRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def account_id(self, ref: AccountRef, *, for_update: bool = False) -> int:
        """The account's id, made on first use."""
        stmt = select(AccountRow.account_id).where(
            AccountRow.kind == ref.kind.value,
            AccountRow.owner == ref.owner,
            AccountRow.currency == ref.currency,
        )
        if for_update:
            stmt = stmt.with_for_update()
        found = self._s.scalars(stmt).first()
        if found is not None:
            return found
        row = AccountRow(kind=ref.kind.value, owner=ref.owner, currency=ref.currency)
        self._s.add(row)
        self._s.flush()
        return row.account_id

    def balance_minor(self, ref: AccountRef, *, for_update: bool = False) -> int:
        """The sum of the account's entries (locks the account row when asked)."""
        account_id = self.account_id(ref, for_update=for_update)
        total = self._s.scalar(
            select(func.coalesce(func.sum(EntryRow.amount_minor), 0)).where(
                EntryRow.account_id == account_id
            )
        )
        return int(total or 0)

    def balances_of(self, kind: AccountKind, owner: str) -> dict[str, int]:
        """Per currency, the balance of each account of ``owner``."""
        rows = self._s.execute(
            select(AccountRow.currency, func.coalesce(func.sum(EntryRow.amount_minor), 0))
            .select_from(AccountRow)
            .outerjoin(EntryRow, EntryRow.account_id == AccountRow.account_id)
            .where(AccountRow.kind == kind.value, AccountRow.owner == owner)
            .group_by(AccountRow.currency)
            .order_by(AccountRow.currency)
        ).all()
        return {currency: int(total) for currency, total in rows}

    def post(self, tx: Transaction) -> int:
        """Write a balanced transaction; returns its id."""
        assert_balanced(tx.entries)
        row = TransactionRow(kind=tx.kind, idempotency_key=tx.idempotency_key, at_ms=tx.at_ms)
        self._s.add(row)
        self._s.flush()
        for entry in tx.entries:
            self._s.add(
                EntryRow(
                    transaction_id=row.transaction_id,
                    account_id=self.account_id(entry.account),
                    currency=entry.account.currency,
                    amount_minor=entry.amount_minor,
                )
            )
        self._s.flush()
        return row.transaction_id

    def compensate(self, transaction_id: int, *, reason: str, at_ms: int) -> int:
        """Correct a posted transaction the only way the ledger allows: a new one with
        every entry negated (kind ``correction``, key ``correction:<id>``, so it is
        posted at most once). Entries themselves are never changed. Returns its id."""
        original = self._s.get(TransactionRow, transaction_id)
        if original is None:
            raise Conflict(f"no ledger transaction {transaction_id}")
        rows = self._s.execute(
            select(AccountRow, EntryRow.amount_minor)
            .join(EntryRow, EntryRow.account_id == AccountRow.account_id)
            .where(EntryRow.transaction_id == transaction_id)
            .order_by(EntryRow.entry_id)
        ).all()
        entries = tuple(
            LedgerEntry(
                AccountRef(AccountKind(account.kind), account.owner, account.currency), -amount
            )
            for account, amount in rows
        )
        correction_id = self.post(
            Transaction("correction", f"correction:{transaction_id}", at_ms, entries)
        )
        self._s.add(
            CorrectionRow(
                transaction_id=transaction_id,
                correction_id=correction_id,
                reason=reason[:400],
                at_ms=at_ms,
            )
        )
        self._s.flush()
        return correction_id

    def unbalanced_transactions(self) -> list[tuple[int, str]]:
        """Every (transaction id, currency) whose entries do not sum to 0 (should be none)."""
        rows = self._s.execute(
            select(EntryRow.transaction_id, EntryRow.currency)
            .group_by(EntryRow.transaction_id, EntryRow.currency)
            .having(func.sum(EntryRow.amount_minor) != 0)
        ).all()
        return [(int(t), str(c)) for t, c in rows]
