"""Custody of coins at this vendor: acquire a coin, both sides of a hand-off
between vendors, leases and checkpoints, answering a recall, and reclaiming
an abandoned hand-off.

- :meth:`Custody.acquire` / :meth:`Custody.acquire_by`: ``Broker.AcquireCoin``;
  when another vendor holds the coin, :meth:`Custody.take_over` runs the
  hand-off from it (``Vendor.HandOff`` at the holder, then
  ``Broker.RecordHandoff``), and a forced acquisition when the holder
  cannot be reached.
- :meth:`Custody.hand_off_with_credit`: the holder's side (``Vendor.HandOff``):
  stop accepting the coin, close its open window, sign the CoinIndex.
- :meth:`Custody.renew` / :meth:`Custody.checkpoint_all`: ``Broker.Checkpoint``
  renews leases, closes epochs the broker says are over and answers recalls.
- :meth:`Custody.reclaim_due`: ``Broker.Reclaim`` of hand-offs nobody finished.

Broker and peer calls happen outside any transaction; every database change
is a compare-and-set in one unit of work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netpay.chain import WORD_BYTES
from netpay.encoding import check_party_id
from netpay.envelope import open_envelope, seal
from netpay.errors import (
    BadPayword,
    BrokerUnavailable,
    CoinBusy,
    NetPayError,
    NotFound,
    PaymentError,
    PermissionDenied,
    PreconditionFailed,
    Revoked,
    SignatureInvalid,
    Unavailable,
)
from netpay.header import Credentials
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from vendor.domain import CloseReason, CoinView, VendorCoinState, WindowView, lease_deadline_ms
from vendor.services.certificates import CertificateBook
from vendor.services.credits import WindowCredits
from vendor.services.ports import HandOffResult, VendorPorts
from vendor.storage import EpochGrant, StoredCoin, VendorUnit

__all__ = ["CheckpointSummary", "Custody", "payment_error_from_broker"]

log = logging.getLogger("vendor.services")

_HANDOFF_ATTEMPTS = 3

AcquireCall = Callable[[bool], broker_pb2.AcquireCoinResponse]


@dataclass(frozen=True)
class CheckpointSummary:
    leased: int = 0
    closed: int = 0
    rejected: int = 0
    revoked: int = 0  # rejected because the coin is frozen (CheckpointResult.revoked)

    def __add__(self, other: CheckpointSummary) -> CheckpointSummary:
        return CheckpointSummary(
            self.leased + other.leased,
            self.closed + other.closed,
            self.rejected + other.rejected,
            self.revoked + other.revoked,
        )


class _HolderUnreachable(CoinBusy):
    """The holder did not answer ``Vendor.HandOff``: the reader gets ``coin_busy``
    unless a forced acquisition takes the coin."""


def payment_error_from_broker(err: NetPayError) -> NetPayError:
    """What a reader sees when a broker call on its payment's path fails."""
    if isinstance(err, PaymentError):
        return err
    if isinstance(err, NotFound):
        return BadPayword(f"the broker does not know this coin: {err.detail}")
    if isinstance(err, PreconditionFailed):
        return CoinBusy(f"the coin is changing hands: {err.detail}", retry_after_s=1)
    return BrokerUnavailable(f"the broker refused: {err.code}: {err.detail}")


class Custody:
    """Acquire, hand off, lease, checkpoint and reclaim coins."""

    def __init__(
        self, ports: VendorPorts, certificates: CertificateBook, credits: WindowCredits
    ) -> None:
        self._uow = ports.uow
        self._id = ports.identity
        self._broker = ports.broker
        self._peers = ports.peers
        self._limits = ports.limits
        self._clock = ports.clock
        self._certificates = certificates
        self._credits = credits

    # -- reads -----------------------------------------------------------------

    def coin(self, ecoin_id: str) -> StoredCoin | None:
        with self._uow(read_only=True) as unit:
            return unit.coins.get(ecoin_id)

    def busy_s(self, stored: StoredCoin) -> int:
        """Retry-After for a coin HANDING_OFF: until its hand-off times out."""
        started = stored.handoff_started_ms or self._clock.now_ms()
        left_ms = started + self._limits.handoff_ttl_s * 1000 - self._clock.now_ms()
        return max(1, min(self._limits.handoff_ttl_s, -(-left_ms // 1000)))

    # -- acquiring -------------------------------------------------------------

    def acquire(self, creds: Credentials, now_ms: int, currency: str = "") -> StoredCoin:
        """Take custody of a coin this vendor does not hold (AcquireCoin); the broker
        refuses a coin in another ``currency`` before custody moves."""
        return self.acquire_by(
            creds.ecoin_id,
            lambda force: self._broker.acquire_coin(
                creds.ecoin_id, creds.index, creds.payword, force=force, currency=currency
            ),
            now_ms,
        )

    def acquire_by(self, ecoin_id: str, call: AcquireCall, now_ms: int) -> StoredCoin:
        """AcquireCoin (by ``call(force)``: a payword or a WalletGrant proof), then the
        hand-off from the holder when the broker says so; when the holder cannot be
        reached, a forced acquisition (the broker recalls the coin: ``coin_busy``
        until the holder's final index arrives or its lease has run out)."""
        sent_ms = self._clock.now_ms()
        try:
            reply = call(False)
        except NetPayError as err:
            raise payment_error_from_broker(err) from err
        kind = reply.WhichOneof("result")
        if kind == "custody":
            grant = reply.custody
        elif kind == "handoff":
            try:
                grant, sent_ms = self.take_over(reply.handoff, ecoin_id, now_ms)
            except _HolderUnreachable as unreachable:
                grant, sent_ms = self._force(ecoin_id, call, unreachable)
        else:
            raise BrokerUnavailable("the broker sent an empty AcquireCoin reply")
        return self._store_grant(grant, ecoin_id, sent_ms)

    def _force(
        self, ecoin_id: str, call: AcquireCall, unreachable: _HolderUnreachable
    ) -> tuple[broker_pb2.CustodyGrant, int]:
        """The forced acquisition after a hand-off the holder never answered."""
        sent_ms = self._clock.now_ms()
        try:
            reply = call(True)
        except NetPayError as err:
            raise payment_error_from_broker(err) from err
        if reply.WhichOneof("result") != "custody":
            raise unreachable
        log.warning("coin %s: taken by a forced acquisition (%s)", ecoin_id, unreachable.detail)
        return reply.custody, sent_ms

    # -- handing off (we are the next holder) ----------------------------------

    def take_over(
        self, handoff: broker_pb2.HandOffRequired, ecoin_id: str, now_ms: int
    ) -> tuple[broker_pb2.CustodyGrant, int]:
        """Hand a coin from its holder to this vendor: the T&I transfer from the
        current holder (``Vendor.HandOff``), then ``Broker.RecordHandoff``.
        Returns the new epoch's grant and when RecordHandoff was sent."""
        grant, holder = self._check_handoff(handoff, ecoin_id, now_ms)
        handed = self._ask_holder(holder, handoff.grant)
        ci_envelope = handed.coin_index
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
            or ci.to_vendor != self._id.vendor_id
            or len(ci.payword) != WORD_BYTES
        ):
            raise CoinBusy("the holder's CoinIndex does not match the grant", retry_after_s=1)
        sent_ms = self._clock.now_ms()
        try:
            custody = self._broker.record_handoff(ci_envelope, handed.window_credit)
        except NetPayError as err:
            raise payment_error_from_broker(err) from err
        return custody, sent_ms

    def _check_handoff(
        self, handoff: broker_pb2.HandOffRequired, ecoin_id: str, now_ms: int
    ) -> tuple[pb.HandOffGrant, pb.VendorCertificate]:
        """The broker's HandOffGrant to us, and the holder's certificate."""
        try:
            grant = open_envelope(handoff.grant, pb.HandOffGrant, self._id.broker_public_key)
            holder = self._certificates.verify(handoff.holder_certificate)
        except NetPayError as err:
            detail = err.detail
            raise BrokerUnavailable(f"the broker's hand-off reply is invalid: {detail}") from err
        if (
            grant.ecoin_id != ecoin_id
            or grant.to_vendor != self._id.vendor_id
            or grant.from_vendor != holder.vendor_id
            or (grant.broker_id and grant.broker_id != self._id.broker_id)
        ):
            raise BrokerUnavailable("the broker's hand-off grant does not match")
        if grant.expires_at_ms <= now_ms:
            raise CoinBusy("the hand-off grant expired; retry", retry_after_s=1)
        return grant, holder

    def _ask_holder(self, holder: pb.VendorCertificate, grant: pb.Envelope) -> HandOffResult:
        """``Vendor.HandOff`` at the holder."""
        try:
            return self._peers.hand_off(holder.grpc_address, grant)
        except CoinBusy:
            raise
        except Unavailable as err:
            raise _HolderUnreachable(
                f"the holder {holder.vendor_id} is unreachable: {err.detail}",
                retry_after_s=self._limits.handoff_ttl_s,
            ) from err
        except NetPayError as err:
            raise CoinBusy(
                f"the holder {holder.vendor_id} refused the hand-off: {err.code}",
                retry_after_s=1,
            ) from err

    def _store_grant(
        self, grant: broker_pb2.CustodyGrant, ecoin_id: str, sent_ms: int
    ) -> StoredCoin:
        """Verify a custody grant's touchstone and store the epoch."""
        epoch = self._epoch_grant(grant, ecoin_id, sent_ms)
        now_ms = self._clock.now_ms()
        for _ in range(2):
            with self._uow() as unit:
                stored = unit.coins.open_epoch(epoch, now_ms)
                if stored is None or not unit.coins.set_refund_pending(
                    ecoin_id, grant.refund_pending_units, now_ms
                ):
                    continue  # a concurrent first payment inserted the row: re-read it
                unit.commit()
                return stored
        raise CoinBusy("the coin is being stored by another request; retry", retry_after_s=1)

    def _epoch_grant(
        self, grant: broker_pb2.CustodyGrant, ecoin_id: str, sent_ms: int
    ) -> EpochGrant:
        """The new epoch a checked custody grant opens."""
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
            grant.lease_ttl_s or self._limits.lease_ttl_s,
            grant.max_skew_s or self._limits.max_skew_s,
        )
        return EpochGrant(
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

    # -- handing off (we are the holder) ---------------------------------------

    def hand_off(self, grant_envelope: pb.Envelope, caller: str, now_ms: int) -> pb.Envelope:
        """``Vendor.HandOff``: sign our CoinIndex for ``caller`` and stop accepting."""
        return self.hand_off_with_credit(grant_envelope, caller, now_ms).coin_index

    def hand_off_with_credit(
        self, grant_envelope: pb.Envelope, caller: str, now_ms: int
    ) -> HandOffResult:
        """``Vendor.HandOff`` with its whole reply.

        The compare-and-set that marks the coin HANDING_OFF also closes the
        coin's open window (WindowCredit, reason "handoff"); the CoinIndex is
        then at the window top (the coin's index). A repeated call returns the
        same CoinIndex and credit.
        """
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
        return self.stop_for(grant.ecoin_id, grant.epoch, caller, now_ms)

    def stop_for(self, ecoin_id: str, epoch: int, caller: str, now_ms: int) -> HandOffResult:
        """Stop accepting ``epoch`` of the coin and sign the CoinIndex for ``caller``
        (a hand-off, or the final index a recall asks for); repeated, the same."""
        for _ in range(_HANDOFF_ATTEMPTS):
            with self._uow(read_only=True) as unit:
                stored = unit.coins.get(ecoin_id)
                window = unit.windows.open_of(ecoin_id)
                earlier_credit = unit.windows.handoff_credit(ecoin_id, epoch)
            if stored is None:
                raise PreconditionFailed("this vendor does not hold the coin")
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF and coin.epoch == epoch:
                if stored.handoff_to == caller and stored.handoff_coin_index is not None:
                    return HandOffResult(
                        pb.Envelope.FromString(stored.handoff_coin_index),
                        pb.Envelope.FromString(earlier_credit) if earlier_credit else None,
                    )
                raise CoinBusy(
                    "the coin is being handed to another vendor",
                    retry_after_s=self.busy_s(stored),
                )
            if coin.state is not VendorCoinState.HELD or coin.epoch != epoch:
                raise PreconditionFailed(f"this vendor does not hold epoch {epoch} of the coin")
            done = self._start_handoff(coin, window, caller, now_ms)
            if done is not None:
                log.info("coin %s epoch %d handed to %s", coin.ecoin_id, coin.epoch, caller)
                return done
        raise CoinBusy("the coin keeps changing; retry", retry_after_s=1)

    def _start_handoff(
        self, coin: CoinView, window: WindowView | None, caller: str, now_ms: int
    ) -> HandOffResult | None:
        """HELD -> HANDING_OFF and the open window's close, in one transaction;
        ``None`` when the coin or the window moved meanwhile."""
        envelope = self._coin_index(coin, now_ms, to_vendor=caller)
        credit: pb.Envelope | None = None
        with self._uow() as unit:
            moved = unit.coins.start_handoff(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                index=coin.index,
                to_vendor=caller,
                coin_index=envelope.SerializeToString(),
                now_ms=now_ms,
            )
            if moved and window is not None:
                reason = CloseReason.HANDOFF if window.epoch == coin.epoch else CloseReason.CLOSED
                credit = self._credits.close_in(unit, window, reason, now_ms)
                # A click consumed meanwhile: roll the hand-off back and sign again.
                moved = credit is not None
                if reason is not CloseReason.HANDOFF:
                    credit = None
            if not moved:
                return None
            unit.commit()
        return HandOffResult(envelope, credit)

    def _coin_index(self, coin: CoinView, now_ms: int, *, to_vendor: str = "") -> pb.Envelope:
        """Our signed CoinIndex at the coin's stored index (for ``to_vendor``, if any)."""
        return seal(
            pb.CoinIndex(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                index=coin.index,
                payword=coin.payword,
                vendor_id=self._id.vendor_id,
                to_vendor=to_vendor,
                issued_at_ms=now_ms,
            ),
            self._id.key,
        )

    # -- leases ----------------------------------------------------------------

    def reset_leases(self) -> None:
        """At start: hold no lease until the broker renews it."""
        with self._uow() as unit:
            unit.coins.drop_all_leases()
            unit.commit()

    def renew(self, coin: CoinView) -> None:
        """A synchronous checkpoint of one coin on a payment's path."""
        try:
            summary = self._checkpoint([coin])
        except NetPayError as err:
            raise BrokerUnavailable(f"could not renew the lease: {err.detail}") from err
        if summary.revoked:
            raise Revoked("the coin has been reported lost")
        if summary.rejected:
            raise BrokerUnavailable("the broker did not renew the lease")

    def renew_once(self, coin: CoinView, renewed: bool) -> bool:
        """Renew the lease on a click's path, once per click (``renewed``: it was
        renewed already, and lapsed again); True."""
        if renewed:
            raise BrokerUnavailable("the broker did not renew the lease")
        self.renew(coin)
        return True

    def check_handed_over(self, stored: StoredCoin, *, probe: bool) -> None:
        """A coin HANDING_OFF here: returns when (``probe``: asking the broker once)
        the hand-off completed and our epoch is over, so the caller acquires it
        anew; else CoinBusy until the hand-off times out."""
        if probe and self.probe_closed(stored.view):
            return
        raise CoinBusy("the coin is being handed off", retry_after_s=self.busy_s(stored))

    def probe_closed(self, coin: CoinView) -> bool:
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
        page = self._limits.max_checkpoint_indexes
        while True:
            with self._uow() as unit:
                coins = [s.view for s in unit.coins.held_coins(after_ecoin_id=after, limit=page)]
            if not coins:
                return total
            now_ms = self._clock.now_ms()
            live = [c for c in coins if c.expires_at_ms > now_ms]  # nothing to renew otherwise
            if live:
                total += self._checkpoint(live)
            if len(coins) < page:
                return total
            after = coins[-1].ecoin_id

    def _checkpoint(self, coins: Sequence[CoinView]) -> CheckpointSummary:
        now_ms = self._clock.now_ms()
        envelopes = [self._coin_index(c, now_ms) for c in coins]
        sent_ms = self._clock.now_ms()
        reply = self._broker.checkpoint(envelopes)
        deadline = lease_deadline_ms(
            sent_ms,
            reply.lease_ttl_s or self._limits.lease_ttl_s,
            reply.max_skew_s or self._limits.max_skew_s,
        )
        by_id = {c.ecoin_id: c for c in coins}
        total = CheckpointSummary()
        recalled: list[tuple[CoinView, str]] = []
        with self._uow() as unit:
            for result in reply.results:
                coin = by_id.get(result.ecoin_id)
                if coin is None:
                    continue
                if result.status == broker_pb2.CHECKPOINT_STATUS_RECALLED:
                    unit.coins.drop_lease(ecoin_id=coin.ecoin_id, epoch=coin.epoch)
                    recalled.append((coin, result.recall_to))
                else:
                    total += self._apply(unit, coin, result, deadline, now_ms)
            unit.commit()
        for coin, target in recalled:
            total += CheckpointSummary(closed=int(self._answer_recall(coin, target, now_ms)))
        return total

    def _apply(
        self,
        unit: VendorUnit,
        coin: CoinView,
        result: broker_pb2.CheckpointResult,
        deadline: int,
        now_ms: int,
    ) -> CheckpointSummary:
        """One CheckpointResult (not a recall), inside the checkpoint's unit of work."""
        if result.status == broker_pb2.CHECKPOINT_STATUS_LEASED:
            if result.epoch != coin.epoch:
                log.warning("checkpoint reply for %s does not match", coin.ecoin_id)
                return CheckpointSummary()
            if result.acknowledged_index > coin.index:
                # A server-side window drawn for us whose reply never arrived:
                # the broker knows a higher word; those words are void here.
                log.warning(
                    "coin %s: the broker's index %d is above ours %d (a lost draw)",
                    coin.ecoin_id,
                    result.acknowledged_index,
                    coin.index,
                )
            unit.coins.renew_lease(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                lease_deadline_ms=deadline,
                acknowledged_index=min(result.acknowledged_index, coin.index),
            )
            return CheckpointSummary(leased=1)
        if result.status == broker_pb2.CHECKPOINT_STATUS_CLOSED:
            unit.coins.close_epoch(ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms)
            self._credits.close_with_epoch(unit, coin.ecoin_id, now_ms)
            log.info("coin %s epoch %d closed by the broker", coin.ecoin_id, coin.epoch)
            return CheckpointSummary(closed=1)
        unit.coins.drop_lease(ecoin_id=coin.ecoin_id, epoch=coin.epoch)
        log.warning("checkpoint of %s rejected: %s", coin.ecoin_id, result.detail[:200])
        return CheckpointSummary(rejected=1, revoked=int(result.revoked))

    def _answer_recall(self, coin: CoinView, target: str, now_ms: int) -> bool:
        """Another vendor recalls the coin (its hand-off failed): stop accepting it now
        and send the final CoinIndex; True when the broker closed our epoch with it."""
        try:
            check_party_id(target)
            stopped = self.stop_for(coin.ecoin_id, coin.epoch, target, now_ms)
            reply = self._broker.checkpoint([stopped.coin_index])
        except NetPayError as err:
            log.warning("could not answer the recall of %s: %s", coin.ecoin_id, err.detail)
            return False
        if not any(
            r.ecoin_id == coin.ecoin_id and r.status == broker_pb2.CHECKPOINT_STATUS_CLOSED
            for r in reply.results
        ):
            return False
        with self._uow() as unit:
            unit.coins.close_epoch(ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms)
            self._credits.close_with_epoch(unit, coin.ecoin_id, now_ms)
            unit.commit()
        log.info("coin %s epoch %d recalled by %s", coin.ecoin_id, coin.epoch, target)
        return True

    # -- abandoned hand-offs -----------------------------------------------------

    def reclaim_due(self) -> int:
        """Reclaim every coin HANDING_OFF for longer than handoff_ttl_s.

        Returns how many coins changed (reclaimed or closed).
        """
        now_ms = self._clock.now_ms()
        cutoff = now_ms - self._limits.handoff_ttl_s * 1000
        with self._uow() as unit:
            due = unit.coins.handoffs_started_before(cutoff)
        changed = 0
        for stored in due:
            try:
                if self._reclaim(stored.view, now_ms):
                    changed += 1
            except NetPayError as err:
                log.warning("reclaim of %s failed: %s", stored.view.ecoin_id, err.detail)
        return changed

    def _reclaim(self, coin: CoinView, now_ms: int) -> bool:
        envelope = self._coin_index(coin, now_ms)
        sent_ms = self._clock.now_ms()
        try:
            grant = self._broker.reclaim(coin.ecoin_id, coin.epoch, envelope)
        except (PreconditionFailed, NotFound) as err:
            # The hand-off completed first (or the coin is gone): the epoch is over.
            with self._uow() as unit:
                closed = unit.coins.close_epoch(
                    ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms
                )
                unit.commit()
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
            grant.lease_ttl_s or self._limits.lease_ttl_s,
            grant.max_skew_s or self._limits.max_skew_s,
        )
        with self._uow() as unit:
            moved = unit.coins.reclaimed(
                ecoin_id=coin.ecoin_id,
                old_epoch=coin.epoch,
                new_epoch=grant.epoch,
                base_index=grant.base_index,
                base_word=grant.base_word,
                lease_deadline_ms=deadline,
                now_ms=now_ms,
            )
            unit.commit()
        log.info("coin %s reclaimed in epoch %d", coin.ecoin_id, grant.epoch)
        return moved
