"""The vendor's use cases: pay, hand_off, acquire, checkpoint_all, reclaim_due.

Each use case runs its database work in one unit of work; broker and peer
calls happen outside any transaction. Talking to the broker and to other
vendors goes through the :class:`BrokerClient` and :class:`PeerClient`
protocols, so unit tests use fakes and production uses gRPC
(``vendor.broker_client``, ``vendor.peer_client``).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from netpay.chain import WORD_BYTES
from netpay.clock import Clock
from netpay.envelope import SigningKey, open_envelope, seal
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    BrokerUnavailable,
    CoinBusy,
    Malformed,
    NetPayError,
    NotFound,
    PaymentError,
    PermissionDenied,
    PreconditionFailed,
    Revoked,
    SignatureInvalid,
    Unauthenticated,
    Unavailable,
    WrongAmount,
)
from netpay.header import Credentials, parse_authorization
from netpay.limits import Limits
from netpay.money import Money
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from vendor.domain import (
    CoinView,
    Item,
    VendorCoinState,
    check_payment,
    lease_deadline_ms,
    lease_is_live,
    needs_checkpoint,
    verify_payword,
)
from vendor.storage import ClickRecord, EpochGrant, Revenue, StoredCoin, VendorRepository

__all__ = [
    "BrokerClient",
    "CertificateBook",
    "CheckpointSummary",
    "Dashboard",
    "PaymentResult",
    "PeerClient",
    "VendorIdentity",
    "VendorServices",
]

log = logging.getLogger(__name__)


class UnitOfWorkFactory(Protocol):
    """``netpay.sqlstore.UnitOfWork``: a transaction per call; reads may skip the write lock."""

    def __call__(self, *, read_only: bool = False) -> AbstractContextManager[Session]: ...


_PAY_ATTEMPTS = 4
_HANDOFF_ATTEMPTS = 3
_MAX_CERTIFICATES = 1024
_ITEM_ID_MAX = 64
_DASHBOARD_MAX_ROWS = 1_000


class BrokerClient(Protocol):
    """The broker RPCs the vendor's use cases need (vendor-authenticated).

    Every method raises a typed NetPayError; an unreachable broker is
    :class:`BrokerUnavailable`.
    """

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope: ...

    def acquire_coin(
        self, ecoin_id: str, proof_index: int, proof_word: bytes
    ) -> broker_pb2.AcquireCoinResponse: ...

    def record_handoff(self, coin_index: pb.Envelope) -> broker_pb2.CustodyGrant: ...

    def reclaim(
        self, ecoin_id: str, epoch: int, coin_index: pb.Envelope
    ) -> broker_pb2.CustodyGrant: ...

    def checkpoint(self, indexes: Sequence[pb.Envelope]) -> broker_pb2.CheckpointResponse: ...


class PeerClient(Protocol):
    """Calls to another vendor's gRPC service, signed as this vendor."""

    def hand_off(self, address: str, grant: pb.Envelope) -> pb.Envelope:
        """``Vendor.HandOff(grant)`` at ``address``; returns Envelope(CoinIndex)."""
        ...


@dataclass(frozen=True)
class VendorIdentity:
    vendor_id: str
    key: SigningKey
    broker_id: str
    broker_public_key: bytes


@dataclass(frozen=True)
class PaymentResult:
    """An accepted (or re-served) payment."""

    receipt: bytes  # serialized Envelope(Receipt)
    words_left: int
    replayed: bool
    ecoin_id: str
    to_index: int
    unit_value_minor: int  # the coin's u: the reader's credit is words_left * u
    currency: str

    @property
    def credit_left(self) -> Money:
        """What is left on the reader's coin after this payment."""
        return Money(self.words_left * self.unit_value_minor, self.currency)


@dataclass(frozen=True)
class Dashboard:
    """The operator's view: clicks, revenue to be redeemed, the coins held."""

    click_count: int
    recent_clicks: Sequence[ClickRecord]
    revenue: Sequence[Revenue]
    coin_counts: Mapping[VendorCoinState, int]
    coins: Sequence[CoinView]  # HELD and HANDING_OFF, most recently changed first
    now_ms: int


@dataclass(frozen=True)
class CheckpointSummary:
    leased: int = 0
    closed: int = 0
    rejected: int = 0
    revoked: int = 0  # rejected because the coin is frozen (the broker says "revoked: ...")


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


def _payment_error_from_broker(err: NetPayError) -> NetPayError:
    """What a reader sees when a broker call on its payment's path fails."""
    if isinstance(err, PaymentError):
        return err
    if isinstance(err, NotFound):
        return BadPayword(f"the broker does not know this coin: {err.detail}")
    if isinstance(err, PreconditionFailed):
        return CoinBusy(f"the coin is changing hands: {err.detail}", retry_after_s=1)
    return BrokerUnavailable(f"the broker refused: {err.code}: {err.detail}")


class VendorServices:
    """The vendor's use cases over one database and one broker."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        identity: VendorIdentity,
        broker: BrokerClient,
        peers: PeerClient,
        limits: Limits,
        clock: Clock,
        repo: VendorRepository | None = None,
        certificates: CertificateBook | None = None,
    ) -> None:
        self._uow = uow
        self._id = identity
        self._broker = broker
        self._peers = peers
        self.limits = limits
        self._clock = clock
        self._repo = repo or VendorRepository()
        self.certificates = certificates or CertificateBook(broker, identity, clock)

    @property
    def vendor_id(self) -> str:
        return self._id.vendor_id

    @property
    def broker_id(self) -> str:
        return self._id.broker_id

    # -- reads -----------------------------------------------------------------

    def coin(self, ecoin_id: str) -> StoredCoin | None:
        with self._uow(read_only=True) as session:
            return self._repo.get(session, ecoin_id)

    def clicks(self, ecoin_id: str) -> Sequence[ClickRecord]:
        with self._uow(read_only=True) as session:
            return self._repo.clicks(session, ecoin_id)

    def dashboard(self, *, clicks_limit: int = 20, coins_limit: int = 100) -> Dashboard:
        """Everything the operator's dashboard shows, read in one unit of work."""
        clicks_limit = max(0, min(clicks_limit, _DASHBOARD_MAX_ROWS))
        coins_limit = max(0, min(coins_limit, _DASHBOARD_MAX_ROWS))
        with self._uow(read_only=True) as session:
            return Dashboard(
                click_count=self._repo.click_count(session),
                recent_clicks=self._repo.recent_clicks(session, limit=clicks_limit),
                revenue=self._repo.revenue(session),
                coin_counts=self._repo.coin_counts(session),
                coins=[
                    s.view
                    for s in self._repo.coins_in(
                        session,
                        (VendorCoinState.HELD, VendorCoinState.HANDING_OFF),
                        limit=coins_limit,
                    )
                ],
                now_ms=self._clock.now_ms(),
            )

    # -- paying ----------------------------------------------------------------

    def pay(self, header_value: str, item: Item, now_ms: int) -> PaymentResult:
        """Accept one paid click (protocol.md, "The HTTP payment").

        The spend and the click are committed durably before this returns;
        the caller may then send the resource.
        """
        if not 0 < len(item.item_id) <= _ITEM_ID_MAX:
            raise Malformed("bad item id")
        creds = parse_authorization(header_value)
        if creds.window is not None:
            raise Malformed("windows are not supported yet")

        # One read, one statement for both: the retry lookup (before any
        # custody check) and the coin.
        with self._uow(read_only=True) as session:
            first_look, earlier = self._repo.pay_lookup(session, creds.ecoin_id, creds.index)
        replay = self._replay_of(earlier, first_look, creds, item, now_ms)
        if replay is not None:
            return replay

        checkpointed = probed = False
        for attempt in range(_PAY_ATTEMPTS):
            stored = first_look if attempt == 0 else self.coin(creds.ecoin_id)
            if stored is None or stored.view.state is VendorCoinState.CLOSED:
                if creds.index <= creds.prev:
                    raise WrongAmount("index must be above prev")
                stored = self._acquire(creds, now_ms)
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF:
                if not probed:
                    # The reader may be back from the next holder: if the broker says
                    # the hand-off completed, our epoch is closed and we acquire anew.
                    probed = True
                    if self._probe_closed(coin):
                        continue
                raise CoinBusy("the coin is being handed off", retry_after_s=self._busy_s(stored))
            if coin.state is VendorCoinState.CLOSED:
                continue
            if not lease_is_live(coin, now_ms):
                self._renew(coin)
                continue
            try:
                plan = check_payment(coin, creds.prev, creds.index, item, self.limits, now_ms)
            except AlreadySpent:
                # A twin of this very purchase may have committed since the first look.
                replay = self._replay(creds, item, now_ms)
                if replay is not None:
                    return replay
                raise
            if not checkpointed and needs_checkpoint(coin, creds.index, self.limits):
                checkpointed = True
                self._renew(coin)
                continue
            verify_payword(creds.ecoin_bytes, coin, creds.index, creds.payword)
            receipt = seal(
                pb.Receipt(
                    vendor_id=self._id.vendor_id,
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    from_index=plan.prev,
                    to_index=plan.index,
                    amount_minor=item.price.amount_minor,
                    currency=item.price.currency,
                    item_id=item.item_id,
                    time_ms=now_ms,
                ),
                self._id.key,
            ).SerializeToString()
            click = ClickRecord(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                from_index=plan.prev,
                to_index=plan.index,
                payword=creds.payword,
                item_id=item.item_id,
                amount_minor=item.price.amount_minor,
                currency=item.price.currency,
                receipt=receipt,
                created_at_ms=now_ms,
            )
            if self._commit_spend(coin, click, now_ms):
                return PaymentResult(
                    receipt=receipt,
                    words_left=coin.n - plan.index,
                    replayed=False,
                    ecoin_id=coin.ecoin_id,
                    to_index=plan.index,
                    unit_value_minor=coin.unit_value_minor,
                    currency=coin.currency,
                )
            # Lost the compare-and-set: maybe to the same purchase, else resync.
            replay = self._replay(creds, item, now_ms)
            if replay is not None:
                return replay
            fresh = self.coin(creds.ecoin_id)
            assert fresh is not None, "a coin row is never deleted"
            if fresh.view.state is VendorCoinState.HANDING_OFF:
                raise CoinBusy("the coin is being handed off", retry_after_s=self._busy_s(fresh))
            if (
                fresh.view.state is VendorCoinState.HELD
                and fresh.view.epoch == coin.epoch
                and fresh.view.index != coin.index
            ):
                raise AlreadySpent(
                    f"another payment moved the coin to {fresh.view.index}",
                    index=fresh.view.index,
                    payword=fresh.view.payword,
                )
        raise CoinBusy("the coin keeps changing; retry", retry_after_s=1)

    def _replay(self, creds: Credentials, item: Item, now_ms: int) -> PaymentResult | None:
        with self._uow(read_only=True) as session:
            stored, click = self._repo.pay_lookup(session, creds.ecoin_id, creds.index)
        return self._replay_of(click, stored, creds, item, now_ms)

    def _replay_of(
        self,
        click: ClickRecord | None,
        stored: StoredCoin | None,
        creds: Credentials,
        item: Item,
        now_ms: int,
    ) -> PaymentResult | None:
        """The same header for the same item within retry_ttl_s is the same purchase.

        ``click`` is the click that took ``creds.index`` and ``stored`` its coin,
        both read in one unit.
        """
        if click is None or not secrets.compare_digest(click.payword, creds.payword):
            return None
        if click.created_at_ms < now_ms - self.limits.retry_ttl_s * 1000:
            return None
        assert stored is not None, "a click implies a coin row"
        if click.item_id != item.item_id:
            raise AlreadySpent(
                "this payword already paid for another item",
                index=stored.view.index,
                payword=stored.view.payword,
            )
        return PaymentResult(
            receipt=click.receipt,
            words_left=stored.view.n - click.to_index,
            replayed=True,
            ecoin_id=click.ecoin_id,
            to_index=click.to_index,
            unit_value_minor=stored.view.unit_value_minor,
            currency=stored.view.currency,
        )

    def _commit_spend(self, coin: CoinView, click: ClickRecord, now_ms: int) -> bool:
        with self._uow() as session:
            moved = self._repo.cas_pay(
                session,
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                from_index=coin.index,
                to_index=click.to_index,
                payword=click.payword,
                now_ms=now_ms,
            )
            if not moved:
                return False
            try:
                self._repo.add_click(session, click)
            except IntegrityError:
                return False
            session.commit()
        return True

    def _busy_s(self, stored: StoredCoin) -> int:
        started = stored.handoff_started_ms or self._clock.now_ms()
        left_ms = started + self.limits.handoff_ttl_s * 1000 - self._clock.now_ms()
        return max(1, min(self.limits.handoff_ttl_s, -(-left_ms // 1000)))

    # -- acquiring -------------------------------------------------------------

    def _acquire(self, creds: Credentials, now_ms: int) -> StoredCoin:
        """Take custody of a coin this vendor does not hold (AcquireCoin)."""
        sent_ms = self._clock.now_ms()
        try:
            reply = self._broker.acquire_coin(creds.ecoin_id, creds.index, creds.payword)
        except NetPayError as err:
            raise _payment_error_from_broker(err) from err
        kind = reply.WhichOneof("result")
        if kind == "custody":
            grant = reply.custody
        elif kind == "handoff":
            grant, sent_ms = self._take_over(reply.handoff, creds.ecoin_id, now_ms)
        else:
            raise BrokerUnavailable("the broker sent an empty AcquireCoin reply")
        return self._store_grant(grant, creds.ecoin_id, sent_ms)

    def _take_over(
        self, handoff: broker_pb2.HandOffRequired, ecoin_id: str, now_ms: int
    ) -> tuple[broker_pb2.CustodyGrant, int]:
        """The T&I transfer from the current holder, then RecordHandoff."""
        me = self._id.vendor_id
        try:
            grant = open_envelope(handoff.grant, pb.HandOffGrant, self._id.broker_public_key)
            holder = self.certificates.verify(handoff.holder_certificate)
        except NetPayError as err:
            detail = err.detail
            raise BrokerUnavailable(f"the broker's hand-off reply is invalid: {detail}") from err
        if (
            grant.ecoin_id != ecoin_id
            or grant.to_vendor != me
            or grant.from_vendor != holder.vendor_id
            or (grant.broker_id and grant.broker_id != self._id.broker_id)
        ):
            raise BrokerUnavailable("the broker's hand-off grant does not match")
        if grant.expires_at_ms <= now_ms:
            raise CoinBusy("the hand-off grant expired; retry", retry_after_s=1)
        try:
            ci_envelope = self._peers.hand_off(holder.grpc_address, handoff.grant)
        except CoinBusy:
            raise
        except Unavailable as err:
            raise CoinBusy(
                f"the holder {holder.vendor_id} is unreachable: {err.detail}",
                retry_after_s=self.limits.handoff_ttl_s,
            ) from err
        except NetPayError as err:
            raise CoinBusy(
                f"the holder {holder.vendor_id} refused the hand-off: {err.code}",
                retry_after_s=1,
            ) from err
        try:
            ci = open_envelope(ci_envelope, pb.CoinIndex, bytes(holder.public_key))
        except SignatureInvalid as err:
            raise CoinBusy(
                f"the holder's CoinIndex is invalid: {err.detail}", retry_after_s=1
            ) from err
        if (
            ci.ecoin_id != ecoin_id
            or ci.epoch != grant.epoch
            or ci.vendor_id != holder.vendor_id
            or ci.to_vendor != me
            or len(ci.payword) != WORD_BYTES
        ):
            raise CoinBusy("the holder's CoinIndex does not match the grant", retry_after_s=1)
        sent_ms = self._clock.now_ms()
        try:
            custody = self._broker.record_handoff(ci_envelope)
        except NetPayError as err:
            raise _payment_error_from_broker(err) from err
        return custody, sent_ms

    def _store_grant(
        self, grant: broker_pb2.CustodyGrant, ecoin_id: str, sent_ms: int
    ) -> StoredCoin:
        """Verify a custody grant's touchstone and store the epoch."""
        try:
            touchstone = open_envelope(grant.touchstone, pb.Touchstone, self._id.broker_public_key)
        except SignatureInvalid as err:
            raise BrokerUnavailable(f"the broker's touchstone is invalid: {err.detail}") from err
        if (
            grant.ecoin_id != ecoin_id
            or touchstone.ecoin_id != ecoin_id
            or (grant.holder and grant.holder != self._id.vendor_id)
            or (touchstone.broker_id and touchstone.broker_id != self._id.broker_id)
            or len(grant.base_word) != WORD_BYTES
            or grant.base_index > touchstone.n
            or grant.epoch < 1
        ):
            raise BrokerUnavailable("the broker's custody grant does not match the coin")
        deadline = lease_deadline_ms(
            sent_ms,
            grant.lease_ttl_s or self.limits.lease_ttl_s,
            grant.max_skew_s or self.limits.max_skew_s,
        )
        epoch = EpochGrant(
            ecoin_id=ecoin_id,
            epoch=grant.epoch,
            base_index=grant.base_index,
            base_word=grant.base_word,
            n=touchstone.n,
            unit_value_minor=touchstone.unit_value_minor or 1,
            currency=touchstone.currency,
            expires_at_ms=touchstone.expires_at_ms,
            touchstone=grant.touchstone.SerializeToString(),
            lease_deadline_ms=deadline,
        )
        now_ms = self._clock.now_ms()
        for _ in range(2):
            with self._uow() as session:
                try:
                    stored = self._repo.open_epoch(session, epoch, now_ms)
                    session.commit()
                except IntegrityError:
                    continue  # a concurrent first payment inserted the row: re-read it
                return stored
        raise CoinBusy("the coin is being stored by another request; retry", retry_after_s=1)

    # -- handing off (we are the holder) ---------------------------------------

    def hand_off(self, grant_envelope: pb.Envelope, caller: str, now_ms: int) -> pb.Envelope:
        """``Vendor.HandOff``: sign our CoinIndex for ``caller`` and stop accepting."""
        me = self._id.vendor_id
        grant = open_envelope(grant_envelope, pb.HandOffGrant, self._id.broker_public_key)
        if grant.broker_id and grant.broker_id != self._id.broker_id:
            raise SignatureInvalid("the grant names another broker")
        if grant.expires_at_ms <= now_ms:
            raise PreconditionFailed("the hand-off grant has expired")
        if grant.from_vendor != me:
            raise PreconditionFailed("the grant names another holder")
        if grant.to_vendor != caller:
            raise PermissionDenied("the grant names another vendor than the caller")
        for _ in range(_HANDOFF_ATTEMPTS):
            stored = self.coin(grant.ecoin_id)
            if stored is None:
                raise PreconditionFailed("this vendor does not hold the coin")
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF and coin.epoch == grant.epoch:
                if stored.handoff_to == caller and stored.handoff_coin_index is not None:
                    envelope = pb.Envelope()
                    envelope.ParseFromString(stored.handoff_coin_index)
                    return envelope
                raise CoinBusy(
                    "the coin is being handed to another vendor",
                    retry_after_s=self._busy_s(stored),
                )
            if coin.state is not VendorCoinState.HELD or coin.epoch != grant.epoch:
                raise PreconditionFailed(
                    f"this vendor does not hold epoch {grant.epoch} of the coin"
                )
            envelope = seal(
                pb.CoinIndex(
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    index=coin.index,
                    payword=coin.payword,
                    vendor_id=me,
                    to_vendor=caller,
                    issued_at_ms=now_ms,
                ),
                self._id.key,
            )
            with self._uow() as session:
                moved = self._repo.start_handoff(
                    session,
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    index=coin.index,
                    to_vendor=caller,
                    coin_index=envelope.SerializeToString(),
                    now_ms=now_ms,
                )
                if moved:
                    session.commit()
                    log.info("coin %s epoch %d handed to %s", coin.ecoin_id, coin.epoch, caller)
                    return envelope
        raise CoinBusy("the coin keeps changing; retry", retry_after_s=1)

    # -- leases ----------------------------------------------------------------

    def reset_leases(self) -> None:
        """At start: hold no lease until the broker renews it."""
        with self._uow() as session:
            self._repo.drop_all_leases(session)
            session.commit()

    def _renew(self, coin: CoinView) -> None:
        """A synchronous checkpoint of one coin on a payment's path."""
        try:
            summary = self._checkpoint([coin])
        except NetPayError as err:
            raise BrokerUnavailable(f"could not renew the lease: {err.detail}") from err
        if summary.revoked:
            raise Revoked("the coin has been reported lost")
        if summary.rejected:
            raise BrokerUnavailable("the broker did not renew the lease")

    def _probe_closed(self, coin: CoinView) -> bool:
        """Checkpoint one HANDING_OFF coin: True when the broker says our epoch is over."""
        try:
            return self._checkpoint([coin]).closed > 0
        except NetPayError as err:
            log.info("probe of %s failed: %s", coin.ecoin_id, err.detail)
            return False

    def checkpoint_all(self) -> CheckpointSummary:
        """One Checkpoint with a sealed CoinIndex per HELD coin (in pages)."""
        total = CheckpointSummary()
        after = ""
        page = self.limits.max_checkpoint_indexes
        while True:
            with self._uow() as session:
                coins = [
                    s.view for s in self._repo.held_coins(session, after_ecoin_id=after, limit=page)
                ]
            if not coins:
                return total
            now_ms = self._clock.now_ms()
            live = [c for c in coins if c.expires_at_ms > now_ms]  # nothing to renew otherwise
            if live:
                summary = self._checkpoint(live)
                total = CheckpointSummary(
                    total.leased + summary.leased,
                    total.closed + summary.closed,
                    total.rejected + summary.rejected,
                    total.revoked + summary.revoked,
                )
            if len(coins) < page:
                return total
            after = coins[-1].ecoin_id

    def _checkpoint(self, coins: Sequence[CoinView]) -> CheckpointSummary:
        now_ms = self._clock.now_ms()
        envelopes = [
            seal(
                pb.CoinIndex(
                    ecoin_id=c.ecoin_id,
                    epoch=c.epoch,
                    index=c.index,
                    payword=c.payword,
                    vendor_id=self._id.vendor_id,
                    issued_at_ms=now_ms,
                ),
                self._id.key,
            )
            for c in coins
        ]
        sent_ms = self._clock.now_ms()
        reply = self._broker.checkpoint(envelopes)
        deadline = lease_deadline_ms(
            sent_ms,
            reply.lease_ttl_s or self.limits.lease_ttl_s,
            reply.max_skew_s or self.limits.max_skew_s,
        )
        by_id = {c.ecoin_id: c for c in coins}
        leased = closed = rejected = revoked = 0
        with self._uow() as session:
            for result in reply.results:
                coin = by_id.get(result.ecoin_id)
                if coin is None:
                    continue
                if result.status == broker_pb2.CHECKPOINT_STATUS_LEASED:
                    if result.epoch != coin.epoch or result.acknowledged_index > coin.index:
                        log.warning("checkpoint reply for %s does not match", coin.ecoin_id)
                        continue
                    self._repo.renew_lease(
                        session,
                        ecoin_id=coin.ecoin_id,
                        epoch=coin.epoch,
                        lease_deadline_ms=deadline,
                        acknowledged_index=result.acknowledged_index,
                    )
                    leased += 1
                elif result.status == broker_pb2.CHECKPOINT_STATUS_CLOSED:
                    self._repo.close_epoch(
                        session, ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms
                    )
                    log.info("coin %s epoch %d closed by the broker", coin.ecoin_id, coin.epoch)
                    closed += 1
                else:
                    self._repo.drop_lease(session, ecoin_id=coin.ecoin_id, epoch=coin.epoch)
                    log.warning("checkpoint of %s rejected: %s", coin.ecoin_id, result.detail[:200])
                    rejected += 1
                    revoked += int(result.detail.startswith("revoked"))
            session.commit()
        return CheckpointSummary(leased, closed, rejected, revoked)

    # -- abandoned hand-offs -----------------------------------------------------

    def reclaim_due(self) -> int:
        """Reclaim every coin HANDING_OFF for longer than handoff_ttl_s.

        Returns how many coins changed (reclaimed or closed).
        """
        now_ms = self._clock.now_ms()
        cutoff = now_ms - self.limits.handoff_ttl_s * 1000
        with self._uow() as session:
            due = self._repo.handoffs_started_before(session, cutoff)
        changed = 0
        for stored in due:
            try:
                if self._reclaim(stored.view, now_ms):
                    changed += 1
            except NetPayError as err:
                log.warning("reclaim of %s failed: %s", stored.view.ecoin_id, err.detail)
        return changed

    def _reclaim(self, coin: CoinView, now_ms: int) -> bool:
        envelope = seal(
            pb.CoinIndex(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                index=coin.index,
                payword=coin.payword,
                vendor_id=self._id.vendor_id,
                issued_at_ms=now_ms,
            ),
            self._id.key,
        )
        sent_ms = self._clock.now_ms()
        try:
            grant = self._broker.reclaim(coin.ecoin_id, coin.epoch, envelope)
        except (PreconditionFailed, NotFound) as err:
            # The hand-off completed first (or the coin is gone): the epoch is over.
            with self._uow() as session:
                closed = self._repo.close_epoch(
                    session, ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms
                )
                session.commit()
            log.info("coin %s epoch %d closed: %s", coin.ecoin_id, coin.epoch, err.detail)
            return closed
        if (
            grant.ecoin_id != coin.ecoin_id
            or grant.epoch <= coin.epoch
            or (grant.holder and grant.holder != self._id.vendor_id)
            or len(grant.base_word) != WORD_BYTES
        ):
            raise BrokerUnavailable("the broker's reclaim grant does not match")
        deadline = lease_deadline_ms(
            sent_ms,
            grant.lease_ttl_s or self.limits.lease_ttl_s,
            grant.max_skew_s or self.limits.max_skew_s,
        )
        with self._uow() as session:
            moved = self._repo.reclaimed(
                session,
                ecoin_id=coin.ecoin_id,
                old_epoch=coin.epoch,
                new_epoch=grant.epoch,
                base_index=grant.base_index,
                base_word=grant.base_word,
                lease_deadline_ms=deadline,
                now_ms=now_ms,
            )
            session.commit()
        log.info("coin %s reclaimed in epoch %d", coin.ecoin_id, grant.epoch)
        return moved
