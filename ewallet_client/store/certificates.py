"""The certificates aggregate: the newest verified VendorCertificate seen per vendor.

The wallet reuses a certificate fetched recently (a click then needs no
broker call) and asks the broker again when it is stale or does not verify.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ewallet_client.store.tables import CertificateRow

__all__ = ["CertificateRepo"]


class CertificateRepo:
    """Vendor certificate envelopes, by vendor id."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, vendor_id: str, *, fetched_after_ms: int) -> bytes | None:
        """The stored certificate envelope of a vendor, if fetched after the given time."""
        row = self._s.get(CertificateRow, vendor_id)
        if row is None or row.fetched_at_ms <= fetched_after_ms:
            return None
        return row.envelope

    def save(self, vendor_id: str, envelope: bytes, *, valid_until_ms: int, now_ms: int) -> None:
        row = self._s.get(CertificateRow, vendor_id)
        if row is None:
            row = CertificateRow(vendor_id=vendor_id)
            self._s.add(row)
        row.envelope = envelope
        row.valid_until_ms = valid_until_ms
        row.fetched_at_ms = now_ms
