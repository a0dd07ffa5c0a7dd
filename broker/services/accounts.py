"""The reader's account at the web portal: sessions, profile, instruments, limits.

- portal sign-in, registration and sign-out (a browser session whose token
  only the cookie holds; the password check is :mod:`broker.services.identity`'s);
- the profile: optional display name and e-mail, erasing personal data;
- demo payment instruments (checked by :mod:`broker.domain.personal`);
- spending limits per currency (GetAccount/SetSpendingLimits and the portal).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from broker.domain.personal import (
    MAX_INSTRUMENTS,
    BankAccountDetails,
    CardDetails,
    InstrumentKind,
    check_email,
    check_profile_name,
)
from broker.services.common import PORTAL_SESSION_TTL_S, hash_token, new_token, session_hash
from broker.services.identity import Identity
from broker.services.ports import BrokerPorts
from broker.storage import PaymentInstrumentRow, Repos
from netpay.errors import InvalidArgument, NotFound, Unauthenticated
from netpay.spending import SpendingLimits, utc_day

__all__ = ["Accounts", "InstrumentView", "PortalSession", "ProfileView"]


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


def _instrument_row(
    reader_id: str, instrument_id: str, details: CardDetails | BankAccountDetails, now_ms: int
) -> PaymentInstrumentRow:
    if isinstance(details, CardDetails):
        return PaymentInstrumentRow(
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
    return PaymentInstrumentRow(
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


def _lock_reader(repos: Repos, reader_id: str) -> None:
    """Lock the reader's row: the rules that hold per reader hold under it."""
    if repos.readers.get(reader_id, for_update=True) is None:
        raise NotFound("no such reader")


class Accounts:
    """Portal sessions, the profile, payment instruments and spending limits."""

    def __init__(self, ports: BrokerPorts, identity: Identity) -> None:
        self._ports = ports
        self._identity = identity

    # -- portal sessions -------------------------------------------------------------

    @staticmethod
    def _open_portal_session(repos: Repos, reader_id: str, now_ms: int) -> PortalSession:
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

        self._identity.password_login(username, password, issue)
        return opened[0]

    def portal_register(self, username: str, password: str) -> PortalSession:
        """Open a reader account (as RegisterReader) and sign it in at the portal."""
        reader_id = self._identity.register_reader(username, password)
        with self._ports.uow() as repos:
            opened = self._open_portal_session(repos, reader_id, self._ports.clock.now_ms())
            repos.commit()
        return opened

    def portal_reader(self, session_token: str) -> str:
        """The reader of a live portal session, or Unauthenticated."""
        digest = session_hash(session_token)
        reader_id = None
        if digest is not None:
            with self._ports.uow() as repos:
                reader_id = repos.portal.session_reader(digest, self._ports.clock.now_ms())
        if reader_id is None:
            raise Unauthenticated("unknown or expired portal session")
        return reader_id

    def portal_logout(self, session_token: str) -> None:
        """End a portal session (unknown or ended sessions are fine)."""
        digest = session_hash(session_token)
        if digest is None:
            return
        with self._ports.uow() as repos:
            repos.portal.delete_session(digest)
            repos.commit()

    # -- profile ---------------------------------------------------------------------

    @staticmethod
    def _profile(repos: Repos, reader_id: str) -> ProfileView:
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
        with self._ports.uow() as repos:
            return self._profile(repos, reader_id)

    def update_profile(self, reader_id: str, display_name: str, email: str) -> ProfileView:
        """Set the optional display name and e-mail (empty clears one)."""
        name = check_profile_name(display_name)
        address = check_email(email)
        with self._ports.uow() as repos:
            _lock_reader(repos, reader_id)
            repos.portal.save_profile(reader_id, name, address, self._ports.clock.now_ms())
            view = self._profile(repos, reader_id)
            repos.commit()
        return view

    def erase_personal_data(self, reader_id: str) -> ProfileView:
        """Erase name, e-mail and payment instruments; money records and login stay."""
        with self._ports.uow() as repos:
            _lock_reader(repos, reader_id)
            repos.portal.save_profile(
                reader_id, None, None, self._ports.clock.now_ms(), erased=True
            )
            repos.portal.delete_instruments(reader_id)
            view = self._profile(repos, reader_id)
            repos.commit()
        return view

    # -- payment instruments -----------------------------------------------------------

    def list_instruments(self, reader_id: str) -> list[InstrumentView]:
        with self._ports.uow() as repos:
            return [_instrument_view(row) for row in repos.portal.instruments(reader_id)]

    def add_instrument(
        self,
        reader_id: str,
        details: CardDetails | BankAccountDetails,
        *,
        make_default: bool = False,
    ) -> InstrumentView:
        """Keep a demo instrument (checked by ``broker.domain.personal``); the first is
        the default."""
        instrument_id = secrets.token_hex(16)
        row = _instrument_row(reader_id, instrument_id, details, self._ports.clock.now_ms())
        with self._ports.uow() as repos:
            # Lock the reader: the count and the one-default rule hold per reader.
            _lock_reader(repos, reader_id)
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
        with self._ports.uow() as repos:
            _lock_reader(repos, reader_id)
            if not repos.portal.delete_instrument(reader_id, instrument_id):
                raise NotFound("no such payment instrument")
            remaining = repos.portal.instruments(reader_id)
            if remaining and not any(r.is_default for r in remaining):
                repos.portal.set_default(reader_id, remaining[0].instrument_id)
            repos.commit()

    def set_default_instrument(self, reader_id: str, instrument_id: str) -> None:
        with self._ports.uow() as repos:
            _lock_reader(repos, reader_id)
            if not repos.portal.set_default(reader_id, instrument_id):
                raise NotFound("no such payment instrument")
            repos.commit()

    # -- spending limits -----------------------------------------------------------------

    def spending_limits(self, reader_id: str) -> list[tuple[SpendingLimits, int]]:
        """The reader's limits per offered currency, with what was spent today."""
        day = utc_day(self._ports.clock.now_ms())
        with self._ports.uow(read_only=True) as repos:
            stored = {lim.currency: lim for lim in repos.spending.limits(reader_id)}
            return [
                (
                    stored.get(currency, SpendingLimits(currency)),
                    repos.spending.spent(reader_id, day, currency),
                )
                for currency in self._ports.currencies
            ]

    def set_spending_limits(self, reader_id: str, limits: SpendingLimits) -> None:
        """Set (or, with no limits, clear) the reader's limits in one offered currency."""
        if limits.currency not in self._ports.currencies:
            raise InvalidArgument(f"this broker does not sell {limits.currency[:3]!r} coins")
        with self._ports.uow() as repos:
            repos.spending.set_limits(reader_id, limits, self._ports.clock.now_ms())
            repos.commit()
