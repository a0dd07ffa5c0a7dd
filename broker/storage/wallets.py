"""Server-side wallets: sealed chains, sign-in failures, one-time codes, grants, sessions."""

from __future__ import annotations

from sqlalchemy import (
    delete,
    select,
    update,
)
from sqlalchemy.orm import Session

from broker.storage.cas import rowcount
from broker.storage.tables import (
    ServerWalletRow,
    WalletCodeRow,
    WalletGrantRow,
    WalletSessionRow,
    WalletSigninFailureRow,
)

__all__ = ["WalletRepo"]


class WalletRepo:
    """Server-side wallets: sealed chains, sign-in failures, codes, grants, sessions."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, row: ServerWalletRow) -> None:
        self._s.add(row)
        self._s.flush()

    def get(self, ecoin_id: str) -> ServerWalletRow | None:
        return self._s.scalars(
            select(ServerWalletRow).where(ServerWalletRow.ecoin_id == ecoin_id)
        ).first()

    # sign-in failures

    def recent_failures(self, ecoin_id: str, since_ms: int) -> list[int]:
        return list(
            self._s.scalars(
                select(WalletSigninFailureRow.at_ms)
                .where(
                    WalletSigninFailureRow.ecoin_id == ecoin_id,
                    WalletSigninFailureRow.at_ms >= since_ms,
                )
                .order_by(WalletSigninFailureRow.at_ms)
            )
        )

    def add_failure(self, ecoin_id: str, now_ms: int) -> None:
        self._s.add(WalletSigninFailureRow(ecoin_id=ecoin_id, at_ms=now_ms))

    def clear_failures(self, ecoin_id: str) -> None:
        self._s.execute(
            delete(WalletSigninFailureRow).where(WalletSigninFailureRow.ecoin_id == ecoin_id)
        )

    def prune_failures(self, before_ms: int) -> None:
        self._s.execute(
            delete(WalletSigninFailureRow).where(WalletSigninFailureRow.at_ms < before_ms)
        )

    # one-time codes

    def add_code(self, row: WalletCodeRow, now_ms: int) -> None:
        self._s.execute(delete(WalletCodeRow).where(WalletCodeRow.expires_at_ms <= now_ms))
        self._s.add(row)
        self._s.flush()

    def use_code(self, code_sha256: bytes, vendor_id: str, now_ms: int) -> str | None:
        """Compare-and-set: mark the caller's live, unused code used; its coin, or None."""
        ecoin_id = self._s.scalars(
            select(WalletCodeRow.ecoin_id).where(
                WalletCodeRow.code_sha256 == code_sha256,
                WalletCodeRow.vendor_id == vendor_id,
                WalletCodeRow.used_at_ms.is_(None),
                WalletCodeRow.expires_at_ms > now_ms,
            )
        ).first()
        if ecoin_id is None:
            return None
        result = self._s.execute(
            update(WalletCodeRow)
            .where(
                WalletCodeRow.code_sha256 == code_sha256,
                WalletCodeRow.vendor_id == vendor_id,
                WalletCodeRow.used_at_ms.is_(None),
                WalletCodeRow.expires_at_ms > now_ms,
            )
            .values(used_at_ms=now_ms)
            .execution_options(synchronize_session=False)
        )
        return ecoin_id if rowcount(result) == 1 else None

    # grants

    def add_grant(self, row: WalletGrantRow) -> None:
        self._s.add(row)
        self._s.flush()

    def grant(self, grant_id: str) -> WalletGrantRow | None:
        return self._s.scalars(
            select(WalletGrantRow)
            .where(WalletGrantRow.grant_id == grant_id)
            .execution_options(populate_existing=True)
        ).first()

    def draw_from_grant(self, grant_id: str, drawn_before: int, units: int) -> bool:
        """Compare-and-set the grant's drawn units; False when it moved meanwhile."""
        result = self._s.execute(
            update(WalletGrantRow)
            .where(
                WalletGrantRow.grant_id == grant_id,
                WalletGrantRow.drawn_units == drawn_before,
                WalletGrantRow.drawn_units + units <= WalletGrantRow.max_units,
            )
            .values(drawn_units=drawn_before + units)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    # browser sessions

    def add_session(self, row: WalletSessionRow, now_ms: int) -> None:
        self._s.execute(delete(WalletSessionRow).where(WalletSessionRow.expires_at_ms <= now_ms))
        self._s.add(row)
        self._s.flush()

    def session_coin(self, session_sha256: bytes, now_ms: int) -> str | None:
        return self._s.scalars(
            select(WalletSessionRow.ecoin_id).where(
                WalletSessionRow.session_sha256 == session_sha256,
                WalletSessionRow.expires_at_ms > now_ms,
            )
        ).first()

    def delete_session(self, session_sha256: bytes) -> None:
        self._s.execute(
            delete(WalletSessionRow).where(WalletSessionRow.session_sha256 == session_sha256)
        )
