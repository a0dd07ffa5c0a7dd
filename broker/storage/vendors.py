"""Vendors: enrollment, tokens, keys and certificates."""

from __future__ import annotations

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from broker.storage.tables import (
    VendorRow,
)

__all__ = ["VendorRepo"]


class VendorRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, vendor_id: str, *, for_update: bool = False) -> VendorRow | None:
        stmt = select(VendorRow).where(VendorRow.vendor_id == vendor_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self._s.scalars(stmt).first()

    def add(self, row: VendorRow) -> None:
        self._s.add(row)
        self._s.flush()

    def by_enrollment_token(self, token_sha256: bytes) -> VendorRow | None:
        return self._s.scalars(
            select(VendorRow)
            .where(VendorRow.enrollment_token_sha256 == token_sha256)
            .with_for_update()
        ).first()

    def by_vendor_token(self, token_sha256: bytes) -> VendorRow | None:
        return self._s.scalars(
            select(VendorRow).where(VendorRow.vendor_token_sha256 == token_sha256)
        ).first()

    def public_key(self, vendor_id: str) -> bytes | None:
        return self._s.scalars(
            select(VendorRow.public_key).where(VendorRow.vendor_id == vendor_id)
        ).first()

    def with_certificates(self, limit: int) -> list[VendorRow]:
        """Vendors that have been certified at least once, by id."""
        return list(
            self._s.scalars(
                select(VendorRow)
                .where(VendorRow.certificate.is_not(None))
                .order_by(VendorRow.vendor_id)
                .limit(limit)
            )
        )

    def flush(self) -> None:
        self._s.flush()
