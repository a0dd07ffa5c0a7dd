"""Readers: accounts, login tokens and the failed-login log."""

from __future__ import annotations

from sqlalchemy import (
    delete,
    select,
    update,
)
from sqlalchemy.orm import Session

from broker.storage.cas import rowcount
from broker.storage.tables import (
    LoginFailureRow,
    ReaderRow,
    ReaderTokenRow,
)

__all__ = ["ReaderRepo"]


class ReaderRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, reader_id: str, username: str, password_hash: str, now_ms: int) -> None:
        self._s.add(
            ReaderRow(
                reader_id=reader_id,
                username=username,
                password_hash=password_hash,
                created_at_ms=now_ms,
            )
        )
        self._s.flush()

    def by_username(self, username: str) -> ReaderRow | None:
        return self._s.scalars(select(ReaderRow).where(ReaderRow.username == username)).first()

    def get(self, reader_id: str, *, for_update: bool = False) -> ReaderRow | None:
        stmt = select(ReaderRow).where(ReaderRow.reader_id == reader_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self._s.scalars(stmt).first()

    def set_password_hash(self, reader_id: str, old_hash: str, new_hash: str) -> bool:
        """Compare-and-set the password hash; False when it changed meanwhile."""
        result = self._s.execute(
            update(ReaderRow)
            .where(ReaderRow.reader_id == reader_id, ReaderRow.password_hash == old_hash)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def delete_tokens(self, reader_id: str) -> None:
        """Revoke every API token of the reader."""
        self._s.execute(delete(ReaderTokenRow).where(ReaderTokenRow.reader_id == reader_id))

    def add_token(self, token_sha256: bytes, reader_id: str, now_ms: int, expires_ms: int) -> None:
        self._s.add(
            ReaderTokenRow(
                token_sha256=token_sha256,
                reader_id=reader_id,
                created_at_ms=now_ms,
                expires_at_ms=expires_ms,
            )
        )

    def reader_for_token(self, token_sha256: bytes, now_ms: int) -> str | None:
        return self._s.scalars(
            select(ReaderTokenRow.reader_id).where(
                ReaderTokenRow.token_sha256 == token_sha256,
                ReaderTokenRow.expires_at_ms > now_ms,
            )
        ).first()

    def prune_tokens(self, reader_id: str, now_ms: int) -> None:
        self._s.execute(
            delete(ReaderTokenRow).where(
                ReaderTokenRow.reader_id == reader_id, ReaderTokenRow.expires_at_ms <= now_ms
            )
        )

    def recent_failures(self, username: str, since_ms: int) -> list[int]:
        """Times of the failed logins for ``username`` since ``since_ms``, oldest first."""
        return list(
            self._s.scalars(
                select(LoginFailureRow.at_ms)
                .where(LoginFailureRow.username == username, LoginFailureRow.at_ms >= since_ms)
                .order_by(LoginFailureRow.at_ms)
            )
        )

    def add_failure(self, username: str, now_ms: int) -> None:
        self._s.add(LoginFailureRow(username=username, at_ms=now_ms))

    def clear_failures(self, username: str) -> None:
        self._s.execute(delete(LoginFailureRow).where(LoginFailureRow.username == username))

    def prune_failures(self, before_ms: int) -> None:
        self._s.execute(delete(LoginFailureRow).where(LoginFailureRow.at_ms < before_ms))
