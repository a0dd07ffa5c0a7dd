"""Coin custody (protocol.md, "Coin custody"): acquire, hand-off grants, RecordHandoff,
Reclaim, Checkpoint, and the recall that forces a coin away from a silent holder.

- AcquireCoin (:meth:`Custody.acquire_coin`, step 1): the domain decides
  (:func:`broker.domain.decide_acquire`) whether the caller renews its
  epoch, opens the first one, gets a HandOffGrant to show the holder, or
  (``force``) recalls the coin;
- RecordHandoff (step 2): the holder's CoinIndex closes its epoch and opens
  epoch + 1 for the caller, with the window credit it returned;
- Reclaim (step 3): the holder closes its own epoch and opens the next;
- Checkpoint (step 4): the holder's indexes are acknowledged and leases
  renewed; a recalled holder's final CoinIndex completes the recall (step 5).

Every change goes through :func:`broker.domain.transition` and is written
with a compare-and-set in the caller's one unit of work.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from broker.domain import (
    Acquire,
    AcquireDecision,
    BeginRecall,
    CheckpointIndex,
    ClaimIndex,
    CoinIndexView,
    CoinRecordView,
    CoinState,
    EpochOpening,
    EpochView,
    FinishRecall,
    HandOff,
    IssueHandOffGrant,
    Reclaim,
    decide_acquire,
    handoff_is_repeat,
    reclaim_is_repeat,
    transition,
)
from broker.services.common import apply_coin, coin_for_update, envelope, known_words
from broker.services.credits import keep_window_credit, parse_window_credit
from broker.services.epochs import (
    CustodyGrantView,
    bound_units,
    caller_key,
    checked_at,
    current_epoch,
    grant_view,
    open_coin_index,
    renew,
    switch_epoch,
    vendor_key_lookup,
)
from broker.services.ports import BrokerPorts
from broker.services.wallets import Wallets
from broker.storage import Repos, StoredCoin
from netpay.chain import WORD_BYTES
from netpay.encoding import check_ecoin_id
from netpay.envelope import seal
from netpay.errors import (
    CoinBusy,
    InvalidArgument,
    NetPayError,
    PermissionDenied,
    PreconditionFailed,
    Unavailable,
    WrongCurrency,
)
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "CheckpointItem",
    "CheckpointOutcome",
    "CheckpointStatus",
    "Custody",
    "CustodyGrantView",
    "HandOffRequiredView",
]

log = logging.getLogger("broker.services")


class CheckpointStatus(enum.Enum):
    LEASED = "leased"
    CLOSED = "closed"
    REJECTED = "rejected"
    RECALLED = "recalled"


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


class Custody:
    """One holder per epoch: every custody use case of the coin's holders."""

    def __init__(self, ports: BrokerPorts, wallets: Wallets) -> None:
        self._ports = ports
        self._wallets = wallets

    def _lease_expires_ms(self, now_ms: int) -> int:
        return self._ports.lease_expires_ms(now_ms)

    def _grant(self, repos: Repos, stored: StoredCoin, epoch: EpochView) -> CustodyGrantView:
        return grant_view(repos, stored, epoch, self._ports.limits)

    def _renew(self, repos: Repos, stored: StoredCoin, caller: str, now_ms: int) -> EpochView:
        return renew(repos, stored, caller, self._lease_expires_ms(now_ms))

    # -- AcquireCoin ----------------------------------------------------------------------

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
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            if wallet_grant is not None:
                proof, _row = self._wallets.check_wallet_grant(repos, wallet_grant, caller, now_ms)
                if proof.ecoin_id != ecoin_id:
                    raise PermissionDenied("the wallet grant is for another coin")
            stored = coin_for_update(repos, ecoin_id)
            coin = stored.view
            if currency and currency != stored.currency:
                raise WrongCurrency(f"the coin is in {stored.currency}, the price in {currency}")
            decision = decide_acquire(
                coin,
                caller,
                now_ms,
                proof_index,
                proof_word,
                bound_units=bound_units(coin, self._ports.limits),
                known=lambda: known_words(repos, coin),
                force=force,
                busy_retry_after_s=self._ports.limits.max_skew_s,
                grant_proof=wallet_grant is not None,
            )
            granted: CustodyGrantView | HandOffRequiredView
            if decision is AcquireDecision.RENEW:
                granted = self._grant(repos, stored, self._renew(repos, stored, caller, now_ms))
            elif decision is AcquireDecision.GRANT:
                granted = self._first_grant(repos, stored, caller, now_ms)
            elif decision is AcquireDecision.RECALL:
                recalled = self._recall(repos, stored, caller, now_ms)
                if isinstance(recalled, CoinBusy):
                    repos.commit()  # the recall began (or goes on): keep it
                    raise recalled
                granted = recalled
            else:
                assert decision is AcquireDecision.HANDOFF
                granted = self._handoff_grant(repos, stored, caller, now_ms)
            repos.commit()
        return granted

    def _first_grant(
        self, repos: Repos, stored: StoredCoin, caller: str, now_ms: int
    ) -> CustodyGrantView:
        """A FREE coin: epoch + 1 for the caller, based on the latest known word."""
        coin = stored.view
        after = transition(coin, Acquire(caller, now_ms, self._lease_expires_ms(now_ms)))
        apply_coin(repos, coin, after)
        opened = EpochView(
            epoch=after.epoch,
            holder=caller,
            base=after.latest,
            opened_by=EpochOpening.ACQUIRE,
            opened_from=None,
        )
        repos.coins.open_epoch(coin.ecoin_id, opened, now_ms)
        return self._grant(repos, stored, opened)

    def _handoff_grant(
        self, repos: Repos, stored: StoredCoin, caller: str, now_ms: int
    ) -> HandOffRequiredView:
        """Another vendor holds the coin: a HandOffGrant for the caller to show it."""
        coin = stored.view
        assert coin.holder is not None
        holder_row = repos.vendors.get(coin.holder)
        if holder_row is None or holder_row.certificate is None:
            raise Unavailable(f"the holder {coin.holder} has no certificate")
        expires_at_ms = now_ms + self._ports.limits.handoff_grant_ttl_s * 1000
        grant = seal(
            pb.HandOffGrant(
                ecoin_id=coin.ecoin_id,
                from_vendor=coin.holder,
                to_vendor=caller,
                epoch=coin.epoch,
                expires_at_ms=expires_at_ms,
                broker_id=self._ports.identity.broker_id,
            ),
            self._ports.identity.key,
        )
        after = transition(coin, IssueHandOffGrant(caller, coin.epoch, expires_at_ms))
        apply_coin(repos, coin, after)
        return HandOffRequiredView(
            grant=grant,
            holder_certificate=envelope(holder_row.certificate),
            touchstone=envelope(stored.touchstone),
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
        limits = self._ports.limits
        if coin.state is CoinState.HELD:
            deadline = max(coin.lease_expires_ms or now_ms, now_ms) + limits.max_skew_s * 1000
            after = transition(coin, BeginRecall(caller, coin.epoch, now_ms, deadline))
            apply_coin(repos, coin, after)
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
        return self._force_close(repos, stored, coin, caller, now_ms)

    def _force_close(
        self,
        repos: Repos,
        stored: StoredCoin,
        coin: CoinRecordView,
        caller: str,
        now_ms: int,
    ) -> CustodyGrantView:
        """The recall's deadline passed: the holder's epoch ends at the last checkpoint +
        ``max_unreported_units`` and the caller's starts at the last checkpoint."""
        previous = coin.holder
        assert previous is not None
        forced_end = min(coin.latest.index + self._ports.limits.max_unreported_units, coin.n)
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
        opened = switch_epoch(
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

    # -- RecordHandoff and Reclaim ---------------------------------------------------------

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
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            index = open_coin_index(coin_index, vendor_key_lookup(repos))
            if index.to_vendor != caller:
                raise PermissionDenied("the CoinIndex hands the coin to another vendor")
            if index.vendor_id == caller:
                raise InvalidArgument("a vendor cannot hand a coin to itself")
            stored = coin_for_update(repos, index.ecoin_id)
            coin = stored.view
            current = current_epoch(repos, coin)
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
            at = checked_at(repos, stored, index, self._ports.limits)
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
            opened = switch_epoch(
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
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            index = open_coin_index(coin_index, caller_key(repos, caller))
            if index.vendor_id != caller:
                raise PermissionDenied("the CoinIndex must be signed by the caller")
            if index.ecoin_id != ecoin_id or index.epoch != epoch:
                raise InvalidArgument("the CoinIndex is for another coin or epoch")
            stored = coin_for_update(repos, ecoin_id)
            coin = stored.view
            current = current_epoch(repos, coin)
            if current is not None and reclaim_is_repeat(coin, current, caller, epoch, index):
                self._renew(repos, stored, caller, now_ms)
                granted = self._grant(repos, stored, current)
                repos.commit()
                return granted
            if epoch != coin.epoch or not coin.holds(caller):
                raise PreconditionFailed(
                    f"epoch {epoch} is no longer current (the coin is at epoch {coin.epoch})"
                )
            at = checked_at(repos, stored, index, self._ports.limits)
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
            opened = switch_epoch(repos, coin, after, at, EpochOpening.RECLAIM, caller, now_ms)
            granted = self._grant(repos, stored, opened)
            repos.commit()
        return granted

    # -- Checkpoint ---------------------------------------------------------------------------

    def checkpoint(self, caller: str, indexes: Sequence[pb.Envelope]) -> CheckpointOutcome:
        """Checkpoint (step 4): acknowledge each held coin's index and renew its lease."""
        limits = self._ports.limits
        if len(indexes) > limits.max_checkpoint_indexes:
            raise InvalidArgument(f"at most {limits.max_checkpoint_indexes} indexes per checkpoint")
        now_ms = self._ports.clock.now_ms()
        results: list[CheckpointItem] = []
        with self._ports.uow() as repos:
            key = caller_key(repos, caller)
            for coin_index in indexes:
                results.append(self._checkpoint_one(repos, caller, key, coin_index, now_ms))
            repos.commit()
        return CheckpointOutcome(tuple(results), limits.lease_ttl_s, limits.max_skew_s)

    def _checkpoint_one(
        self, repos: Repos, caller: str, caller_key: bytes, coin_index: pb.Envelope, now_ms: int
    ) -> CheckpointItem:
        claimed_id, claimed_epoch = _peek_coin_index(coin_index)
        try:
            index = open_coin_index(coin_index, caller_key)
        except NetPayError as err:
            return CheckpointItem(
                claimed_id, claimed_epoch, CheckpointStatus.REJECTED, err.detail, 0
            )
        if index.vendor_id != caller:
            return _rejected(index, "the CoinIndex names another vendor", 0)
        stored = repos.coins.get(index.ecoin_id, for_update=True)
        if stored is None:
            return _rejected(index, "unknown coin", 0)
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
            at = checked_at(repos, stored, index, self._ports.limits)
            after = transition(
                coin,
                CheckpointIndex(caller, index.epoch, at, self._lease_expires_ms(now_ms)),
            )
        except NetPayError as err:
            return _refused(index, err, coin.latest.index)
        apply_coin(repos, coin, after)
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
            at = checked_at(repos, stored, index, self._ports.limits)
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
                switch_epoch(repos, coin, after, at, EpochOpening.RECALL, caller, now_ms)
                return CheckpointItem(
                    index.ecoin_id,
                    index.epoch,
                    CheckpointStatus.CLOSED,
                    f"recalled by {target}: your epoch ends at {at.index}",
                    at.index,
                )
            if at.index > coin.latest.index:
                apply_coin(repos, coin, transition(coin, ClaimIndex(caller, coin.epoch, at)))
        except NetPayError as err:
            return _refused(index, err, coin.latest.index)
        return CheckpointItem(
            index.ecoin_id,
            index.epoch,
            CheckpointStatus.RECALLED,
            f"{target} is recalling the coin: stop and send your final CoinIndex",
            max(at.index, coin.latest.index),
            recall_to=target,
        )


def _rejected(index: CoinIndexView, detail: str, latest_index: int) -> CheckpointItem:
    return CheckpointItem(
        index.ecoin_id, index.epoch, CheckpointStatus.REJECTED, detail, latest_index
    )


def _refused(index: CoinIndexView, err: NetPayError, latest_index: int) -> CheckpointItem:
    """A CoinIndex the broker refuses: REJECTED with the error and its latest index."""
    return _rejected(index, f"{err.code}: {err.detail}", latest_index)


def _peek_coin_index(coin_index: pb.Envelope) -> tuple[str, int]:
    """Unverified ``(ecoin_id, epoch)`` of a CoinIndex, only to label a rejection."""
    msg = pb.CoinIndex()
    try:
        if coin_index.payload_type == pb.CoinIndex.DESCRIPTOR.full_name:
            msg.ParseFromString(coin_index.payload[:65536])
    except DecodeError:
        return "", 0
    ecoin_id = msg.ecoin_id if len(msg.ecoin_id) <= 32 else ""
    return ecoin_id, msg.epoch
