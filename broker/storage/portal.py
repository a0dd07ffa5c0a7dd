"""The web portal's records: profiles, browser sessions, payment instruments."""

from __future__ import annotations

from sqlalchemy import (
    delete,
    select,
    update,
)
from sqlalchemy.orm import Session

from broker.storage.cas import rowcount
from broker.storage.tables import (
    PaymentInstrumentRow,
    PortalSessionRow,
    ReaderProfileRow,
)

__all__ = ["PortalRepo"]


class PortalRepo:
    """Profiles, browser sessions and payment instruments of the web portal."""

    def __init__(self, session: Session) -> None:
        self._s = session

    # profiles

    def profile(self, reader_id: str) -> ReaderProfileRow | None:
        return self._s.scalars(
            select(ReaderProfileRow).where(ReaderProfileRow.reader_id == reader_id)
        ).first()

    def save_profile(
        self,
        reader_id: str,
        display_name: str | None,
        email: str | None,
        now_ms: int,
        *,
        erased: bool = False,
    ) -> None:
        row = self.profile(reader_id)
        if row is None:
            row = ReaderProfileRow(reader_id=reader_id)
            self._s.add(row)
        row.display_name = display_name
        row.email = email
        row.updated_at_ms = now_ms
        row.erased_at_ms = now_ms if erased else None
        self._s.flush()

    # sessions

    def add_session(
        self, session_sha256: bytes, reader_id: str, now_ms: int, expires_ms: int
    ) -> None:
        self._s.add(
            PortalSessionRow(
                session_sha256=session_sha256,
                reader_id=reader_id,
                created_at_ms=now_ms,
                expires_at_ms=expires_ms,
            )
        )
        self._s.flush()

    def session_reader(self, session_sha256: bytes, now_ms: int) -> str | None:
        return self._s.scalars(
            select(PortalSessionRow.reader_id).where(
                PortalSessionRow.session_sha256 == session_sha256,
                PortalSessionRow.expires_at_ms > now_ms,
            )
        ).first()

    def delete_session(self, session_sha256: bytes) -> None:
        self._s.execute(
            delete(PortalSessionRow).where(PortalSessionRow.session_sha256 == session_sha256)
        )

    def delete_sessions(self, reader_id: str, *, keep: bytes | None = None) -> None:
        """End every session of the reader, except ``keep``."""
        stmt = delete(PortalSessionRow).where(PortalSessionRow.reader_id == reader_id)
        if keep is not None:
            stmt = stmt.where(PortalSessionRow.session_sha256 != keep)
        self._s.execute(stmt)

    def prune_sessions(self, now_ms: int) -> None:
        self._s.execute(delete(PortalSessionRow).where(PortalSessionRow.expires_at_ms <= now_ms))

    # payment instruments

    def instruments(self, reader_id: str) -> list[PaymentInstrumentRow]:
        return list(
            self._s.scalars(
                select(PaymentInstrumentRow)
                .where(PaymentInstrumentRow.reader_id == reader_id)
                .order_by(PaymentInstrumentRow.id)
                .execution_options(populate_existing=True)
            )
        )

    def add_instrument(self, row: PaymentInstrumentRow) -> None:
        self._s.add(row)
        self._s.flush()

    def delete_instrument(self, reader_id: str, instrument_id: str) -> bool:
        result = self._s.execute(
            delete(PaymentInstrumentRow).where(
                PaymentInstrumentRow.reader_id == reader_id,
                PaymentInstrumentRow.instrument_id == instrument_id,
            )
        )
        return rowcount(result) == 1

    def delete_instruments(self, reader_id: str) -> None:
        self._s.execute(
            delete(PaymentInstrumentRow).where(PaymentInstrumentRow.reader_id == reader_id)
        )

    def set_default(self, reader_id: str, instrument_id: str) -> bool:
        """Make one instrument the default (and no other); False if it is not the reader's."""
        self._s.execute(
            update(PaymentInstrumentRow)
            .where(
                PaymentInstrumentRow.reader_id == reader_id,
                PaymentInstrumentRow.instrument_id != instrument_id,
            )
            .values(is_default=False)
            .execution_options(synchronize_session=False)
        )
        result = self._s.execute(
            update(PaymentInstrumentRow)
            .where(
                PaymentInstrumentRow.reader_id == reader_id,
                PaymentInstrumentRow.instrument_id == instrument_id,
            )
            .values(is_default=True)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1
