"""The broker's use cases: each runs in one unit of work.

Servicers (``broker.rpc``) translate messages and call exactly one method
here; the methods raise :class:`netpay.errors.NetPayError` subclasses for
every refusal, leave the database unchanged when they do, and never touch a
status code.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from google.protobuf.message import DecodeError

from broker.bank import Bank, DemoBank
from broker.domain import (
    AccountKind,
    Acquire,
    AcquireDecision,
    BeginRecall,
    CheckpointIndex,
    ClaimIndex,
    CoinIndexView,
    CoinRecordView,
    CoinState,
    DrawWindow,
    EpochOpening,
    EpochView,
    FinishRecall,
    Freeze,
    HandOff,
    IndexedWord,
    IssueHandOffGrant,
    Reclaim,
    RenewLease,
    Unfreeze,
    WindowRequest,
    allowed_window_units,
    check_can_draw,
    check_index_advance,
    decide_acquire,
    effective_state,
    handoff_is_repeat,
    proof_bound_units,
    reclaim_is_repeat,
    transition,
)
from broker.domain.personal import (
    MAX_INSTRUMENTS,
    BankAccountDetails,
    CardDetails,
    InstrumentKind,
    check_email,
    check_profile_name,
)
from broker.redemption import RedemptionService, keep_window_credit, parse_window_credit
from broker.seedvault import PEBBLE_EVERY, SeedVault
from broker.storage import (
    BrokerStore,
    PaymentInstrumentRow,
    PurchaseRow,
    Repos,
    ServerWalletRow,
    StoredCoin,
    StoredRange,
    VendorRow,
    WalletCodeRow,
    WalletGrantRow,
    WalletSessionRow,
)
from netpay.chain import WORD_BYTES, Chain, new_ecoin_id, new_seed, verify_word
from netpay.clock import Clock
from netpay.encoding import b64url_encode, check_currency, check_ecoin_id, check_party_id
from netpay.envelope import PUBLIC_KEY_BYTES, SigningKey, open_envelope, seal
from netpay.errors import (
    AlreadyExists,
    CoinBusy,
    Expired,
    InvalidArgument,
    LimitExceeded,
    NetPayError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Revoked,
    SignatureInvalid,
    Unauthenticated,
    Unavailable,
    WrongCurrency,
)
from netpay.limits import Limits
from netpay.money import DEFAULT_CURRENCY
from netpay.spending import SpendingLimits, check_spend, utc_day
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "CERTIFICATE_TTL_S",
    "MAX_FAILED_LOGINS",
    "PORTAL_SESSION_TTL_S",
    "READER_TOKEN_TTL_S",
    "BrokerServices",
    "BuyCoinInput",
    "CheckpointItem",
    "CheckpointOutcome",
    "CheckpointStatus",
    "CoinStatusView",
    "CustodyGrantView",
    "DirectoryEntry",
    "HandOffRequiredView",
    "InstrumentView",
    "LoginResult",
    "PortalCoinView",
    "PortalSession",
    "ProfileView",
    "PurchaseResult",
    "SigninTarget",
    "VendorRegistration",
    "WalletGrantView",
    "WalletKind",
    "WalletSignin",
    "WindowDrawView",
    "check_origin",
    "default_password_hasher",
    "enroll_vendor",
    "hash_token",
    "new_token",
]

log = logging.getLogger(__name__)

READER_TOKEN_TTL_S = 30 * 86_400
CERTIFICATE_TTL_S = 7 * 86_400
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_WINDOW_S = 300
MAX_LISTED_COINS = 2_000
PORTAL_SESSION_TTL_S = 12 * 3600
MAX_PORTAL_COINS = 200
MAX_PORTAL_CLICKS_PER_COIN = 200
MAX_DIRECTORY_VENDORS = 500
MAX_SESSION_TOKEN_CHARS = 64
MAX_REQUEST_ID_CHARS = 64
MAX_PASSWORD_CHARS = 256
MIN_PASSWORD_CHARS = 8
MAX_DISPLAY_NAME_CHARS = 100
MAX_ADDRESS_CHARS = 256
# Server-side wallets: portal sign-in and the one-time code it hands a vendor.
MAX_WALLET_SIGNIN_FAILURES = 5
WALLET_SIGNIN_WINDOW_S = 300
WALLET_CODE_TTL_S = 60
MAX_WALLET_CODE_CHARS = 64
MAX_RETURN_TO_CHARS = 2048
_ECOIN_ID_RE = re.compile(r"[0-9a-f]{32}")
USERNAME_RE = re.compile(r"[a-z0-9_.-]{3,32}")
_ORIGIN_RE = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)
_HOST_PORT_RE = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")


class WalletKind(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    CLIENT_SIDE = "client_side"
    SERVER_SIDE = "server_side"


class CheckpointStatus(enum.Enum):
    LEASED = "leased"
    CLOSED = "closed"
    REJECTED = "rejected"
    RECALLED = "recalled"


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
class BuyCoinInput:
    request_id: str
    ecoin_id: str
    root: bytes
    n: int
    unit_value_minor: int  # 0 means 1
    currency: str  # "" means EUR
    wallet_kind: WalletKind
    # Server-side coins only (ecoin_id and root are then empty: the broker makes them).
    wallet_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class PurchaseResult:
    touchstone: pb.Envelope
    amount_minor: int
    currency: str
    ecoin_id: str


@dataclass(frozen=True)
class SigninTarget:
    """Where a portal wallet sign-in for a vendor returns to."""

    vendor_id: str
    display_name: str
    web_origin: str
    return_to: str


@dataclass(frozen=True)
class WalletSignin:
    """A successful wallet sign-in: the vendor's one-time code and the browser's session."""

    ecoin_id: str
    code: str = field(repr=False)
    session_token: str = field(repr=False)


@dataclass(frozen=True)
class WalletGrantView:
    grant: pb.Envelope
    touchstone: pb.Envelope
    latest_index: int


@dataclass(frozen=True)
class WindowDrawView:
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    payword: bytes
    touchstone: pb.Envelope
    grant_units_left: int


@dataclass(frozen=True)
class CoinStatusView:
    touchstone: pb.Envelope
    state: CoinState
    frozen: bool
    holder: str | None
    epoch: int
    latest: IndexedWord


@dataclass(frozen=True)
class CustodyGrantView:
    ecoin_id: str
    epoch: int
    base: IndexedWord
    touchstone: pb.Envelope
    lease_ttl_s: int
    max_skew_s: int
    holder: str
    # Window-credit units of the coin on their way back to the reader.
    refund_pending_units: int = 0


@dataclass(frozen=True)
class HandOffRequiredView:
    grant: pb.Envelope
    holder_certificate: pb.Envelope
    touchstone: pb.Envelope


@dataclass(frozen=True)
class CheckpointItem:
    ecoin_id: str
    epoch: int
    status: CheckpointStatus
    detail: str
    acknowledged_index: int
    revoked: bool = False  # the coin is frozen: the holder refuses it at once
    recall_to: str = ""  # RECALLED: the vendor the final CoinIndex is for


@dataclass(frozen=True)
class CheckpointOutcome:
    results: tuple[CheckpointItem, ...]
    lease_ttl_s: int
    max_skew_s: int


@dataclass(frozen=True)
class PortalSession:
    """A signed-in browser session of the web portal; ``token`` goes in its cookie."""

    token: str
    reader_id: str
    expires_at_ms: int


@dataclass(frozen=True)
class ProfileView:
    reader_id: str
    username: str
    display_name: str | None
    email: str | None
    created_at_ms: int
    erased_at_ms: int | None  # when the reader last deleted their personal data


@dataclass(frozen=True)
class InstrumentView:
    instrument_id: str
    kind: InstrumentKind
    brand: str
    last4: str
    country: str | None
    exp_month: int | None
    exp_year: int | None
    holder_name: str
    is_default: bool

    @property
    def masked(self) -> str:
        """How the instrument is shown: never more than its last four characters."""
        dots = "\u2022" * 4
        if self.kind is InstrumentKind.CARD:
            return f"{self.brand} {dots} {self.last4}"
        return f"{self.country}\u2022\u2022 {dots} {dots} {self.last4}"


@dataclass(frozen=True)
class PortalCoinView:
    """A coin as the portal shows it: what the broker knows today."""

    ecoin_id: str
    wallet_kind: str
    currency: str
    n: int
    unit_value_minor: int
    state: CoinState
    frozen: bool
    holder: str | None
    epoch: int
    latest_index: int
    issued_at_ms: int
    expires_at_ms: int
    epochs: tuple[EpochView, ...]
    # Redeemed clicks, newest first (vendors redeem daily: the newest are not here yet).
    clicks: tuple[StoredRange, ...] = ()
    # Window-credit units on their way back to the reader (or already refunded).
    refund_units: int = 0

    @property
    def refund_minor(self) -> int:
        return self.refund_units * self.unit_value_minor

    @property
    def words_left(self) -> int:
        """n minus the latest index the broker knows (vendors may have spent more since)."""
        return self.n - self.latest_index

    @property
    def value_minor(self) -> int:
        return self.n * self.unit_value_minor

    @property
    def left_minor(self) -> int:
        return self.words_left * self.unit_value_minor


@dataclass(frozen=True)
class DirectoryEntry:
    vendor_id: str
    display_name: str
    web_origin: str
    valid_until_ms: int


# -- helpers ------------------------------------------------------------------------


def new_token() -> str:
    """32 random bytes, base64url."""
    return b64url_encode(secrets.token_bytes(32))


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def default_password_hasher() -> PasswordHasher:
    """Argon2id with lighter-than-default parameters (OWASP's second option)."""
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


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


def _envelope(data: bytes) -> pb.Envelope:
    env = pb.Envelope()
    env.ParseFromString(data)
    return env


def _check_new_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidArgument(
            f"password must have {MIN_PASSWORD_CHARS}..{MAX_PASSWORD_CHARS} characters"
        )


def _session_hash(token: str) -> bytes | None:
    """The stored hash of a portal session token, None for one that cannot be ours."""
    if not 1 <= len(token) <= MAX_SESSION_TOKEN_CHARS:
        return None
    return hash_token(token)


def enroll_vendor(store: BrokerStore, vendor_id: str, origin: str | None, now_ms: int) -> str:
    """Admit a vendor; returns its one-time enrollment token (shown once, stored hashed).

    A vendor that has not enrolled yet gets a fresh token (the old one stops
    working); an enrolled vendor is AlreadyExists.
    """
    check_party_id(vendor_id)
    fixed_origin = check_origin(origin) if origin else None
    token = new_token()
    with store.begin() as repos:
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


def _purchase_fingerprint(req: BuyCoinInput) -> bytes:
    """SHA-256 over the normalised request (everything but the request id)."""
    h = hashlib.sha256(b"netpay-buy-v1\x00")
    for part in (
        req.ecoin_id.encode(),
        req.root,
        str(req.n).encode(),
        str(req.unit_value_minor).encode(),
        req.currency.encode(),
        req.wallet_kind.value.encode(),
    ):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


class BrokerServices:
    """Every broker use case, over one store, one key and one clock."""

    def __init__(
        self,
        store: BrokerStore,
        key: SigningKey,
        broker_id: str,
        *,
        limits: Limits,
        currencies: Sequence[str],
        demo_deposit_minor: int,
        clock: Clock,
        password_hasher: PasswordHasher | None = None,
        seed_vault: SeedVault | None = None,
        bank: Bank | None = None,
    ) -> None:
        check_party_id(broker_id, "broker id")
        if not currencies:
            raise InvalidArgument("at least one currency")
        for currency in currencies:
            check_currency(currency)
        if demo_deposit_minor < 0:
            raise InvalidArgument("the demo deposit cannot be negative")
        self.store = store
        self.key = key
        self.broker_id = broker_id
        self.limits = limits
        self.currencies = tuple(dict.fromkeys(currencies))
        self.demo_deposit_minor = demo_deposit_minor
        self.clock = clock
        self._hasher = password_hasher or default_password_hasher()
        # None: this broker sells no server-side coins (no wallet data key).
        self._vault = seed_vault
        # Macro-payments: the demo bank keeps its accounts in our own ledger.
        self.bank: Bank = bank or DemoBank(demo_deposit_minor)
        # Redeem, History and the window credits kept with hand-offs.
        self.redemption = RedemptionService(store, limits=limits, clock=clock, bank=self.bank)
        # The web portal's base URL, set once it serves ("" without a portal).
        self.portal_url = ""
        # Verified against for unknown usernames, so both paths cost the same.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def _lease_expires_ms(self, now_ms: int) -> int:
        return now_ms + self.limits.lease_ttl_s * 1000

    # -- readers ----------------------------------------------------------------

    def register_reader(self, username: str, password: str) -> str:
        """Open a reader account and its funded demo bank account; returns the reader id."""
        if not USERNAME_RE.fullmatch(username):
            raise InvalidArgument("username must match [a-z0-9_.-]{3,32}")
        _check_new_password(password)
        password_hash = self._hasher.hash(password)
        reader_id = secrets.token_hex(16)
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            if repos.readers.by_username(username) is not None:
                raise AlreadyExists(f"username {username} is taken")
            repos.readers.add(reader_id, username, password_hash, now_ms)
            for currency in self.currencies:
                self.bank.open_reader_account(
                    repos, reader_id, currency, f"demo-deposit:{reader_id}:{currency}", now_ms
                )
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

        reader_id = self._password_login(username, password, issue)
        return LoginResult(token=token, expires_at_ms=expires[0], reader_id=reader_id)

    def _password_login(
        self, username: str, password: str, issue: Callable[[Repos, str, int], None]
    ) -> str:
        """Check a password under the failed-login limit; ``issue`` writes the credential.

        ``issue(repos, reader_id, now_ms)`` runs inside the transaction that
        clears the failures, so a credential exists only for a good password.
        """
        if not USERNAME_RE.fullmatch(username) or len(password) > MAX_PASSWORD_CHARS:
            raise Unauthenticated("wrong username or password")
        now_ms = self.clock.now_ms()
        window_start_ms = now_ms - FAILED_LOGIN_WINDOW_S * 1000
        with self.store.begin() as repos:
            self._check_login_rate(repos, username, window_start_ms, now_ms)
            reader = repos.readers.by_username(username)
            reader_id = reader.reader_id if reader else None
            stored_hash = reader.password_hash if reader else self._dummy_hash
        # Hash outside the transaction: it is slow and needs no lock.
        ok = self._verify_password(stored_hash, password) and reader_id is not None
        with self.store.begin() as repos:
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

    def _check_login_rate(
        self, repos: Repos, username: str, window_start_ms: int, now_ms: int
    ) -> None:
        failures = repos.readers.recent_failures(username, window_start_ms)
        if len(failures) >= MAX_FAILED_LOGINS:
            unblock_ms = failures[-MAX_FAILED_LOGINS] + FAILED_LOGIN_WINDOW_S * 1000
            retry_after_s = max(1, math.ceil((unblock_ms - now_ms) / 1000))
            raise PermissionDenied(
                f"too many failed logins; retry in {retry_after_s} s",
                retry_after_s=retry_after_s,
            )

    def _verify_password(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def authenticate_reader(self, token: str) -> str:
        """The reader id of a live login token, or Unauthenticated."""
        with self.store.begin() as repos:
            reader_id = repos.readers.reader_for_token(hash_token(token), self.clock.now_ms())
        if reader_id is None:
            raise Unauthenticated("unknown or expired reader token")
        return reader_id

    def authenticate_vendor(self, token: str) -> str:
        """The vendor id of a vendor token, or Unauthenticated."""
        with self.store.begin() as repos:
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

    def account_balances(self, reader_id: str) -> dict[str, int]:
        """The reader's bank balance per currency (every offered currency listed)."""
        with self.store.begin() as repos:
            balances = repos.ledger.balances_of(AccountKind.READER_BANK, reader_id)
        for currency in self.currencies:
            balances.setdefault(currency, 0)
        return dict(sorted(balances.items()))

    def spending_limits(self, reader_id: str) -> list[tuple[SpendingLimits, int]]:
        """The reader's limits per offered currency, with what was spent today."""
        day = utc_day(self.clock.now_ms())
        with self.store.begin(read_only=True) as repos:
            stored = {lim.currency: lim for lim in repos.spending.limits(reader_id)}
            return [
                (
                    stored.get(currency, SpendingLimits(currency)),
                    repos.spending.spent(reader_id, day, currency),
                )
                for currency in self.currencies
            ]

    def set_spending_limits(self, reader_id: str, limits: SpendingLimits) -> None:
        """Set (or, with no limits, clear) the reader's limits in one offered currency."""
        if limits.currency not in self.currencies:
            raise InvalidArgument(f"this broker does not sell {limits.currency[:3]!r} coins")
        with self.store.begin() as repos:
            repos.spending.set_limits(reader_id, limits, self.clock.now_ms())
            repos.commit()

    # -- web portal ----------------------------------------------------------------

    def _open_portal_session(self, repos: Repos, reader_id: str, now_ms: int) -> PortalSession:
        token = new_token()
        expires_at_ms = now_ms + PORTAL_SESSION_TTL_S * 1000
        repos.portal.prune_sessions(now_ms)
        repos.portal.add_session(hash_token(token), reader_id, now_ms, expires_at_ms)
        return PortalSession(token=token, reader_id=reader_id, expires_at_ms=expires_at_ms)

    def portal_login(self, username: str, password: str) -> PortalSession:
        """Sign in at the portal: the same password check and failure limit as Login."""
        opened: list[PortalSession] = []

        def issue(repos: Repos, reader_id: str, now_ms: int) -> None:
            opened.append(self._open_portal_session(repos, reader_id, now_ms))

        self._password_login(username, password, issue)
        return opened[0]

    def portal_register(self, username: str, password: str) -> PortalSession:
        """Open a reader account (as RegisterReader) and sign it in at the portal."""
        reader_id = self.register_reader(username, password)
        with self.store.begin() as repos:
            opened = self._open_portal_session(repos, reader_id, self.clock.now_ms())
            repos.commit()
        return opened

    def portal_reader(self, session_token: str) -> str:
        """The reader of a live portal session, or Unauthenticated."""
        digest = _session_hash(session_token)
        reader_id = None
        if digest is not None:
            with self.store.begin() as repos:
                reader_id = repos.portal.session_reader(digest, self.clock.now_ms())
        if reader_id is None:
            raise Unauthenticated("unknown or expired portal session")
        return reader_id

    def portal_logout(self, session_token: str) -> None:
        """End a portal session (unknown or ended sessions are fine)."""
        digest = _session_hash(session_token)
        if digest is None:
            return
        with self.store.begin() as repos:
            repos.portal.delete_session(digest)
            repos.commit()

    def _profile(self, repos: Repos, reader_id: str) -> ProfileView:
        reader = repos.readers.get(reader_id)
        if reader is None:
            raise NotFound("no such reader")
        profile = repos.portal.profile(reader_id)
        return ProfileView(
            reader_id=reader_id,
            username=reader.username,
            display_name=profile.display_name if profile else None,
            email=profile.email if profile else None,
            created_at_ms=reader.created_at_ms,
            erased_at_ms=profile.erased_at_ms if profile else None,
        )

    def reader_profile(self, reader_id: str) -> ProfileView:
        with self.store.begin() as repos:
            return self._profile(repos, reader_id)

    def update_profile(self, reader_id: str, display_name: str, email: str) -> ProfileView:
        """Set the optional display name and e-mail (empty clears one)."""
        name = check_profile_name(display_name)
        address = check_email(email)
        with self.store.begin() as repos:
            if repos.readers.get(reader_id, for_update=True) is None:
                raise NotFound("no such reader")
            repos.portal.save_profile(reader_id, name, address, self.clock.now_ms())
            view = self._profile(repos, reader_id)
            repos.commit()
        return view

    def erase_personal_data(self, reader_id: str) -> ProfileView:
        """Erase name, e-mail and payment instruments; money records and login stay."""
        with self.store.begin() as repos:
            if repos.readers.get(reader_id, for_update=True) is None:
                raise NotFound("no such reader")
            repos.portal.save_profile(reader_id, None, None, self.clock.now_ms(), erased=True)
            repos.portal.delete_instruments(reader_id)
            view = self._profile(repos, reader_id)
            repos.commit()
        return view

    def change_password(
        self, reader_id: str, current: str, new: str, *, keep_session: str | None = None
    ) -> None:
        """Replace the password after checking the current one (counted like a login).

        Every other portal session and every API token of the reader ends:
        wallets must log in again.
        """
        _check_new_password(new)
        if len(current) > MAX_PASSWORD_CHARS:
            raise Unauthenticated("the current password is wrong")
        now_ms = self.clock.now_ms()
        window_start_ms = now_ms - FAILED_LOGIN_WINDOW_S * 1000
        with self.store.begin() as repos:
            reader = repos.readers.get(reader_id)
            if reader is None:
                raise NotFound("no such reader")
            username, old_hash = reader.username, reader.password_hash
            self._check_login_rate(repos, username, window_start_ms, now_ms)
        ok = self._verify_password(old_hash, current)
        new_hash = self._hasher.hash(new) if ok else ""
        keep = _session_hash(keep_session) if keep_session else None
        with self.store.begin() as repos:
            repos.readers.prune_failures(window_start_ms)
            if not ok:
                repos.readers.add_failure(username, now_ms)
                repos.commit()
                raise Unauthenticated("the current password is wrong")
            self._check_login_rate(repos, username, window_start_ms, now_ms)
            repos.readers.set_password_hash(reader_id, old_hash, new_hash)
            repos.readers.clear_failures(username)
            repos.readers.delete_tokens(reader_id)
            repos.portal.delete_sessions(reader_id, keep=keep)
            repos.commit()

    def list_instruments(self, reader_id: str) -> list[InstrumentView]:
        with self.store.begin() as repos:
            return [_instrument_view(row) for row in repos.portal.instruments(reader_id)]

    def add_instrument(
        self,
        reader_id: str,
        details: CardDetails | BankAccountDetails,
        *,
        make_default: bool = False,
    ) -> InstrumentView:
        """Keep a demo instrument (checked by ``broker.portal``); the first is the default."""
        now_ms = self.clock.now_ms()
        instrument_id = secrets.token_hex(16)
        if isinstance(details, CardDetails):
            row = PaymentInstrumentRow(
                instrument_id=instrument_id,
                reader_id=reader_id,
                kind=InstrumentKind.CARD.value,
                brand=details.brand,
                last4=details.last4,
                country=None,
                exp_month=details.exp_month,
                exp_year=details.exp_year,
                holder_name=details.holder_name,
                is_default=False,
                created_at_ms=now_ms,
            )
        else:
            row = PaymentInstrumentRow(
                instrument_id=instrument_id,
                reader_id=reader_id,
                kind=InstrumentKind.BANK_ACCOUNT.value,
                brand="Bank account",
                last4=details.last4,
                country=details.country,
                exp_month=None,
                exp_year=None,
                holder_name=details.holder_name,
                is_default=False,
                created_at_ms=now_ms,
            )
        with self.store.begin() as repos:
            # Lock the reader: the count and the one-default rule hold per reader.
            if repos.readers.get(reader_id, for_update=True) is None:
                raise NotFound("no such reader")
            existing = repos.portal.instruments(reader_id)
            if len(existing) >= MAX_INSTRUMENTS:
                raise InvalidArgument(f"at most {MAX_INSTRUMENTS} payment instruments")
            repos.portal.add_instrument(row)
            if make_default or not existing:
                repos.portal.set_default(reader_id, instrument_id)
            added = next(
                _instrument_view(r)
                for r in repos.portal.instruments(reader_id)
                if r.instrument_id == instrument_id
            )
            repos.commit()
        return added

    def remove_instrument(self, reader_id: str, instrument_id: str) -> None:
        """Remove one; if it was the default, the oldest remaining one becomes the default."""
        with self.store.begin() as repos:
            if repos.readers.get(reader_id, for_update=True) is None:
                raise NotFound("no such reader")
            if not repos.portal.delete_instrument(reader_id, instrument_id):
                raise NotFound("no such payment instrument")
            remaining = repos.portal.instruments(reader_id)
            if remaining and not any(r.is_default for r in remaining):
                repos.portal.set_default(reader_id, remaining[0].instrument_id)
            repos.commit()

    def set_default_instrument(self, reader_id: str, instrument_id: str) -> None:
        with self.store.begin() as repos:
            if repos.readers.get(reader_id, for_update=True) is None:
                raise NotFound("no such reader")
            if not repos.portal.set_default(reader_id, instrument_id):
                raise NotFound("no such payment instrument")
            repos.commit()

    def portal_coins(self, reader_id: str) -> list[PortalCoinView]:
        """The reader's coins, newest first (at most MAX_PORTAL_COINS), with custody epochs."""
        now_ms = self.clock.now_ms()
        with self.store.begin(read_only=True) as repos:
            coins = repos.coins.list_for_owner(reader_id, MAX_PORTAL_COINS)
            epochs = repos.coins.epochs_of([c.view.ecoin_id for c in coins])
            clicks = {
                c.view.ecoin_id: tuple(
                    repos.redemption.ranges(
                        ecoin_ids=[c.view.ecoin_id], limit=MAX_PORTAL_CLICKS_PER_COIN
                    )
                )
                for c in coins
            }
            refunds = {
                c.view.ecoin_id: repos.redemption.pending_refund_units(c.view.ecoin_id)
                for c in coins
            }
        views = []
        for stored in coins:
            coin = stored.view
            touchstone = pb.Touchstone()
            touchstone.ParseFromString(_envelope(stored.touchstone).payload)
            views.append(
                PortalCoinView(
                    ecoin_id=coin.ecoin_id,
                    wallet_kind=stored.wallet_kind,
                    currency=stored.currency,
                    n=coin.n,
                    unit_value_minor=coin.unit_value_minor,
                    state=effective_state(coin, now_ms),
                    frozen=coin.frozen,
                    holder=coin.holder,
                    epoch=coin.epoch,
                    latest_index=coin.latest.index,
                    issued_at_ms=touchstone.issued_at_ms,
                    expires_at_ms=coin.expires_at_ms,
                    epochs=tuple(epochs[coin.ecoin_id]),
                    clicks=clicks[coin.ecoin_id],
                    refund_units=refunds[coin.ecoin_id],
                )
            )
        return views

    def vendor_directory(self) -> list[DirectoryEntry]:
        """Every vendor with a certificate valid now, by display name."""
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            rows = [
                (row.vendor_id, row.certificate)
                for row in repos.vendors.with_certificates(MAX_DIRECTORY_VENDORS)
            ]
        entries = []
        for vendor_id, data in rows:
            assert data is not None
            try:
                cert = open_envelope(_envelope(data), pb.VendorCertificate, self.key.public_key)
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

    # -- vendors ------------------------------------------------------------------

    def add_vendor(self, vendor_id: str, origin: str | None = None) -> str:
        return enroll_vendor(self.store, vendor_id, origin, self.clock.now_ms())

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
        if len(enrollment_token) > 256:
            raise Unauthenticated("unknown or used enrollment token")
        now_ms = self.clock.now_ms()
        vendor_token: str | None = None
        with self.store.begin() as repos:
            if enrollment_token:
                row = repos.vendors.by_enrollment_token(hash_token(enrollment_token))
                if row is None:
                    raise Unauthenticated("unknown or used enrollment token")
                if row.public_key is not None:
                    raise AlreadyExists(f"vendor {row.vendor_id} is already enrolled")
                vendor_token = new_token()
                row.public_key = public_key
                row.enrollment_token_sha256 = None
                row.vendor_token_sha256 = hash_token(vendor_token)
                row.enrolled_at_ms = now_ms
            else:
                if bearer_token is None:
                    raise Unauthenticated("an enrollment token or the vendor token is required")
                found = repos.vendors.by_vendor_token(hash_token(bearer_token))
                if found is None:
                    raise Unauthenticated("unknown vendor token")
                row = found
                if row.public_key != public_key:
                    raise PermissionDenied("the public key differs from the enrolled key")
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
                    broker_id=self.broker_id,
                    display_name=row.display_name,
                    issued_at_ms=now_ms,
                ),
                self.key,
            )
            row.certificate = certificate.SerializeToString()
            vendor_id = row.vendor_id
            repos.vendors.flush()
            repos.commit()
        return VendorRegistration(
            vendor_id=vendor_id,
            vendor_token=vendor_token,
            certificate=certificate,
            broker_id=self.broker_id,
            broker_public_key=self.key.public_key,
        )

    def vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        check_party_id(vendor_id)
        with self.store.begin() as repos:
            row = repos.vendors.get(vendor_id)
            data = row.certificate if row is not None else None
        if data is None:
            raise NotFound(f"no certificate for vendor {vendor_id}")
        return _envelope(data)

    # -- coins --------------------------------------------------------------------

    def _normalise_buy(self, req: BuyCoinInput) -> BuyCoinInput:
        if not 1 <= len(req.request_id) <= MAX_REQUEST_ID_CHARS:
            raise InvalidArgument(f"request id must have 1..{MAX_REQUEST_ID_CHARS} characters")
        if req.wallet_kind is WalletKind.SERVER_SIDE:
            if self._vault is None:
                raise Unavailable("this broker sells no server-side coins")
            if req.ecoin_id or req.root:
                raise InvalidArgument("the broker chooses a server-side coin's id and chain")
            _check_new_password(req.wallet_password)
        elif req.wallet_kind is WalletKind.CLIENT_SIDE:
            check_ecoin_id(req.ecoin_id)
            if len(req.root) != WORD_BYTES:
                raise InvalidArgument(f"root must be {WORD_BYTES} bytes")
            if req.wallet_password:
                raise InvalidArgument("a client-side coin has no wallet password")
        else:
            raise InvalidArgument("wallet kind must be client-side or server-side")
        if not 1 <= req.n <= self.limits.max_chain_units:
            raise InvalidArgument(f"n must be 1..{self.limits.max_chain_units}")
        unit = req.unit_value_minor or 1
        if not 1 <= unit <= self.limits.max_click_amount_minor:
            raise InvalidArgument(
                f"unit value must be 1..{self.limits.max_click_amount_minor} minor units"
            )
        currency = req.currency or DEFAULT_CURRENCY
        check_currency(currency)
        if currency not in self.currencies:
            raise InvalidArgument(f"this broker sells coins in {', '.join(self.currencies)}")
        return BuyCoinInput(
            request_id=req.request_id,
            ecoin_id=req.ecoin_id,
            root=req.root,
            n=req.n,
            unit_value_minor=unit,
            currency=currency,
            wallet_kind=req.wallet_kind,
            wallet_password=req.wallet_password,
        )

    def buy_coin(self, reader_id: str, request: BuyCoinInput) -> PurchaseResult:
        """Sell a coin: debit the reader, credit the float, sign the touchstone.

        A server-side coin is made here: fresh ecoin id and seed, the chain
        sealed with the wallet data key, the password kept as Argon2id. Its
        fingerprint leaves the password out; a replay must present the same
        password (verified against the stored hash).
        """
        req = self._normalise_buy(request)
        fingerprint = _purchase_fingerprint(req)
        if req.wallet_kind is WalletKind.SERVER_SIDE:
            return self._buy_server_side(reader_id, req, fingerprint)
        try:
            return self._buy_once(reader_id, req, fingerprint)
        except AlreadyExists:
            # A concurrent identical request may have won the unique key: the
            # replay path then returns its result; anything else fails again.
            return self._buy_once(reader_id, req, fingerprint)

    def _buy_server_side(
        self, reader_id: str, req: BuyCoinInput, fingerprint: bytes
    ) -> PurchaseResult:
        replayed = self._replay_server_side(reader_id, req, fingerprint)
        if replayed is not None:
            return replayed
        assert self._vault is not None
        chain = Chain.make(new_ecoin_id(), req.n, new_seed(), pebble_every=PEBBLE_EVERY)
        ecoin_id = chain.ecoin_id.hex()
        secret = ServerWalletRow(
            ecoin_id=ecoin_id,
            sealed_chain=self._vault.seal(chain),
            password_hash=self._hasher.hash(req.wallet_password),
        )
        made = replace(req, ecoin_id=ecoin_id, root=chain.root)
        try:
            return self._buy_once(reader_id, made, fingerprint, server_wallet=secret)
        except AlreadyExists:
            # The same request id won meanwhile (a concurrent replay): answer as a replay.
            replayed = self._replay_server_side(reader_id, req, fingerprint)
            if replayed is None:
                raise
            return replayed

    def _replay_server_side(
        self, reader_id: str, req: BuyCoinInput, fingerprint: bytes
    ) -> PurchaseResult | None:
        """The first result of this request id, if any; the password must match it."""
        with self.store.begin() as repos:
            earlier = repos.purchases.get(reader_id, req.request_id)
            if earlier is None:
                return None
            if not secrets.compare_digest(earlier.fingerprint, fingerprint):
                raise AlreadyExists("request id reused with a different request")
            wallet = repos.wallets.get(earlier.ecoin_id)
            result = self._replay_purchase(repos, earlier, fingerprint)
            stored_hash = wallet.password_hash if wallet is not None else self._dummy_hash
        # Verified outside the transaction: Argon2id is slow and needs no lock.
        if wallet is None or not self._verify_password(stored_hash, req.wallet_password):
            raise AlreadyExists("request id reused with a different request")
        return result

    def _buy_once(
        self,
        reader_id: str,
        req: BuyCoinInput,
        fingerprint: bytes,
        *,
        server_wallet: ServerWalletRow | None = None,
    ) -> PurchaseResult:
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            earlier = repos.purchases.get(reader_id, req.request_id)
            if earlier is not None:
                if server_wallet is not None:
                    raise AlreadyExists("request id already used")  # replayed by the caller
                return self._replay_purchase(repos, earlier, fingerprint)
            if repos.coins.exists(req.ecoin_id):
                raise AlreadyExists("ecoin id already sold under another request")
            self.redemption.settle_flags(repos, reader_id, now_ms)
            amount_minor = req.n * req.unit_value_minor
            transaction_id = self.bank.collect(
                repos,
                reader_id,
                amount_minor,
                req.currency,
                kind="buy_coin",
                key=f"buy:{req.ecoin_id}",
                at_ms=now_ms,
            )
            expires_at_ms = now_ms + self.limits.coin_expiry_s * 1000
            touchstone = seal(
                pb.Touchstone(
                    ecoin_id=req.ecoin_id,
                    root=req.root,
                    n=req.n,
                    unit_value_minor=req.unit_value_minor,
                    currency=req.currency,
                    wallet_kind=(
                        pb.WALLET_KIND_SERVER_SIDE
                        if req.wallet_kind is WalletKind.SERVER_SIDE
                        else pb.WALLET_KIND_CLIENT_SIDE
                    ),
                    owner=reader_id,
                    issued_at_ms=now_ms,
                    expires_at_ms=expires_at_ms,
                    broker_id=self.broker_id,
                ),
                self.key,
            )
            repos.coins.add(
                CoinRecordView(
                    ecoin_id=req.ecoin_id,
                    n=req.n,
                    unit_value_minor=req.unit_value_minor,
                    expires_at_ms=expires_at_ms,
                    state=CoinState.FREE,
                    frozen=False,
                    holder=None,
                    epoch=0,
                    latest=IndexedWord(0, req.root),
                ),
                owner=reader_id,
                currency=req.currency,
                wallet_kind=req.wallet_kind.value,
                root=req.root,
                touchstone=touchstone.SerializeToString(),
                issued_at_ms=now_ms,
            )
            if server_wallet is not None:
                assert req.wallet_kind is WalletKind.SERVER_SIDE
                server_wallet.created_at_ms = now_ms
                repos.wallets.add(server_wallet)
            repos.purchases.add(
                PurchaseRow(
                    reader_id=reader_id,
                    request_id=req.request_id,
                    fingerprint=fingerprint,
                    ecoin_id=req.ecoin_id,
                    amount_minor=amount_minor,
                    currency=req.currency,
                    transaction_id=transaction_id,
                    created_at_ms=now_ms,
                )
            )
            repos.commit()
        return PurchaseResult(touchstone, amount_minor, req.currency, req.ecoin_id)

    def _replay_purchase(
        self, repos: Repos, earlier: PurchaseRow, fingerprint: bytes
    ) -> PurchaseResult:
        if not secrets.compare_digest(earlier.fingerprint, fingerprint):
            raise AlreadyExists("request id reused with a different request")
        stored = repos.coins.get(earlier.ecoin_id)
        assert stored is not None, earlier.ecoin_id
        return PurchaseResult(
            _envelope(stored.touchstone), earlier.amount_minor, earlier.currency, earlier.ecoin_id
        )

    def _status(self, stored: StoredCoin, now_ms: int) -> CoinStatusView:
        coin = stored.view
        return CoinStatusView(
            touchstone=_envelope(stored.touchstone),
            state=effective_state(coin, now_ms),
            frozen=coin.frozen,
            holder=coin.holder,
            epoch=coin.epoch,
            latest=coin.latest,
        )

    def get_coin(
        self, ecoin_id: str, *, reader_id: str | None = None, vendor_id: str | None = None
    ) -> CoinStatusView:
        """A coin's status for its owner or for any vendor."""
        assert (reader_id is None) != (vendor_id is None)
        check_ecoin_id(ecoin_id)
        with self.store.begin() as repos:
            stored = repos.coins.get(ecoin_id)
        if stored is None or (reader_id is not None and stored.owner != reader_id):
            raise NotFound(f"no coin {ecoin_id}")
        return self._status(stored, self.clock.now_ms())

    def list_coins(self, reader_id: str) -> list[CoinStatusView]:
        """The reader's coins, newest first (at most MAX_LISTED_COINS)."""
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            coins = repos.coins.list_for_owner(reader_id, MAX_LISTED_COINS)
        return [self._status(stored, now_ms) for stored in coins]

    def freeze_coin(
        self, ecoin_id: str, *, frozen: bool = True, reader_id: str | None = None
    ) -> CoinStatusView:
        """Set or clear the frozen flag (loss reporting); only the owner when ``reader_id``
        is given. Idempotent."""
        check_ecoin_id(ecoin_id)
        with self.store.begin() as repos:
            stored = self._coin_for_update(repos, ecoin_id)
            if reader_id is not None and stored.owner != reader_id:
                raise NotFound(f"no coin {ecoin_id}")
            after = stored.view
            if stored.view.frozen != frozen:
                after = transition(stored.view, Freeze() if frozen else Unfreeze())
                repos.coins.apply(stored.view, after)
                repos.commit()
        return self._status(
            StoredCoin(after, stored.owner, stored.currency, stored.wallet_kind, stored.touchstone),
            self.clock.now_ms(),
        )

    # -- custody ------------------------------------------------------------------

    def _coin_for_update(self, repos: Repos, ecoin_id: str) -> StoredCoin:
        stored = repos.coins.get(ecoin_id, for_update=True)
        if stored is None:
            raise NotFound(f"no coin {ecoin_id}")
        return stored

    def _grant(self, repos: Repos, stored: StoredCoin, epoch: EpochView) -> CustodyGrantView:
        return CustodyGrantView(
            ecoin_id=stored.view.ecoin_id,
            epoch=epoch.epoch,
            base=epoch.base,
            touchstone=_envelope(stored.touchstone),
            lease_ttl_s=self.limits.lease_ttl_s,
            max_skew_s=self.limits.max_skew_s,
            holder=epoch.holder,
            refund_pending_units=repos.redemption.pending_refund_units(stored.view.ecoin_id),
        )

    def _bound_units(self, coin: CoinRecordView) -> int:
        return proof_bound_units(self.limits, coin.unit_value_minor)

    def _effective_at(self, stored: StoredCoin, at: IndexedWord) -> IndexedWord:
        """The holder's index, or for a server-side coin whose latest word is above it
        (a window drawn for the holder whose reply never arrived, or whose worker died
        before recording it) the broker's own latest word, once ``w[latest]`` is shown to
        hash down to the holder's word. Those drawn words are then void (refunded to the
        reader after expiry) instead of stranding the coin."""
        coin = stored.view
        if stored.wallet_kind != WalletKind.SERVER_SIDE.value or at.index >= coin.latest.index:
            return at
        steps = coin.latest.index - at.index
        if steps > self._bound_units(coin) or not verify_word(
            coin.ecoin_bytes, at.index, at.word, coin.latest.index, coin.latest.word, steps
        ):
            return at  # the normal check refuses it
        return coin.latest

    def _current_epoch(self, repos: Repos, coin: CoinRecordView) -> EpochView | None:
        if coin.epoch == 0:
            return None
        current = repos.coins.epoch(coin.ecoin_id, coin.epoch)
        assert current is not None, (coin.ecoin_id, coin.epoch)
        return current

    def _renew(self, repos: Repos, stored: StoredCoin, caller: str, now_ms: int) -> EpochView:
        coin = stored.view
        current = self._current_epoch(repos, coin)
        assert current is not None and current.holder == caller
        renewed = transition(coin, RenewLease(caller, coin.epoch, self._lease_expires_ms(now_ms)))
        repos.coins.apply(coin, renewed)
        return current

    def acquire_coin(
        self,
        caller: str,
        ecoin_id: str,
        proof_index: int,
        proof_word: bytes,
        *,
        force: bool,
        wallet_grant: pb.Envelope | None = None,
        currency: str = "",
    ) -> CustodyGrantView | HandOffRequiredView:
        """AcquireCoin (protocol.md, "Coin custody", step 1).

        ``wallet_grant`` (a server-side coin): a WalletGrant naming the caller
        and this coin is the proof instead of ``(proof_index, proof_word)``.
        """
        check_ecoin_id(ecoin_id)
        if wallet_grant is None and len(proof_word) != WORD_BYTES:
            raise InvalidArgument(f"proof word must be {WORD_BYTES} bytes")
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            if wallet_grant is not None:
                proof, _row = self._check_wallet_grant(repos, wallet_grant, caller, now_ms)
                if proof.ecoin_id != ecoin_id:
                    raise PermissionDenied("the wallet grant is for another coin")
            stored = self._coin_for_update(repos, ecoin_id)
            coin = stored.view
            if currency and currency != stored.currency:
                raise WrongCurrency(f"the coin is in {stored.currency}, the price in {currency}")
            decision = decide_acquire(
                coin,
                caller,
                now_ms,
                proof_index,
                proof_word,
                bound_units=self._bound_units(coin),
                force=force,
                busy_retry_after_s=self.limits.max_skew_s,
                grant_proof=wallet_grant is not None,
            )
            if decision is AcquireDecision.RENEW:
                current = self._renew(repos, stored, caller, now_ms)
                granted = self._grant(repos, stored, current)
                repos.commit()
                return granted
            if decision is AcquireDecision.GRANT:
                after = transition(coin, Acquire(caller, now_ms, self._lease_expires_ms(now_ms)))
                repos.coins.apply(coin, after)
                opened = EpochView(
                    epoch=after.epoch,
                    holder=caller,
                    base=after.latest,
                    opened_by=EpochOpening.ACQUIRE,
                    opened_from=None,
                )
                repos.coins.open_epoch(ecoin_id, opened, now_ms)
                granted = self._grant(repos, stored, opened)
                repos.commit()
                return granted
            if decision is AcquireDecision.RECALL:
                outcome = self._recall(repos, stored, caller, now_ms)
                if isinstance(outcome, CoinBusy):
                    repos.commit()  # the recall began (or goes on): keep it
                    raise outcome
                repos.commit()
                return outcome
            assert decision is AcquireDecision.HANDOFF and coin.holder is not None
            holder_row = repos.vendors.get(coin.holder)
            if holder_row is None or holder_row.certificate is None:
                raise Unavailable(f"the holder {coin.holder} has no certificate")
            expires_at_ms = now_ms + self.limits.handoff_grant_ttl_s * 1000
            grant = seal(
                pb.HandOffGrant(
                    ecoin_id=ecoin_id,
                    from_vendor=coin.holder,
                    to_vendor=caller,
                    epoch=coin.epoch,
                    expires_at_ms=expires_at_ms,
                    broker_id=self.broker_id,
                ),
                self.key,
            )
            after = transition(coin, IssueHandOffGrant(caller, coin.epoch, expires_at_ms))
            repos.coins.apply(coin, after)
            holder_certificate = _envelope(holder_row.certificate)
            repos.commit()
        return HandOffRequiredView(
            grant=grant,
            holder_certificate=holder_certificate,
            touchstone=_envelope(stored.touchstone),
        )

    def _recall(
        self, repos: Repos, stored: StoredCoin, caller: str, now_ms: int
    ) -> CustodyGrantView | CoinBusy:
        """Begin or go on with ``caller``'s recall (protocol.md, custody step 5).

        Begun, the holder's lease is no longer renewed and its next Checkpoint
        asks for its final CoinIndex; the recall completes with that index, or
        once ``lease_ttl_s + max_skew_s`` passed since the holder's last renewal:
        then the epoch is force-closed at the last checkpoint +
        ``max_unreported_units`` and the caller's epoch starts at the last
        checkpoint. Until then the caller gets ``coin_busy`` (returned, so the
        caller can commit first)."""
        coin = stored.view
        if coin.state is CoinState.HELD:
            deadline = max(coin.lease_expires_ms or now_ms, now_ms) + self.limits.max_skew_s * 1000
            after = transition(coin, BeginRecall(caller, coin.epoch, now_ms, deadline))
            repos.coins.apply(coin, after)
            log.info(
                "coin %s: %s recalls epoch %d from %s",
                coin.ecoin_id,
                caller,
                coin.epoch,
                coin.holder,
            )
            coin = after
        assert coin.state is CoinState.RECALLING and coin.grant_expires_ms is not None
        if now_ms < coin.grant_expires_ms:
            wait_s = max(1, math.ceil((coin.grant_expires_ms - now_ms) / 1000))
            return CoinBusy(
                f"the coin is being recalled from {coin.holder}; retry", retry_after_s=wait_s
            )
        previous = coin.holder
        assert previous is not None
        forced_end = min(coin.latest.index + self.limits.max_unreported_units, coin.n)
        after = transition(
            coin,
            FinishRecall(
                to_vendor=caller,
                epoch=coin.epoch,
                at=coin.latest,
                now_ms=now_ms,
                lease_expires_ms=self._lease_expires_ms(now_ms),
                forced=True,
            ),
        )
        opened = self._switch_epoch(
            repos, coin, after, coin.latest, EpochOpening.FORCED, previous, now_ms, forced_end
        )
        log.warning(
            "coin %s: epoch %d of %s force-closed at %d; %s holds epoch %d from %d",
            coin.ecoin_id,
            coin.epoch,
            previous,
            forced_end,
            caller,
            opened.epoch,
            coin.latest.index,
        )
        return self._grant(repos, stored, opened)

    def _vendor_key_lookup(self, repos: Repos) -> Callable[[pb.CoinIndex], bytes]:
        def key_for(index: pb.CoinIndex) -> bytes:
            if not 1 <= len(index.vendor_id) <= 32:
                raise SignatureInvalid("the CoinIndex names no valid vendor")
            key = repos.vendors.public_key(index.vendor_id)
            if key is None:
                raise SignatureInvalid(f"unknown signer {index.vendor_id}")
            return key

        return key_for

    def _open_coin_index(
        self, envelope: pb.Envelope, signer_key: bytes | Callable[[pb.CoinIndex], bytes]
    ) -> CoinIndexView:
        msg = open_envelope(envelope, pb.CoinIndex, signer_key)
        check_ecoin_id(msg.ecoin_id)
        check_party_id(msg.vendor_id)
        if msg.to_vendor:
            check_party_id(msg.to_vendor)
        if len(msg.payword) != WORD_BYTES:
            raise InvalidArgument(f"payword must be {WORD_BYTES} bytes")
        return CoinIndexView(
            ecoin_id=msg.ecoin_id,
            epoch=msg.epoch,
            at=IndexedWord(msg.index, msg.payword),
            vendor_id=msg.vendor_id,
            to_vendor=msg.to_vendor,
            issued_at_ms=msg.issued_at_ms,
        )

    def _keep_handoff_credit(
        self, repos: Repos, index: CoinIndexView, credit: pb.Envelope, now_ms: int
    ) -> None:
        """The WindowCredit that came with a hand-off's CoinIndex: kept for the reader."""
        key = repos.vendors.public_key(index.vendor_id)
        assert key is not None  # the CoinIndex was verified with it
        view = parse_window_credit(credit, key)
        if (view.vendor_id, view.ecoin_id, view.epoch) != (
            index.vendor_id,
            index.ecoin_id,
            index.epoch,
        ):
            raise InvalidArgument("the window credit is for another coin, epoch or vendor")
        if view.window_top > index.at.index:
            # At the index, or below it when clicks were paid one by one above the
            # window after it was opened.
            raise InvalidArgument("the window credit's top is above the CoinIndex's index")
        epoch = repos.coins.epoch(index.ecoin_id, index.epoch)
        if epoch is None:
            raise PreconditionFailed(f"no epoch {index.epoch}")
        keep_window_credit(repos, view, credit, epoch, now_ms)

    def record_handoff(
        self, caller: str, coin_index: pb.Envelope, window_credit: pb.Envelope | None = None
    ) -> CustodyGrantView:
        """RecordHandoff (step 2): close the holder's epoch, open epoch + 1 for the caller.

        ``window_credit`` (the one the holder returned with the CoinIndex) is
        kept for the reader in the same transaction."""
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            index = self._open_coin_index(coin_index, self._vendor_key_lookup(repos))
            if index.to_vendor != caller:
                raise PermissionDenied("the CoinIndex hands the coin to another vendor")
            if index.vendor_id == caller:
                raise InvalidArgument("a vendor cannot hand a coin to itself")
            stored = self._coin_for_update(repos, index.ecoin_id)
            coin = stored.view
            current = self._current_epoch(repos, coin)
            if current is not None and handoff_is_repeat(coin, current, caller, index):
                if window_credit is not None:
                    self._keep_handoff_credit(repos, index, window_credit, now_ms)
                self._renew(repos, stored, caller, now_ms)
                granted = self._grant(repos, stored, current)
                repos.commit()
                return granted
            if index.epoch != coin.epoch or not coin.holds(index.vendor_id):
                raise PreconditionFailed(
                    f"epoch {index.epoch} of {index.vendor_id} is not the coin's current "
                    f"epoch ({coin.epoch})"
                )
            at = self._effective_at(stored, index.at)
            check_index_advance(coin, at, self._bound_units(coin))
            after = transition(
                coin,
                HandOff(
                    from_vendor=index.vendor_id,
                    to_vendor=caller,
                    epoch=index.epoch,
                    at=at,
                    now_ms=now_ms,
                    lease_expires_ms=self._lease_expires_ms(now_ms),
                ),
            )
            opened = self._switch_epoch(
                repos, coin, after, at, EpochOpening.HANDOFF, index.vendor_id, now_ms
            )
            if window_credit is not None:
                self._keep_handoff_credit(repos, index, window_credit, now_ms)
            granted = self._grant(repos, stored, opened)
            repos.commit()
        return granted

    def reclaim(
        self, caller: str, ecoin_id: str, epoch: int, coin_index: pb.Envelope
    ) -> CustodyGrantView:
        """Reclaim (step 3): the holder closes its epoch and opens epoch + 1 itself."""
        check_ecoin_id(ecoin_id)
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            caller_key = repos.vendors.public_key(caller)
            if caller_key is None:
                raise Unauthenticated(f"vendor {caller} is not enrolled")
            index = self._open_coin_index(coin_index, caller_key)
            if index.vendor_id != caller:
                raise PermissionDenied("the CoinIndex must be signed by the caller")
            if index.ecoin_id != ecoin_id or index.epoch != epoch:
                raise InvalidArgument("the CoinIndex is for another coin or epoch")
            stored = self._coin_for_update(repos, ecoin_id)
            coin = stored.view
            current = self._current_epoch(repos, coin)
            if current is not None and reclaim_is_repeat(coin, current, caller, epoch, index):
                self._renew(repos, stored, caller, now_ms)
                granted = self._grant(repos, stored, current)
                repos.commit()
                return granted
            if epoch != coin.epoch or not coin.holds(caller):
                raise PreconditionFailed(
                    f"epoch {epoch} is no longer current (the coin is at epoch {coin.epoch})"
                )
            at = self._effective_at(stored, index.at)
            check_index_advance(coin, at, self._bound_units(coin))
            after = transition(
                coin,
                Reclaim(
                    vendor_id=caller,
                    epoch=epoch,
                    at=at,
                    now_ms=now_ms,
                    lease_expires_ms=self._lease_expires_ms(now_ms),
                ),
            )
            opened = self._switch_epoch(
                repos, coin, after, at, EpochOpening.RECLAIM, caller, now_ms
            )
            granted = self._grant(repos, stored, opened)
            repos.commit()
        return granted

    def _switch_epoch(
        self,
        repos: Repos,
        before: CoinRecordView,
        after: CoinRecordView,
        at: IndexedWord,
        how: EpochOpening,
        previous_holder: str,
        now_ms: int,
        forced_end: int | None = None,
    ) -> EpochView:
        """Write a hand-off, reclaim or recall: the coin, the closed epoch and the
        opened one (a forced recall closes the epoch at ``forced_end``)."""
        assert after.epoch == before.epoch + 1 and after.holder is not None
        repos.coins.apply(before, after)
        end: IndexedWord | int = at if forced_end is None else forced_end
        repos.coins.close_epoch(before.ecoin_id, before.epoch, end, now_ms, how)
        opened = EpochView(
            epoch=after.epoch,
            holder=after.holder,
            base=at,
            opened_by=how,
            opened_from=previous_holder,
        )
        repos.coins.open_epoch(before.ecoin_id, opened, now_ms)
        return opened

    def checkpoint(self, caller: str, indexes: Sequence[pb.Envelope]) -> CheckpointOutcome:
        """Checkpoint (step 4): acknowledge each held coin's index and renew its lease."""
        if len(indexes) > self.limits.max_checkpoint_indexes:
            raise InvalidArgument(
                f"at most {self.limits.max_checkpoint_indexes} indexes per checkpoint"
            )
        now_ms = self.clock.now_ms()
        results: list[CheckpointItem] = []
        with self.store.begin() as repos:
            caller_key = repos.vendors.public_key(caller)
            if caller_key is None:
                raise Unauthenticated(f"vendor {caller} is not enrolled")
            for envelope in indexes:
                results.append(self._checkpoint_one(repos, caller, caller_key, envelope, now_ms))
            repos.commit()
        return CheckpointOutcome(tuple(results), self.limits.lease_ttl_s, self.limits.max_skew_s)

    def _checkpoint_one(
        self, repos: Repos, caller: str, caller_key: bytes, envelope: pb.Envelope, now_ms: int
    ) -> CheckpointItem:
        claimed_id, claimed_epoch = _peek_coin_index(envelope)
        try:
            index = self._open_coin_index(envelope, caller_key)
        except NetPayError as err:
            return CheckpointItem(
                claimed_id, claimed_epoch, CheckpointStatus.REJECTED, err.detail, 0
            )
        if index.vendor_id != caller:
            return CheckpointItem(
                index.ecoin_id,
                index.epoch,
                CheckpointStatus.REJECTED,
                "the CoinIndex names another vendor",
                0,
            )
        stored = repos.coins.get(index.ecoin_id, for_update=True)
        if stored is None:
            return CheckpointItem(
                index.ecoin_id, index.epoch, CheckpointStatus.REJECTED, "unknown coin", 0
            )
        coin = stored.view
        if (
            coin.state is CoinState.RECALLING
            and coin.holder == caller
            and coin.epoch == index.epoch
        ):
            return self._checkpoint_recalled(repos, stored, caller, index, now_ms)
        if coin.epoch != index.epoch or not coin.holds(caller):
            return CheckpointItem(
                index.ecoin_id,
                index.epoch,
                CheckpointStatus.CLOSED,
                f"epoch {index.epoch} is not yours (the coin is at epoch {coin.epoch})",
                coin.latest.index,
            )
        if coin.frozen:
            return CheckpointItem(
                index.ecoin_id,
                index.epoch,
                CheckpointStatus.REJECTED,
                "revoked: the coin is frozen",
                coin.latest.index,
                revoked=True,
            )
        try:
            at = self._effective_at(stored, index.at)
            check_index_advance(coin, at, self._bound_units(coin))
            after = transition(
                coin,
                CheckpointIndex(caller, index.epoch, at, self._lease_expires_ms(now_ms)),
            )
        except NetPayError as err:
            return _checkpoint_refused(index, err, coin.latest.index)
        repos.coins.apply(coin, after)
        return CheckpointItem(
            index.ecoin_id, index.epoch, CheckpointStatus.LEASED, "", after.latest.index
        )

    def _checkpoint_recalled(
        self, repos: Repos, stored: StoredCoin, caller: str, index: CoinIndexView, now_ms: int
    ) -> CheckpointItem:
        """The holder of a coin being recalled: its final CoinIndex (to the recalling
        vendor) closes the epoch; any other index is recorded and answered RECALLED."""
        coin = stored.view
        target = coin.grant_to_vendor
        assert target is not None
        try:
            at = self._effective_at(stored, index.at)
            check_index_advance(coin, at, self._bound_units(coin))
            if index.to_vendor == target:
                after = transition(
                    coin,
                    FinishRecall(
                        to_vendor=target,
                        epoch=coin.epoch,
                        at=at,
                        now_ms=now_ms,
                        lease_expires_ms=self._lease_expires_ms(now_ms),
                        forced=False,
                    ),
                )
                self._switch_epoch(repos, coin, after, at, EpochOpening.RECALL, caller, now_ms)
                return CheckpointItem(
                    index.ecoin_id,
                    index.epoch,
                    CheckpointStatus.CLOSED,
                    f"recalled by {target}: your epoch ends at {at.index}",
                    at.index,
                )
            if at.index > coin.latest.index:
                repos.coins.apply(coin, transition(coin, ClaimIndex(caller, coin.epoch, at)))
        except NetPayError as err:
            return _checkpoint_refused(index, err, coin.latest.index)
        return CheckpointItem(
            index.ecoin_id,
            index.epoch,
            CheckpointStatus.RECALLED,
            f"{target} is recalling the coin: stop and send your final CoinIndex",
            max(at.index, coin.latest.index),
            recall_to=target,
        )

    # -- server-side wallets ---------------------------------------------------------

    def _certified_origin(self, repos: Repos, vendor_id: str, now_ms: int) -> tuple[str, str]:
        """``(web origin, display name)`` from the vendor's valid certificate, or NotFound."""
        row = repos.vendors.get(vendor_id)
        data = row.certificate if row is not None else None
        if data is None:
            raise NotFound(f"no newspaper {vendor_id}")
        cert = open_envelope(_envelope(data), pb.VendorCertificate, self.key.public_key)
        if cert.vendor_id != vendor_id or cert.valid_until_ms <= now_ms or not cert.web_origin:
            raise NotFound(f"newspaper {vendor_id} has no valid certificate")
        return cert.web_origin, cert.display_name or vendor_id

    def signin_target(self, vendor_id: str, return_to: str) -> SigninTarget:
        """Check a sign-in request: ``return_to`` must lie on the vendor's certified origin.

        InvalidArgument for anything else (another origin, user info, a
        relative URL, control characters, more than MAX_RETURN_TO_CHARS).
        """
        check_party_id(vendor_id)
        if not 1 <= len(return_to) <= MAX_RETURN_TO_CHARS or not return_to.isprintable():
            raise InvalidArgument("return_to must be an absolute URL of the newspaper")
        with self.store.begin() as repos:
            origin, name = self._certified_origin(repos, vendor_id, self.clock.now_ms())
        try:
            parts = urlsplit(return_to)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise InvalidArgument("return_to is not a valid URL") from None
        if (
            parts.scheme not in ("http", "https")
            or "@" in parts.netloc
            or "\\" in return_to
            or f"{parts.scheme}://{parts.netloc}".lower() != origin.lower()
        ):
            raise InvalidArgument(f"return_to must be on {vendor_id}'s web origin {origin}")
        return SigninTarget(vendor_id, name, origin, return_to)

    def _check_wallet_signin_rate(
        self, repos: Repos, ecoin_id: str, window_start_ms: int, now_ms: int
    ) -> None:
        failures = repos.wallets.recent_failures(ecoin_id, window_start_ms)
        if len(failures) >= MAX_WALLET_SIGNIN_FAILURES:
            unblock_ms = failures[-MAX_WALLET_SIGNIN_FAILURES] + WALLET_SIGNIN_WINDOW_S * 1000
            retry_after_s = max(1, math.ceil((unblock_ms - now_ms) / 1000))
            raise PermissionDenied(
                f"too many failed sign-ins with this e-coin; retry in {retry_after_s} s",
                retry_after_s=retry_after_s,
            )

    @staticmethod
    def _live_wallet_coin(stored: StoredCoin | None, now_ms: int) -> StoredCoin:
        if stored is None or stored.wallet_kind != WalletKind.SERVER_SIDE.value:
            raise NotFound("no such server-side wallet")
        if effective_state(stored.view, now_ms) is CoinState.EXPIRED:
            raise Expired("the e-coin has expired")
        if stored.view.frozen:
            raise Revoked("the e-coin is frozen")
        return stored

    def _issue_code(self, repos: Repos, ecoin_id: str, vendor_id: str, now_ms: int) -> str:
        code = new_token()
        repos.wallets.add_code(
            WalletCodeRow(
                code_sha256=hash_token(code),
                ecoin_id=ecoin_id,
                vendor_id=vendor_id,
                created_at_ms=now_ms,
                expires_at_ms=now_ms + WALLET_CODE_TTL_S * 1000,
            ),
            now_ms,
        )
        return code

    def wallet_signin(self, ecoin_id: str, password: str, vendor_id: str) -> WalletSignin:
        """E-coin id + wallet password at the portal -> a one-time code for ``vendor_id``.

        Failed attempts are counted per e-coin id (unknown ids too): after
        MAX_WALLET_SIGNIN_FAILURES within WALLET_SIGNIN_WINDOW_S the answer is
        PermissionDenied with ``retry_after_s``. The browser also gets a wallet
        session (its token; only its hash is stored) for one-click sign-ins.
        """
        check_party_id(vendor_id)
        ecoin_id = ecoin_id.strip().lower()
        wrong = Unauthenticated("wrong e-coin id or wallet password")
        if not _ECOIN_ID_RE.fullmatch(ecoin_id) or len(password) > MAX_PASSWORD_CHARS:
            raise wrong
        now_ms = self.clock.now_ms()
        window_start_ms = now_ms - WALLET_SIGNIN_WINDOW_S * 1000
        with self.store.begin() as repos:
            self._certified_origin(repos, vendor_id, now_ms)
            self._check_wallet_signin_rate(repos, ecoin_id, window_start_ms, now_ms)
            wallet = repos.wallets.get(ecoin_id)
            stored_hash = wallet.password_hash if wallet is not None else self._dummy_hash
        ok = self._verify_password(stored_hash, password) and wallet is not None
        session_token = new_token()
        with self.store.begin() as repos:
            repos.wallets.prune_failures(window_start_ms)
            if not ok:
                repos.wallets.add_failure(ecoin_id, now_ms)
                repos.commit()
                raise wrong
            self._check_wallet_signin_rate(repos, ecoin_id, window_start_ms, now_ms)
            repos.wallets.clear_failures(ecoin_id)
            stored = self._live_wallet_coin(repos.coins.get(ecoin_id), now_ms)
            code = self._issue_code(repos, ecoin_id, vendor_id, now_ms)
            repos.wallets.add_session(
                WalletSessionRow(
                    session_sha256=hash_token(session_token),
                    ecoin_id=ecoin_id,
                    created_at_ms=now_ms,
                    expires_at_ms=min(
                        now_ms + PORTAL_SESSION_TTL_S * 1000, stored.view.expires_at_ms
                    ),
                ),
                now_ms,
            )
            repos.commit()
        return WalletSignin(ecoin_id=ecoin_id, code=code, session_token=session_token)

    def wallet_session_coin(self, session_token: str) -> str | None:
        """The e-coin a live wallet session signed in with, else None."""
        digest = _session_hash(session_token)
        if digest is None:
            return None
        with self.store.begin() as repos:
            return repos.wallets.session_coin(digest, self.clock.now_ms())

    def wallet_continue(self, session_token: str, vendor_id: str) -> WalletSignin:
        """One-click sign-in at another vendor with the session's e-coin: a fresh code."""
        check_party_id(vendor_id)
        digest = _session_hash(session_token)
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            self._certified_origin(repos, vendor_id, now_ms)
            ecoin_id = repos.wallets.session_coin(digest, now_ms) if digest else None
            if ecoin_id is None:
                raise Unauthenticated("the wallet session has ended; sign in again")
            self._live_wallet_coin(repos.coins.get(ecoin_id), now_ms)
            code = self._issue_code(repos, ecoin_id, vendor_id, now_ms)
            repos.commit()
        return WalletSignin(ecoin_id=ecoin_id, code=code, session_token=session_token)

    def wallet_session_end(self, session_token: str) -> None:
        """Forget a browser's wallet session (unknown ones are fine)."""
        digest = _session_hash(session_token)
        if digest is None:
            return
        with self.store.begin() as repos:
            repos.wallets.delete_session(digest)
            repos.commit()

    def exchange_wallet_code(self, caller: str, code: str) -> WalletGrantView:
        """ExchangeWalletCode: the caller's live, unused code -> a WalletGrant (single use)."""
        unknown = NotFound("unknown, expired or already used wallet code")
        if not 1 <= len(code) <= MAX_WALLET_CODE_CHARS:
            raise unknown
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            ecoin_id = repos.wallets.use_code(hash_token(code), caller, now_ms)
            if ecoin_id is None:
                raise unknown
            stored = self._live_wallet_coin(repos.coins.get(ecoin_id), now_ms)
            coin = stored.view
            grant_msg = pb.WalletGrant(
                grant_id=secrets.token_hex(16),
                ecoin_id=ecoin_id,
                vendor_id=caller,
                max_units=coin.n - coin.latest.index,
                expires_at_ms=coin.expires_at_ms,
                broker_id=self.broker_id,
                issued_at_ms=now_ms,
            )
            limits = repos.spending.limits_in(stored.owner, stored.currency)
            if limits is not None and limits.max_click_minor is not None:
                grant_msg.max_click_minor = limits.max_click_minor
            repos.wallets.add_grant(
                WalletGrantRow(
                    grant_id=grant_msg.grant_id,
                    ecoin_id=ecoin_id,
                    vendor_id=caller,
                    max_units=grant_msg.max_units,
                    drawn_units=0,
                    issued_at_ms=now_ms,
                    expires_at_ms=grant_msg.expires_at_ms,
                )
            )
            repos.commit()
        return WalletGrantView(
            grant=seal(grant_msg, self.key),
            touchstone=_envelope(stored.touchstone),
            latest_index=coin.latest.index,
        )

    def _check_wallet_grant(
        self, repos: Repos, envelope: pb.Envelope, caller: str, now_ms: int
    ) -> tuple[pb.WalletGrant, WalletGrantRow]:
        """A WalletGrant this broker signed and issued, for the caller, not expired."""
        grant = open_envelope(envelope, pb.WalletGrant, self.key.public_key)
        if grant.broker_id != self.broker_id:
            raise SignatureInvalid("the wallet grant names another broker")
        if grant.vendor_id != caller:
            raise PermissionDenied("the wallet grant names another vendor")
        if grant.expires_at_ms <= now_ms:
            raise Expired("the wallet grant has expired")
        row = repos.wallets.grant(grant.grant_id) if len(grant.grant_id) == 32 else None
        if (
            row is None
            or row.ecoin_id != grant.ecoin_id
            or row.vendor_id != caller
            or row.max_units != grant.max_units
        ):
            raise PermissionDenied("unknown wallet grant")
        return grant, row

    def draw_window(
        self, caller: str, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> WindowDrawView:
        """DrawWindow: release ``w[i + units]`` to the holder and record it as the latest word.

        The latest known word moves and the grant's drawn units grow in the
        same transaction that computes the word; nothing changes on a refusal.
        """
        now_ms = self.clock.now_ms()
        busy_s = self.limits.handoff_ttl_s
        with self.store.begin() as repos:
            grant, grant_row = self._check_wallet_grant(repos, wallet_grant, caller, now_ms)
            stored = self._coin_for_update(repos, grant.ecoin_id)
            coin = stored.view
            wallet = repos.wallets.get(coin.ecoin_id)
            if stored.wallet_kind != WalletKind.SERVER_SIDE.value or wallet is None:
                raise InvalidArgument("windows are drawn only from server-side coins")
            check_can_draw(coin, caller, epoch, now_ms, busy_retry_after_s=busy_s)
            allowed = allowed_window_units(
                WindowRequest(
                    units=units,
                    latest_index=coin.latest.index,
                    n=coin.n,
                    max_window_units=self.limits.max_window_units,
                    grant_max_units=grant_row.max_units,
                    grant_drawn_units=grant_row.drawn_units,
                )
            )
            if self._vault is None:
                raise Unavailable("this broker has no wallet data key")
            try:
                chain = self._vault.open(coin.ecoin_id, coin.n, wallet.sealed_chain)
            except ValueError as exc:
                raise Unavailable(f"the coin's chain cannot be opened: {exc}") from None
            # The reader's daily limit: the window's value counts against the day.
            amount_minor = allowed * coin.unit_value_minor
            day = utc_day(now_ms)
            limits = repos.spending.limits_in(stored.owner, stored.currency)
            cap = None if limits is None else limits.max_day_minor
            if not repos.spending.charge(stored.owner, day, stored.currency, amount_minor, cap):
                check_spend(
                    limits,
                    amount_minor,
                    repos.spending.spent(stored.owner, day, stored.currency),
                    per_click=False,
                )
                raise LimitExceeded("the reader's daily spending limit is reached")
            top = IndexedWord(coin.latest.index + allowed, chain.word(coin.latest.index + allowed))
            after = transition(coin, DrawWindow(caller, epoch, top, now_ms, busy_s))
            repos.coins.apply(coin, after)
            repos.wallets.draw_from_grant(grant_row.grant_id, grant_row.drawn_units, allowed)
            repos.commit()
        return WindowDrawView(
            ecoin_id=coin.ecoin_id,
            epoch=epoch,
            from_index=coin.latest.index,
            to_index=top.index,
            payword=top.word,
            touchstone=_envelope(stored.touchstone),
            grant_units_left=grant_row.max_units - grant_row.drawn_units - allowed,
        )


def _checkpoint_refused(
    index: CoinIndexView, err: NetPayError, latest_index: int
) -> CheckpointItem:
    """A CoinIndex the broker refuses: REJECTED with the error and its latest index."""
    return CheckpointItem(
        index.ecoin_id,
        index.epoch,
        CheckpointStatus.REJECTED,
        f"{err.code}: {err.detail}",
        latest_index,
    )


def _instrument_view(row: PaymentInstrumentRow) -> InstrumentView:
    return InstrumentView(
        instrument_id=row.instrument_id,
        kind=InstrumentKind(row.kind),
        brand=row.brand,
        last4=row.last4,
        country=row.country,
        exp_month=row.exp_month,
        exp_year=row.exp_year,
        holder_name=row.holder_name,
        is_default=row.is_default,
    )


def _peek_coin_index(envelope: pb.Envelope) -> tuple[str, int]:
    """Unverified ``(ecoin_id, epoch)`` of a CoinIndex, only to label a rejection."""
    msg = pb.CoinIndex()
    try:
        if envelope.payload_type == pb.CoinIndex.DESCRIPTOR.full_name:
            msg.ParseFromString(envelope.payload[:65536])
    except DecodeError:
        return "", 0
    ecoin_id = msg.ecoin_id if len(msg.ecoin_id) <= 32 else ""
    return ecoin_id, msg.epoch
