"""A vendor's price, verified: the 402 challenge and the vendor's certificate.

Every payment starts here: :meth:`Quotes.quote` reads the challenge, checks
it names the wallet's broker and stays under the reader's cap, and finds the
vendor's certificate (cached for ``CERTIFICATE_CACHE_S``, else from the
broker), whose web origin must be the URL's. :meth:`Quotes.open_receipt`
opens a receipt with the key that certificate names (asking the broker
again when a cached one no longer verifies).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ewallet_client import http
from ewallet_client.domain import check_certificate, check_origin
from ewallet_client.store import Settings
from ewallet_client.wallet.ports import WalletPorts
from netpay.encoding import b64url_decode
from netpay.envelope import open_envelope
from netpay.errors import (
    LimitExceeded,
    Malformed,
    NetPayError,
    PermissionDenied,
    PreconditionFailed,
    SignatureInvalid,
)
from netpay.header import Challenge, parse_challenge
from netpay.money import Money
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "BALANCE_HEADER",
    "CERTIFICATE_CACHE_S",
    "JSON",
    "RECEIPT_HEADER",
    "Quote",
    "Quotes",
    "header_int",
    "receipt_bytes",
]

# A verified vendor certificate is reused for this long (within its validity),
# so a click needs no broker call; a vendor that moved is looked up again.
CERTIFICATE_CACHE_S = 3600
JSON = "application/json"
RECEIPT_HEADER = "NetPay-Receipt"
BALANCE_HEADER = "NetPay-Balance"


@dataclass(frozen=True)
class Quote:
    """A verified price: the challenge and the vendor's certificate."""

    url: str
    challenge: Challenge
    certificate: pb.VendorCertificate
    from_cache: bool


def header_int(resp: http.HttpResponse, name: str) -> int | None:
    value = resp.headers.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


def receipt_bytes(resp: http.HttpResponse) -> bytes:
    raw = resp.headers.get(RECEIPT_HEADER)
    if not raw:
        raise SignatureInvalid("the vendor sent no NetPay-Receipt")
    return b64url_decode(raw.strip(), max_len=16 * 1024)


class Quotes:
    """Challenges, vendor certificates and the receipts they verify."""

    def __init__(self, ports: WalletPorts) -> None:
        self._ports = ports
        self._link = ports.link

    def quote(self, url: str, resp: http.HttpResponse, max_amount_minor: int) -> Quote:
        raw = resp.headers.get("WWW-Authenticate")
        if not raw:
            raise Malformed("the vendor answered 402 without a NetPay challenge")
        challenge = parse_challenge(raw)
        st = self._link.settings()
        if st.broker_id is None:
            raise PreconditionFailed("this wallet has no broker: run `netpay wallet register`")
        if challenge.broker != st.broker_id:
            raise PermissionDenied(
                f"the vendor names broker {challenge.broker!r}; this wallet trusts {st.broker_id!r}"
            )
        if challenge.amount_minor > max_amount_minor:
            price = Money(challenge.amount_minor, challenge.currency)
            raise LimitExceeded(
                f"price {price} is above the cap of {max_amount_minor} minor units (--max-amount)"
            )
        cert, cached = self.certificate(challenge.realm, url, fresh=False)
        return Quote(url, challenge, cert, cached)

    def certificate(
        self, vendor_id: str, url: str, *, fresh: bool
    ) -> tuple[pb.VendorCertificate, bool]:
        """The vendor's verified certificate, whose web origin must be the URL's."""
        st = self._link.settings()
        assert st.broker_public_key is not None and st.broker_id is not None
        now_ms = self._ports.clock.now_ms()
        if not fresh:
            cached = self._cached(st, vendor_id, url, now_ms)
            if cached is not None:
                return cached, True
        envelope = self._link.broker().get_vendor_certificate(vendor_id)
        cert = open_envelope(envelope, pb.VendorCertificate, st.broker_public_key)
        check_certificate(cert, vendor_id=vendor_id, broker_id=st.broker_id, now_ms=now_ms)
        with self._ports.uow() as unit:
            unit.certificates.save(
                vendor_id,
                envelope.SerializeToString(),
                valid_until_ms=cert.valid_until_ms,
                now_ms=now_ms,
            )
            unit.commit()
        check_origin(url, cert.web_origin)
        return cert, False

    def _cached(
        self, st: Settings, vendor_id: str, url: str, now_ms: int
    ) -> pb.VendorCertificate | None:
        """The stored certificate if it is recent, verifies and still names the URL's origin."""
        assert st.broker_public_key is not None and st.broker_id is not None
        with self._ports.uow() as unit:
            stored = unit.certificates.get(
                vendor_id, fetched_after_ms=now_ms - CERTIFICATE_CACHE_S * 1000
            )
        if stored is None:
            return None
        try:
            cert = open_envelope(
                pb.Envelope.FromString(stored), pb.VendorCertificate, st.broker_public_key
            )
            check_certificate(cert, vendor_id=vendor_id, broker_id=st.broker_id, now_ms=now_ms)
            check_origin(url, cert.web_origin)
        except (NetPayError, DecodeError):
            return None  # moved or stale: ask the broker
        return cert

    def open_receipt(self, quote: Quote, env: pb.Envelope) -> pb.Receipt:
        """The receipt, signed by the key the broker certified for the vendor."""
        cert = quote.certificate
        try:
            return open_envelope(env, pb.Receipt, cert.public_key)
        except SignatureInvalid:
            if not quote.from_cache:
                raise
            # The cached certificate may predate a new vendor key: ask the broker.
            cert, _ = self.certificate(quote.challenge.realm, quote.url, fresh=True)
            return open_envelope(env, pb.Receipt, cert.public_key)
