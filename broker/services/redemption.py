"""Redemption: Redeem (claims, window credits, vendor refunds, payouts) and the
refund of expired coins.

``Broker.Redeem`` (protocol.md, "Redemption"): a vendor sends a batch of
signed Claims with the WindowCredits and VendorRefunds it nets. The whole
batch is one unit of work: every claim is verified and checked by
:func:`broker.domain.claims.check_claim` in its own savepoint and gets its
own result; an accepted claim moves its paid units from the broker float to
the vendor's payable account and its netted window credits to the reader's
refund balance (a claim that moves nothing writes no entry); vendor refunds
move money from the vendor's payable account to the reader's refund
balance; then the bank pays the vendor what it is owed. Redemption never
wedges: a claim that does not verify or is refused is that claim's result,
and one that fails unexpectedly (a bug) is refused alone as ``internal`` and
logged, never the batch. The reply is stored under ``(vendor, batch id)``
before the commit, so a retried batch returns it byte for byte and pays once.

:meth:`Redemption.refund_expired` gives a coin past expiry + grace its
unclaimed value back to the reader, once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import traceback
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from broker.domain import (
    AccountRef,
    ClaimIndex,
    Expire,
    IndexedWord,
    LedgerEntry,
    Transaction,
    allowed_events,
    transition,
)
from broker.domain.claims import (
    MAX_RANGES_PER_CLAIM,
    ClaimOutcome,
    ClaimView,
    CreditView,
    PaidSpan,
    RangeView,
    check_claim,
)
from broker.services.common import apply_coin, known_words
from broker.services.credits import credit_view, keep_window_credit, parse_window_credit
from broker.services.ledger import Ledger
from broker.services.ports import BrokerPorts
from broker.services.refunds import net_vendor_refunds
from broker.storage import (
    ClaimRangeRow,
    ClaimRow,
    DisputeRow,
    ExpiryRefundRow,
    Repos,
    StoredCoin,
)
from netpay.chain import WORD_BYTES
from netpay.encoding import check_ecoin_id
from netpay.envelope import open_envelope
from netpay.errors import (
    AlreadyExists,
    AlreadySpent,
    Conflict,
    Expired,
    InvalidArgument,
    NetPayError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

__all__ = ["BATCH_HASH_BUDGET", "MAX_BATCH_ITEMS", "Redemption"]

MAX_BATCH_ITEMS = 10_000
# Hash steps one batch may spend checking claim words (about a second of SHA-256).
BATCH_HASH_BUDGET = 4 * 2**20
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ITEM_MAX_CHARS = 64
_REASON_MAX_CHARS = 200
_LOGGED_FRAMES = 6
_ECOIN_ID_CHARS = 32

log = logging.getLogger("broker.redemption")

# The answer to a claim that failed unexpectedly (a bug, not a refusal): refused
# alone; the vendor claims it again in a later batch.
_UNEXPECTED = NetPayError(
    "the broker could not check this claim and refused it alone; claim it again later"
)

# The window credits a batch carries, by (coin, epoch, top).
BatchCredits = dict[tuple[str, int, int], tuple[CreditView, pb.Envelope]]


@dataclass(frozen=True)
class _Batch:
    """What every claim of one batch shares."""

    caller: str
    key: bytes  # the caller's enrolled public key: every claim is signed with it
    batch_id: str
    batch_row_id: int
    credits: BatchCredits
    now_ms: int


def _parse_claim(claim_envelope: pb.Envelope, caller: str, key: bytes) -> ClaimView:
    msg = open_envelope(claim_envelope, pb.Claim, key)
    if msg.vendor_id != caller:
        raise PermissionDenied("a claim must be signed by and name the caller")
    check_ecoin_id(msg.ecoin_id)
    if len(msg.payword) != WORD_BYTES:
        raise InvalidArgument(f"a claim's payword must be {WORD_BYTES} bytes")
    if len(msg.ranges) > MAX_RANGES_PER_CLAIM:
        raise InvalidArgument(f"a claim lists at most {MAX_RANGES_PER_CLAIM} ranges")
    ranges = []
    for r in msg.ranges:
        if len(r.item_id) > _ITEM_MAX_CHARS:
            raise InvalidArgument(f"an item id has at most {_ITEM_MAX_CHARS} characters")
        void_from = r.void_from if r.HasField("void_from") else None
        ranges.append(RangeView(r.from_index, r.to_index, r.item_id, r.time_ms, void_from))
    return ClaimView(
        vendor_id=msg.vendor_id,
        ecoin_id=msg.ecoin_id,
        epoch=msg.epoch,
        from_index=msg.from_index,
        to_index=msg.to_index,
        word=msg.payword,
        ranges=tuple(ranges),
    )


def _batch_credits(request: bpb.RedeemRequest, caller: str, key: bytes) -> BatchCredits:
    credits: BatchCredits = {}
    for env in request.window_credits:
        credit = parse_window_credit(env, key)
        if credit.vendor_id != caller:
            raise PermissionDenied("a window credit must name the caller")
        credits[(credit.ecoin_id, credit.epoch, credit.window_top)] = (credit, env)
    return credits


def _rejected_claim(claim: ClaimView | pb.Claim, err: NetPayError) -> bpb.ClaimResult:
    return bpb.ClaimResult(
        ecoin_id=claim.ecoin_id[:_ECOIN_ID_CHARS],
        epoch=claim.epoch,
        to_index=claim.to_index,
        status=bpb.CLAIM_STATUS_REJECTED,
        reason=err.code,
        detail=err.detail[:_REASON_MAX_CHARS],
    )


def _unverified(claim_envelope: pb.Envelope) -> pb.Claim:
    """A claim that did not verify, read only to name it in its result (empty when
    it does not even parse)."""
    try:
        return pb.Claim.FromString(claim_envelope.payload)
    except DecodeError:
        return pb.Claim()


def _claim_credits(
    repos: Repos, claim: ClaimView, batch_credits: BatchCredits
) -> tuple[list[CreditView], list[tuple[CreditView, pb.Envelope]]]:
    """The window credits the claim may net: the kept ones not netted yet, and those
    of the batch (``new``: to keep if the claim nets them)."""
    kept = {
        c.window_top: c
        for c in repos.redemption.credits(claim.ecoin_id, claim.epoch)
        if c.claim_id is None
    }
    credits = [credit_view(c) for c in kept.values()]
    new_credits: list[tuple[CreditView, pb.Envelope]] = []
    for (ecoin_id, epoch_no, top), (credit, env) in batch_credits.items():
        if ecoin_id != claim.ecoin_id or epoch_no != claim.epoch:
            continue
        if top in kept:
            if kept[top].consumed_index != credit.consumed_index:
                raise InvalidArgument(f"the window credit at {top} differs from the kept one")
            continue
        netted_before = repos.redemption.credit_at(ecoin_id, epoch_no, top)
        if netted_before is not None:
            continue  # netted by an earlier claim: the overlap check answers
        credits.append(credit)
        new_credits.append((credit, env))
    return credits, new_credits


def _record_dispute(
    repos: Repos, claim: ClaimView, claim_envelope: pb.Envelope, err: NetPayError, now_ms: int
) -> None:
    """A claim over words already paid is refused and kept as evidence."""
    overlaps = repos.redemption.overlapping_claims(claim.ecoin_id, claim.from_index, claim.to_index)
    repos.redemption.add_dispute(
        DisputeRow(
            vendor_id=claim.vendor_id,
            ecoin_id=claim.ecoin_id,
            epoch=claim.epoch,
            from_index=claim.from_index,
            to_index=claim.to_index,
            claim=claim_envelope.SerializeToString(),
            overlaps=",".join(str(i) for i in overlaps)[:400],
            detail=err.detail[:400],
            created_at_ms=now_ms,
        )
    )


def _keep_dispute(
    repos: Repos, claim: ClaimView, claim_envelope: pb.Envelope, err: NetPayError, now_ms: int
) -> None:
    """:func:`_record_dispute` in its own savepoint: a dispute that cannot be kept is
    logged, and the claim is refused all the same."""
    try:
        with repos.savepoint():
            _record_dispute(repos, claim, claim_envelope, err, now_ms)
    except Exception as exc:
        _log_unexpected(claim, "(dispute)", exc)


def _log_unexpected(claim: ClaimView | pb.Claim, batch_id: str, exc: BaseException) -> None:
    """Log a claim's unexpected failure: where it happened and the exception's type,
    never its message (it may quote the claim's words or the database's values)."""
    frames = traceback.extract_tb(exc.__traceback__)[-_LOGGED_FRAMES:]
    where = " <- ".join(
        f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
        for frame in reversed(frames)
    )
    log.error(
        "claim of %s for coin %s epoch %d to %d in batch %s refused: unexpected %s at %s",
        claim.vendor_id[:_ECOIN_ID_CHARS],
        claim.ecoin_id[:_ECOIN_ID_CHARS],
        claim.epoch,
        claim.to_index,
        batch_id,
        type(exc).__name__,
        where,
    )


def _add_claim(
    repos: Repos,
    claim: ClaimView,
    claim_envelope: pb.Envelope,
    outcome: ClaimOutcome,
    stored: StoredCoin,
    batch: _Batch,
) -> None:
    """Keep the accepted claim with its Receipt ranges, and net its window credits."""
    u = stored.view.unit_value_minor
    claim_id = repos.redemption.add_claim(
        ClaimRow(
            batch_row_id=batch.batch_row_id,
            vendor_id=claim.vendor_id,
            ecoin_id=claim.ecoin_id,
            epoch=claim.epoch,
            from_index=claim.from_index,
            to_index=claim.to_index,
            payword=claim.word,
            paid_units=outcome.paid_units,
            refund_units=outcome.refund_units,
            void_units=outcome.void_units,
            amount_minor=outcome.paid_units * u,
            currency=stored.currency,
            claim=claim_envelope.SerializeToString(),
            created_at_ms=batch.now_ms,
        ),
        [
            ClaimRangeRow(
                ecoin_id=claim.ecoin_id,
                from_index=r.from_index,
                to_index=r.to_index,
                item_id=r.item_id,
                time_ms=r.time_ms,
                amount_minor=r.units * u,
            )
            for r in claim.ranges
        ],
    )
    for credit in outcome.credits:
        if not repos.redemption.net_credit(
            claim.ecoin_id, claim.epoch, credit.window_top, claim_id
        ):
            raise Conflict("the window credit was netted meanwhile")


def _post_claim(
    repos: Repos,
    claim: ClaimView,
    claim_envelope: pb.Envelope,
    outcome: ClaimOutcome,
    stored: StoredCoin,
    batch: _Batch,
) -> int:
    """The claim's money: float -> vendor payable (and reader refund); units the reader
    re-spent after a forced acquisition come from broker losses. Returns the paid amount."""
    u = stored.view.unit_value_minor
    amount_minor = outcome.paid_units * u
    refund_minor = outcome.refund_units * u
    loss_minor = outcome.loss_units * u
    entries = [
        LedgerEntry(
            AccountRef.broker_float(stored.currency),
            -(amount_minor - loss_minor + refund_minor),
        )
    ]
    if loss_minor:
        # The reader re-spent these words at the next vendor after a forced
        # acquisition: both honest vendors are paid, this one from broker losses.
        entries.append(LedgerEntry(AccountRef.broker_loss(stored.currency), -loss_minor))
        repos.redemption.flag(stored.owner, stored.currency, loss_minor, batch.now_ms)
        _record_dispute(
            repos,
            claim,
            claim_envelope,
            AlreadySpent(
                f"{outcome.loss_units} units re-spent after a forced acquisition: "
                "paid from broker losses; the reader is flagged"
            ),
            batch.now_ms,
        )
    if amount_minor:
        entries.append(
            LedgerEntry(AccountRef.vendor_payable(claim.vendor_id, stored.currency), amount_minor)
        )
    if refund_minor:
        entries.append(
            LedgerEntry(AccountRef.reader_refund(stored.owner, stored.currency), refund_minor)
        )
    # A claim that pays nothing from one of the accounts (all of it from broker
    # losses, say) has a zero there; one that moves nothing at all writes nothing.
    moved = tuple(e for e in entries if e.amount_minor)
    if moved:
        key = (
            f"redeem:{claim.vendor_id}:{batch.batch_id}:{claim.ecoin_id}:"
            f"{claim.epoch}:{claim.to_index}"
        )
        repos.ledger.post(Transaction("redeem", key, batch.now_ms, moved))
    return amount_minor


class Redemption:
    """Redeem and the expiry refunds."""

    def __init__(
        self, ports: BrokerPorts, ledger: Ledger, *, hash_budget: int = BATCH_HASH_BUDGET
    ) -> None:
        self._ports = ports
        self._ledger = ledger
        self._hash_budget = hash_budget

    # -- Redeem ---------------------------------------------------------------------

    def redeem(self, caller: str, request: bpb.RedeemRequest) -> bpb.RedeemResponse:
        """Redeem one batch; a retried batch returns the stored reply (paid once)."""
        if not _BATCH_ID.fullmatch(request.batch_id):
            raise InvalidArgument("batch_id must be 1..64 characters of [A-Za-z0-9_-]")
        for name, items in (
            ("claims", request.claims),
            ("window credits", request.window_credits),
            ("vendor refunds", request.vendor_refunds),
        ):
            if len(items) > MAX_BATCH_ITEMS:
                raise InvalidArgument(f"a batch has at most {MAX_BATCH_ITEMS} {name}")
        fingerprint = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
        for attempt in range(2):
            try:
                return self._redeem_once(caller, request, fingerprint)
            except AlreadyExists:
                # A concurrent duplicate of this batch committed first: return its reply.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _replay(repos: Repos, caller: str, batch_id: str, fingerprint: bytes) -> bytes | None:
        found = repos.redemption.batch(caller, batch_id)
        if found is None:
            return None
        if found.request_sha256 != fingerprint:
            raise AlreadyExists(f"batch {batch_id} was redeemed with other contents")
        return found.response

    def _redeem_once(
        self, caller: str, request: bpb.RedeemRequest, fingerprint: bytes
    ) -> bpb.RedeemResponse:
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            stored_reply = self._replay(repos, caller, request.batch_id, fingerprint)
            if stored_reply is not None:
                return bpb.RedeemResponse.FromString(stored_reply)
            key = repos.vendors.public_key(caller)
            if key is None:
                raise Unauthenticated(f"vendor {caller} is not enrolled")
            credits = _batch_credits(request, caller, key)
            batch = _Batch(
                caller=caller,
                key=key,
                batch_id=request.batch_id,
                batch_row_id=repos.redemption.add_batch(
                    caller, request.batch_id, fingerprint, now_ms
                ),
                credits=credits,
                now_ms=now_ms,
            )
            paid: dict[str, int] = defaultdict(int)
            results = self._redeem_claims(repos, request.claims, batch, paid)
            refunds = net_vendor_refunds(
                repos, request.vendor_refunds, key, caller, batch.batch_row_id, now_ms, paid
            )
            self._ledger.pay_out(repos, caller, request.batch_id, paid, now_ms)
            reply = bpb.RedeemResponse(
                batch_id=request.batch_id,
                results=results,
                paid=[
                    bpb.AccountBalance(currency=c, balance_minor=a) for c, a in sorted(paid.items())
                ],
                refunds=refunds,
            )
            repos.redemption.finish_batch(batch.batch_row_id, reply.SerializeToString())
            repos.commit()
        return reply

    def _redeem_claims(
        self,
        repos: Repos,
        envelopes: Sequence[pb.Envelope],
        batch: _Batch,
        paid: dict[str, int],
    ) -> list[bpb.ClaimResult]:
        """Each claim in its own savepoint: a claim refused half-way leaves nothing,
        and no claim, whatever goes wrong with it, fails the others."""
        results = []
        budget = self._hash_budget
        for claim_envelope in envelopes:
            result, steps = self._redeem_one(repos, claim_envelope, batch, budget)
            budget -= steps
            if result.status == bpb.CLAIM_STATUS_ACCEPTED:
                paid[result.currency] += result.paid_minor
            results.append(result)
        return results

    def _redeem_one(
        self, repos: Repos, claim_envelope: pb.Envelope, batch: _Batch, budget: int
    ) -> tuple[bpb.ClaimResult, int]:
        """One claim's result and the hash steps it spent. A claim that does not
        verify, and any typed refusal, is that claim's answer (an overlap is kept as a
        dispute); any other failure is refused as ``internal`` and logged, without
        the claim's words."""
        claim: ClaimView | None = None
        try:
            claim = _parse_claim(claim_envelope, batch.caller, batch.key)
            with repos.savepoint() as saved:
                result, steps = self._redeem_claim(repos, claim, claim_envelope, batch, budget)
        except NetPayError as err:
            if claim is None:
                return _rejected_claim(_unverified(claim_envelope), err), 0
            if isinstance(err, AlreadySpent):
                _keep_dispute(repos, claim, claim_envelope, err, batch.now_ms)
            return _rejected_claim(claim, err), 0
        except Exception as exc:  # a bug in one claim never wedges the vendor's batch
            named = claim or _unverified(claim_envelope)
            _log_unexpected(named, batch.batch_id, exc)
            return _rejected_claim(named, _UNEXPECTED), 0
        if saved.duplicate:
            return _rejected_claim(claim, AlreadySpent("a claim with this top was already paid")), 0
        return result, steps

    def _claim_coin(self, repos: Repos, claim: ClaimView, now_ms: int) -> StoredCoin:
        """The claim's coin, locked; Expired once its redemption grace period is over."""
        stored = repos.coins.get(claim.ecoin_id, for_update=True)
        if stored is None:
            raise NotFound(f"no coin {claim.ecoin_id}")
        grace_ms = self._ports.limits.redemption_grace_s * 1000
        if now_ms >= stored.view.expires_at_ms + grace_ms or repos.redemption.expiry_refund(
            claim.ecoin_id
        ):
            raise Expired(
                "the coin expired more than the redemption grace period ago: its unclaimed "
                "value went back to the reader"
            )
        return stored

    def _redeem_claim(
        self,
        repos: Repos,
        claim: ClaimView,
        claim_envelope: pb.Envelope,
        batch: _Batch,
        budget: int,
    ) -> tuple[bpb.ClaimResult, int]:
        stored = self._claim_coin(repos, claim, batch.now_ms)
        coin = stored.view
        epochs = {e.epoch: e for e in repos.coins.epochs(claim.ecoin_id)}
        epoch = epochs.get(claim.epoch)
        credits, new_credits = _claim_credits(repos, claim, batch.credits)
        outcome = check_claim(
            claim,
            n=coin.n,
            epoch=epoch,
            current_epoch=coin.epoch,
            credits=credits,
            paid=[PaidSpan(e, f, t) for e, f, t in repos.redemption.paid_spans(claim.ecoin_id)],
            known=known_words(repos, stored.view, epochs.values()),
            hash_budget=budget,
            epochs=epochs,
        )
        assert epoch is not None
        for credit, env in new_credits:
            if credit in outcome.credits:
                keep_window_credit(repos, credit, env, epoch, batch.now_ms)
        _add_claim(repos, claim, claim_envelope, outcome, stored, batch)
        amount_minor = _post_claim(repos, claim, claim_envelope, outcome, stored, batch)
        if (
            coin.epoch == claim.epoch
            and claim.to_index > coin.latest.index
            and ClaimIndex in allowed_events(coin.state)
        ):
            after = transition(
                coin,
                ClaimIndex(claim.vendor_id, claim.epoch, IndexedWord(claim.to_index, claim.word)),
            )
            apply_coin(repos, coin, after)
        result = bpb.ClaimResult(
            ecoin_id=claim.ecoin_id,
            epoch=claim.epoch,
            to_index=claim.to_index,
            status=bpb.CLAIM_STATUS_ACCEPTED,
            paid_units=outcome.paid_units,
            paid_minor=amount_minor,
            currency=stored.currency,
            refund_units=outcome.refund_units,
        )
        return result, outcome.hash_steps

    # -- expiry refunds -------------------------------------------------------------------

    def refund_expired(self, *, limit: int = 1000) -> list[ExpiryRefundRow]:
        """Refund every coin past ``expires_at + redemption_grace_s``: what no vendor
        claimed (unspent, void and un-netted window words) and the reader's refund
        balance go to the reader's account, once per coin. Returns the refunds made."""
        now_ms = self._ports.clock.now_ms()
        cutoff = now_ms - self._ports.limits.redemption_grace_s * 1000
        made: list[ExpiryRefundRow] = []
        with self._ports.uow() as repos:
            for ecoin_id in repos.redemption.coins_due_for_refund(cutoff, limit):
                made.append(self._refund_one(repos, ecoin_id, now_ms))
            repos.commit()
        return made

    def _refund_one(self, repos: Repos, ecoin_id: str, now_ms: int) -> ExpiryRefundRow:
        stored = repos.coins.get(ecoin_id, for_update=True)
        assert stored is not None
        coin = stored.view
        claimed_minor, netted_units = repos.redemption.claimed_value(ecoin_id)
        value_minor = coin.n * coin.unit_value_minor
        unclaimed = value_minor - claimed_minor - netted_units * coin.unit_value_minor
        assert unclaimed >= 0, (ecoin_id, value_minor, claimed_minor, netted_units)
        refund_balance_minor = self._ledger.refund_expired_coin(repos, stored, unclaimed, now_ms)
        if Expire in allowed_events(coin.state):
            apply_coin(repos, coin, transition(coin, Expire(now_ms)))
        row = ExpiryRefundRow(
            ecoin_id=ecoin_id,
            reader_id=stored.owner,
            amount_minor=unclaimed,
            refund_balance_minor=refund_balance_minor,
            currency=stored.currency,
            created_at_ms=now_ms,
        )
        repos.redemption.add_expiry_refund(row)
        return row
