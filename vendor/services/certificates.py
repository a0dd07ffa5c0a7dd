"""Other vendors' certificates: fetched from the broker, verified, cached until
expiry. Custody verifies a hand-off's holder with them; the gRPC servicer
checks a calling vendor's signature with their keys.
"""

from __future__ import annotations

import threading

from netpay.clock import Clock
from netpay.envelope import open_envelope
from netpay.errors import NotFound, PreconditionFailed, SignatureInvalid, Unauthenticated
from netpay.v1 import statements_pb2 as pb
from vendor.services.ports import BrokerClient, VendorIdentity

__all__ = ["CertificateBook"]

_MAX_CERTIFICATES = 1024


class CertificateBook:
    """Vendor certificates fetched from the broker, verified, cached until expiry."""

    def __init__(self, broker: BrokerClient, identity: VendorIdentity, clock: Clock) -> None:
        self._broker = broker
        self._identity = identity
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, pb.VendorCertificate] = {}

    def verify(self, envelope: pb.Envelope, vendor_id: str | None = None) -> pb.VendorCertificate:
        """Open a broker-signed VendorCertificate and check it is current."""
        cert = open_envelope(envelope, pb.VendorCertificate, self._identity.broker_public_key)
        if vendor_id is not None and cert.vendor_id != vendor_id:
            raise SignatureInvalid("the certificate names another vendor")
        if cert.broker_id and cert.broker_id != self._identity.broker_id:
            raise SignatureInvalid("the certificate names another broker")
        if cert.valid_until_ms <= self._clock.now_ms():
            raise PreconditionFailed(f"the certificate of {cert.vendor_id} has expired")
        return cert

    def certificate(self, vendor_id: str) -> pb.VendorCertificate:
        now = self._clock.now_ms()
        with self._lock:
            cached = self._cache.get(vendor_id)
        if cached is not None and cached.valid_until_ms > now:
            return cached
        try:
            envelope = self._broker.get_vendor_certificate(vendor_id)
        except NotFound as exc:
            raise Unauthenticated(f"unknown vendor {vendor_id}") from exc
        cert = self.verify(envelope, vendor_id)
        with self._lock:
            if len(self._cache) >= _MAX_CERTIFICATES:
                self._cache.clear()
            self._cache[vendor_id] = cert
        return cert

    def public_key(self, vendor_id: str) -> bytes:
        return bytes(self.certificate(vendor_id).public_key)
