"""Who is calling: readers (register, log in, tokens, the failed-login limit,
change password) and vendors (enrollment, registration, their certificates).

- RegisterReader, Login, the bearer tokens of readers and vendors
  (:meth:`Identity.authenticate_reader`, :meth:`Identity.authenticate_vendor`);
- :meth:`Identity.password_login`: the password check every sign-in shares
  (the portal's too, :mod:`broker.services.accounts`);
- ``netpay broker add-vendor`` (:func:`enroll_vendor`), RegisterVendor (a
  fresh certificate at every vendor start), GetVendorCertificate, and the
  certificates the portal's directory and wallet sign-in read.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from broker.services.common import (
    MAX_PASSWORD_CHARS,
    check_new_password,
    envelope,
    hash_token,
    new_token,
    retry_after_s,
    session_hash,
)
from broker.services.ledger import Ledger
from broker.services.ports import BrokerPorts, UnitOfWorkFactory
from broker.storage import Repos, VendorRow
from netpay.encoding import check_party_id
from netpay.envelope import PUBLIC_KEY_BYTES, open_envelope, seal
from netpay.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NetPayError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "CERTIFICATE_TTL_S",
    "FAILED_LOGIN_WINDOW_S",
    "MAX_FAILED_LOGINS",
    "READER_TOKEN_TTL_S",
    "USERNAME_RE",
    "DirectoryEntry",
    "Identity",
    "LoginResult",
    "VendorRegistration",
    "check_origin",
    "enroll_vendor",
]

READER_TOKEN_TTL_S = 30 * 86_400
CERTIFICATE_TTL_S = 7 * 86_400
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_WINDOW_S = 300
MAX_DIRECTORY_VENDORS = 500
MAX_DISPLAY_NAME_CHARS = 100
MAX_ADDRESS_CHARS = 256
MAX_ENROLLMENT_TOKEN_CHARS = 256
USERNAME_RE = re.compile(r"[a-z0-9_.-]{3,32}")
_ORIGIN_RE = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)
_HOST_PORT_RE = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")

# Writes a sign-in's credential inside the transaction that clears the failures:
# ``issue(repos, reader_id, now_ms)``.
CredentialIssuer = Callable[[Repos, str, int], None]


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_at_ms: int
    reader_id: str


@dataclass(frozen=True)
class VendorRegistration:
    vendor_id: str
    vendor_token: str | None  # set only on enrollment
    certificate: pb.Envelope
    broker_id: str
    broker_public_key: bytes


@dataclass(frozen=True)
class DirectoryEntry:
    vendor_id: str
    display_name: str
    web_origin: str
    valid_until_ms: int


def check_origin(origin: str) -> str:
    """A web origin: ``http(s)://host[:port]``, nothing after it."""
    if len(origin) > MAX_ADDRESS_CHARS or not _ORIGIN_RE.fullmatch(origin):
        raise InvalidArgument("web origin must look like http(s)://host[:port]")
    return origin


def _check_host_port(address: str) -> str:
    match = _HOST_PORT_RE.fullmatch(address) if len(address) <= MAX_ADDRESS_CHARS else None
    if match is None or not 1 <= int(match.group(1)) <= 65535:
        raise InvalidArgument("grpc address must be host:port")
    return address


def enroll_vendor(uow: UnitOfWorkFactory, vendor_id: str, origin: str | None, now_ms: int) -> str:
    """Admit a vendor; returns its one-time enrollment token (shown once, stored hashed).

    A vendor that has not enrolled yet gets a fresh token (the old one stops
    working); an enrolled vendor is AlreadyExists.
    """
    check_party_id(vendor_id)
    fixed_origin = check_origin(origin) if origin else None
    token = new_token()
    with uow() as repos:
        row = repos.vendors.get(vendor_id, for_update=True)
        if row is None:
            repos.vendors.add(
                VendorRow(
                    vendor_id=vendor_id,
                    fixed_origin=fixed_origin,
                    enrollment_token_sha256=hash_token(token),
                    created_at_ms=now_ms,
                )
            )
        elif row.public_key is not None:
            raise AlreadyExists(f"vendor {vendor_id} is already enrolled")
        else:
            row.enrollment_token_sha256 = hash_token(token)
            row.fixed_origin = fixed_origin
        repos.commit()
    return token


class Identity:
    """Readers' and vendors' credentials, and the vendors' certificates."""

    def __init__(self, ports: BrokerPorts, ledger: Ledger) -> None:
        self._ports = ports
        self._ledger = ledger

    # -- readers ----------------------------------------------------------------

    def register_reader(self, username: str, password: str) -> str:
        """Open a reader account and its funded demo bank account; returns the reader id."""
        if not USERNAME_RE.fullmatch(username):
            raise InvalidArgument("username must match [a-z0-9_.-]{3,32}")
        check_new_password(password)
        password_hash = self._ports.passwords.hash(password)
        reader_id = secrets.token_hex(16)
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            if repos.readers.by_username(username) is not None:
                raise AlreadyExists(f"username {username} is taken")
            repos.readers.add(reader_id, username, password_hash, now_ms)
            self._ledger.open_reader_accounts(repos, reader_id, now_ms)
            repos.commit()
        return reader_id

    def login(self, username: str, password: str) -> LoginResult:
        """A bearer token for a correct password; failed attempts are rate-limited."""
        token = new_token()
        expires: list[int] = []

        def issue(repos: Repos, reader_id: str, now_ms: int) -> None:
            expires.append(now_ms + READER_TOKEN_TTL_S * 1000)
            repos.readers.prune_tokens(reader_id, now_ms)
            repos.readers.add_token(hash_token(token), reader_id, now_ms, expires[0])

        reader_id = self.password_login(username, password, issue)
        return LoginResult(token=token, expires_at_ms=expires[0], reader_id=reader_id)

    def password_login(self, username: str, password: str, issue: CredentialIssuer) -> str:
        """Check a password under the failed-login limit; ``issue`` writes the credential.

        ``issue(repos, reader_id, now_ms)`` runs inside the transaction that
        clears the failures, so a credential exists only for a good password.
        """
        if not USERNAME_RE.fullmatch(username) or len(password) > MAX_PASSWORD_CHARS:
            raise Unauthenticated("wrong username or password")
        now_ms = self._ports.clock.now_ms()
        window_start_ms = now_ms - FAILED_LOGIN_WINDOW_S * 1000
        with self._ports.uow() as repos:
            self._check_login_rate(repos, username, window_start_ms, now_ms)
            reader = repos.readers.by_username(username)
            reader_id = reader.reader_id if reader else None
            stored_hash = reader.password_hash if reader else self._ports.passwords.dummy_hash
        # Hash outside the transaction: it is slow and needs no lock.
        ok = self._ports.passwords.verify(stored_hash, password) and reader_id is not None
        with self._ports.uow() as repos:
            repos.readers.prune_failures(window_start_ms)
            if not ok or reader_id is None:
                repos.readers.add_failure(username, now_ms)
                repos.commit()
                raise Unauthenticated("wrong username or password")
            self._check_login_rate(repos, username, window_start_ms, now_ms)
            repos.readers.clear_failures(username)
            issue(repos, reader_id, now_ms)
            repos.commit()
        return reader_id

    @staticmethod
    def _check_login_rate(repos: Repos, username: str, window_start_ms: int, now_ms: int) -> None:
        failures = repos.readers.recent_failures(username, window_start_ms)
        wait_s = retry_after_s(failures, MAX_FAILED_LOGINS, FAILED_LOGIN_WINDOW_S, now_ms)
        if wait_s is not None:
            raise PermissionDenied(
                f"too many failed logins; retry in {wait_s} s", retry_after_s=wait_s
            )

    def change_password(
        self, reader_id: str, current: str, new: str, *, keep_session: str | None = None
    ) -> None:
        """Replace the password after checking the current one (counted like a login).

        Every other portal session and every API token of the reader ends:
        wallets must log in again.
        """
        check_new_password(new)
        if len(current) > MAX_PASSWORD_CHARS:
            raise Unauthenticated("the current password is wrong")
        now_ms = self._ports.clock.now_ms()
        window_start_ms = now_ms - FAILED_LOGIN_WINDOW_S * 1000
        with self._ports.uow() as repos:
            reader = repos.readers.get(reader_id)
            if reader is None:
                raise NotFound("no such reader")
            username, old_hash = reader.username, reader.password_hash
            self._check_login_rate(repos, username, window_start_ms, now_ms)
        ok = self._ports.passwords.verify(old_hash, current)
        new_hash = self._ports.passwords.hash(new) if ok else ""
        keep = session_hash(keep_session) if keep_session else None
        with self._ports.uow() as repos:
            repos.readers.prune_failures(window_start_ms)
            if not ok:
                repos.readers.add_failure(username, now_ms)
                repos.commit()
                raise Unauthenticated("the current password is wrong")
            self._check_login_rate(repos, username, window_start_ms, now_ms)
            if not repos.readers.set_password_hash(reader_id, old_hash, new_hash):
                raise Conflict("the password changed meanwhile")
            repos.readers.clear_failures(username)
            repos.readers.delete_tokens(reader_id)
            repos.portal.delete_sessions(reader_id, keep=keep)
            repos.commit()

    def authenticate_reader(self, token: str) -> str:
        """The reader id of a live login token, or Unauthenticated."""
        with self._ports.uow() as repos:
            reader_id = repos.readers.reader_for_token(
                hash_token(token), self._ports.clock.now_ms()
            )
        if reader_id is None:
            raise Unauthenticated("unknown or expired reader token")
        return reader_id

    def authenticate_vendor(self, token: str) -> str:
        """The vendor id of a vendor token, or Unauthenticated."""
        with self._ports.uow() as repos:
            row = repos.vendors.by_vendor_token(hash_token(token))
            vendor_id = row.vendor_id if row is not None else None
        if vendor_id is None:
            raise Unauthenticated("unknown vendor token")
        return vendor_id

    def authenticate_any(self, token: str) -> tuple[str | None, str | None]:
        """``(reader_id, None)`` or ``(None, vendor_id)`` for a reader or vendor token."""
        try:
            return self.authenticate_reader(token), None
        except Unauthenticated:
            pass
        try:
            return None, self.authenticate_vendor(token)
        except Unauthenticated:
            raise Unauthenticated("unknown or expired token") from None

    # -- vendors ------------------------------------------------------------------

    def add_vendor(self, vendor_id: str, origin: str | None = None) -> str:
        return enroll_vendor(self._ports.uow, vendor_id, origin, self._ports.clock.now_ms())

    def register_vendor(
        self,
        *,
        enrollment_token: str,
        bearer_token: str | None,
        public_key: bytes,
        grpc_address: str,
        web_origin: str,
        display_name: str,
    ) -> VendorRegistration:
        """Enrollment (first start) or re-registration (every start) -> a fresh certificate."""
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise InvalidArgument("public key must be 32 raw Ed25519 bytes")
        _check_host_port(grpc_address)
        if web_origin:
            check_origin(web_origin)
        if len(display_name) > MAX_DISPLAY_NAME_CHARS or not display_name.isprintable():
            raise InvalidArgument(f"display name: at most {MAX_DISPLAY_NAME_CHARS} printable chars")
        if len(enrollment_token) > MAX_ENROLLMENT_TOKEN_CHARS:
            raise Unauthenticated("unknown or used enrollment token")
        now_ms = self._ports.clock.now_ms()
        vendor_token: str | None = None
        with self._ports.uow() as repos:
            if enrollment_token:
                vendor_token = new_token()
                row = self._enroll(repos, enrollment_token, public_key, vendor_token, now_ms)
            else:
                row = self._known_vendor(repos, bearer_token, public_key)
            certificate = self._certify(
                row, public_key, grpc_address, web_origin, display_name, now_ms
            )
            vendor_id = row.vendor_id
            repos.vendors.flush()
            repos.commit()
        identity = self._ports.identity
        return VendorRegistration(
            vendor_id=vendor_id,
            vendor_token=vendor_token,
            certificate=certificate,
            broker_id=identity.broker_id,
            broker_public_key=identity.public_key,
        )

    @staticmethod
    def _enroll(
        repos: Repos, enrollment_token: str, public_key: bytes, vendor_token: str, now_ms: int
    ) -> VendorRow:
        """First start: the one-time token is used up and the key is enrolled."""
        row = repos.vendors.by_enrollment_token(hash_token(enrollment_token))
        if row is None:
            raise Unauthenticated("unknown or used enrollment token")
        if row.public_key is not None:
            raise AlreadyExists(f"vendor {row.vendor_id} is already enrolled")
        row.public_key = public_key
        row.enrollment_token_sha256 = None
        row.vendor_token_sha256 = hash_token(vendor_token)
        row.enrolled_at_ms = now_ms
        return row

    @staticmethod
    def _known_vendor(repos: Repos, bearer_token: str | None, public_key: bytes) -> VendorRow:
        """Every later start: the vendor token names the vendor, the key must not change."""
        if bearer_token is None:
            raise Unauthenticated("an enrollment token or the vendor token is required")
        row = repos.vendors.by_vendor_token(hash_token(bearer_token))
        if row is None:
            raise Unauthenticated("unknown vendor token")
        if row.public_key != public_key:
            raise PermissionDenied("the public key differs from the enrolled key")
        return row

    def _certify(
        self,
        row: VendorRow,
        public_key: bytes,
        grpc_address: str,
        web_origin: str,
        display_name: str,
        now_ms: int,
    ) -> pb.Envelope:
        """Record where the vendor serves and sign its certificate (kept on the row)."""
        row.grpc_address = grpc_address
        row.web_origin = row.fixed_origin or web_origin
        row.display_name = display_name or row.vendor_id
        row.registered_at_ms = now_ms
        certificate = seal(
            pb.VendorCertificate(
                vendor_id=row.vendor_id,
                public_key=public_key,
                grpc_address=grpc_address,
                web_origin=row.web_origin,
                valid_until_ms=now_ms + CERTIFICATE_TTL_S * 1000,
                broker_id=self._ports.identity.broker_id,
                display_name=row.display_name,
                issued_at_ms=now_ms,
            ),
            self._ports.identity.key,
        )
        row.certificate = certificate.SerializeToString()
        return certificate

    def vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        check_party_id(vendor_id)
        with self._ports.uow() as repos:
            row = repos.vendors.get(vendor_id)
            data = row.certificate if row is not None else None
        if data is None:
            raise NotFound(f"no certificate for vendor {vendor_id}")
        return envelope(data)

    def certified_origin(self, repos: Repos, vendor_id: str, now_ms: int) -> tuple[str, str]:
        """``(web origin, display name)`` from the vendor's valid certificate, or NotFound."""
        row = repos.vendors.get(vendor_id)
        data = row.certificate if row is not None else None
        if data is None:
            raise NotFound(f"no newspaper {vendor_id}")
        cert = open_envelope(envelope(data), pb.VendorCertificate, self._ports.identity.public_key)
        if cert.vendor_id != vendor_id or cert.valid_until_ms <= now_ms or not cert.web_origin:
            raise NotFound(f"newspaper {vendor_id} has no valid certificate")
        return cert.web_origin, cert.display_name or vendor_id

    def vendor_directory(self) -> list[DirectoryEntry]:
        """Every vendor with a certificate valid now, by display name."""
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            rows = [
                (row.vendor_id, row.certificate)
                for row in repos.vendors.with_certificates(MAX_DIRECTORY_VENDORS)
            ]
        entries = []
        for vendor_id, data in rows:
            assert data is not None
            try:
                cert = open_envelope(
                    envelope(data), pb.VendorCertificate, self._ports.identity.public_key
                )
            except NetPayError:
                continue
            if cert.valid_until_ms <= now_ms or cert.vendor_id != vendor_id:
                continue
            entries.append(
                DirectoryEntry(
                    vendor_id=vendor_id,
                    display_name=cert.display_name or vendor_id,
                    web_origin=cert.web_origin,
                    valid_until_ms=cert.valid_until_ms,
                )
            )
        return sorted(entries, key=lambda e: (e.display_name.casefold(), e.vendor_id))
