"""Server-side wallet sessions (``vendor_wallet_sessions``): a reader signed in
at this newspaper with a broker-kept wallet, found by the SHA-256 of the
``netpay_wallet`` cookie handle."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vendor.storage.tables import WalletSessionRow, rowcount

__all__ = ["WalletSession", "WalletSessionRepo"]


@dataclass(frozen=True)
class WalletSession:
    ecoin_id: str
    grant_id: str
    grant: bytes
    created_at_ms: int
    expires_at_ms: int


class WalletSessionRepo:
    """The signed-in readers' sessions, in one unit of work (the unit commits)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, handle_sha256: bytes, wallet: WalletSession) -> None:
        self._session.add(
            WalletSessionRow(
                handle_sha256=handle_sha256,
                ecoin_id=wallet.ecoin_id,
                grant_id=wallet.grant_id,
                grant=wallet.grant,
                created_at_ms=wallet.created_at_ms,
                expires_at_ms=wallet.expires_at_ms,
            )
        )
        self._session.flush()

    def get(self, handle_sha256: bytes) -> WalletSession | None:
        row = self._session.scalars(
            select(WalletSessionRow).where(WalletSessionRow.handle_sha256 == handle_sha256)
        ).first()
        if row is None:
            return None
        return WalletSession(
            ecoin_id=row.ecoin_id,
            grant_id=row.grant_id,
            grant=row.grant,
            created_at_ms=row.created_at_ms,
            expires_at_ms=row.expires_at_ms,
        )

    def delete_expired(self, now_ms: int) -> int:
        """Forget sessions that expired before ``now_ms``; how many."""
        result = self._session.execute(
            delete(WalletSessionRow)
            .where(WalletSessionRow.expires_at_ms <= now_ms)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)
