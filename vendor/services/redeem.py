"""The vendor's daily redemption (protocol.md, "Redemption"; docs/protocol.md,
"Redemption (choices)").

One run (:meth:`Redeemer.redeem`): first every batch stored as pending is
sent again, byte for byte (a crash or a lost reply never loses or doubles a
payment: the broker answers a retried batch id with its first reply); then
new batches are built from the click log and the closed windows above what
was already claimed, stored with their claims *before* they are sent, sent,
and their per-claim results recorded.

Refunds for returned goods (refunds.py) travel in the first batch sent after
their click's claim was accepted, or in the batch that carries that claim
(the broker nets a batch's VendorRefunds after its claims). The broker's
answer is kept per refund.

Per coin and epoch a claim runs from the first unclaimed click up to the
last one that can be claimed now: a click's own word, or a closed window's
top (its WindowCredit goes with the batch and its clicks are listed as
ranges). Each Receipt is listed as ``(void_from, prev, to)`` with the
``void_from`` signed into it, so the claim is tiled by the Receipts'
``(void_from, to]`` (docs/protocol.md, "Receipts carry void_from"). An
open window stops the claim at its start: the vendor knows no word inside it
until it closes (windows last at most ``window_ttl_s``, so the next day's run
claims it).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from netpay.clock import Clock
from netpay.envelope import seal
from netpay.errors import (
    BrokerUnavailable,
    Conflict,
    InvalidArgument,
    NetPayError,
    PreconditionFailed,
    Unavailable,
)
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from vendor.domain import BatchEvent, ClaimEvent, ClaimStatus, RefundEvent, RefundStatus
from vendor.services.ports import RedeemClient, UnitOfWorkFactory, VendorIdentity
from vendor.services.refunds import Refunds
from vendor.services.reports import Reports
from vendor.storage import (
    ClickSpan,
    NewClaim,
    PendingRefund,
    RefundRecord,
    VendorUnit,
    WindowClickRecord,
)

__all__ = [
    "DEFAULT_REDEEM_AT",
    "MAX_CLAIMS_PER_BATCH",
    "MAX_RANGES_PER_BATCH",
    "MAX_REFUNDS_PER_BATCH",
    "BatchReport",
    "RedeemReport",
    "Redeemer",
    "next_redemption_ms",
    "parse_time_of_day",
]

log = logging.getLogger("vendor.redemption")

DEFAULT_REDEEM_AT = "03:00"  # UTC, daily
_DAY_MS = 86_400_000

MAX_CLAIMS_PER_BATCH = 10_000
# Keeps a batch well inside the 4 MiB gRPC message limit (a range is < 80 bytes).
MAX_RANGES_PER_BATCH = 40_000
# Units whose words the broker checks per batch (its hash budget is 4 * 2**20).
MAX_UNITS_PER_BATCH = 2**22
_MAX_BATCHES_PER_RUN = 100
# Broker answers that say "not now" rather than "never": claim the words again.
# "internal": the broker failed on this claim unexpectedly and refused it alone.
_RETRYABLE = frozenset(
    {"limit_exceeded", "coin_busy", "conflict", "broker_unavailable", "internal"}
)

# A VendorRefund envelope is < 500 bytes: 1,000 of them stay well inside the
# 4 MiB message next to MAX_RANGES_PER_BATCH ranges.
MAX_REFUNDS_PER_BATCH = 1_000
_PENDING_SCAN = 10_000  # pending refunds looked at per batch


def parse_time_of_day(text: str) -> int:
    """``HH:MM`` (UTC) as milliseconds after midnight; InvalidArgument otherwise."""
    hh, sep, mm = text.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(hh) <= 2 and len(mm) == 2):
        raise InvalidArgument(f"a time of day is HH:MM (UTC), not {text[:20]!r}")
    hours, minutes = int(hh), int(mm)
    if hours > 23 or minutes > 59:
        raise InvalidArgument(f"a time of day is HH:MM (UTC), not {text[:20]!r}")
    return (hours * 60 + minutes) * 60_000


def next_redemption_ms(now_ms: int, at_ms_of_day: int) -> int:
    """The first time at ``at_ms_of_day`` (UTC) strictly after ``now_ms``."""
    midnight = now_ms - now_ms % _DAY_MS
    due = midnight + at_ms_of_day
    return due if due > now_ms else due + _DAY_MS


@dataclass
class BatchReport:
    batch_id: str
    claims: int
    accepted: int = 0
    rejected: int = 0
    paid_minor: dict[str, int] = field(default_factory=dict)
    retried: bool = False  # a pending batch sent again
    error: str | None = None  # the broker refused the whole batch (its words are claimed again)
    refunds: int = 0  # VendorRefunds the batch carried
    refunds_accepted: int = 0
    refunds_rejected: int = 0  # finally (a refund whose claim goes again waits instead)
    refunded_minor: dict[str, int] = field(default_factory=dict)
    # Claims refused for now (limit_exceeded, coin_busy, ...): claimed again next run.
    deferred: int = 0


@dataclass
class RedeemReport:
    batches: list[BatchReport] = field(default_factory=list)
    pending: int = 0  # batches stored but not answered (the broker was unreachable)
    # Refunds refused without being sent: their click's claim was refused.
    refunds_dropped: int = 0
    refunds_waiting: int = 0  # refunds still pending after the run

    @property
    def paid_minor(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for b in self.batches:
            for currency, amount in b.paid_minor.items():
                totals[currency] += amount
        return dict(totals)

    @property
    def refunded_minor(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for b in self.batches:
            for currency, amount in b.refunded_minor.items():
                totals[currency] += amount
        return dict(totals)

    def as_json(self) -> dict[str, Any]:
        return {
            "batches": [
                {
                    "batch_id": b.batch_id,
                    "claims": b.claims,
                    "accepted": b.accepted,
                    "rejected": b.rejected,
                    "paid_minor": b.paid_minor,
                    "retried": b.retried,
                    "error": b.error,
                    "refunds": {
                        "sent": b.refunds,
                        "accepted": b.refunds_accepted,
                        "rejected": b.refunds_rejected,
                    },
                    "refunded_minor": b.refunded_minor,
                }
                for b in self.batches
            ],
            "accepted": sum(b.accepted for b in self.batches),
            "rejected": sum(b.rejected for b in self.batches),
            "paid_minor": self.paid_minor,
            "pending": self.pending,
            "refunds": {
                "accepted": sum(b.refunds_accepted for b in self.batches),
                "rejected": sum(b.refunds_rejected for b in self.batches) + self.refunds_dropped,
            },
            "refunds_waiting": self.refunds_waiting,
            "refunded_minor": self.refunded_minor,
        }


@dataclass(frozen=True)
class _Item:
    """Something claimable: a paid click, or a closed window with its clicks."""

    from_index: int
    to_index: int
    word: bytes
    ranges: tuple[pb.ClaimedRange, ...]
    credit: bytes | None = None  # serialized Envelope(WindowCredit)


@dataclass
class _Draft:
    """A batch being built: its signed claims, their credits and their rows."""

    batch_id: str
    claims: list[pb.Envelope] = field(default_factory=list)
    credits: list[pb.Envelope] = field(default_factory=list)
    rows: list[NewClaim] = field(default_factory=list)
    ranges_left: int = MAX_RANGES_PER_BATCH
    units_left: int = MAX_UNITS_PER_BATCH

    def full(self) -> bool:
        return (
            len(self.claims) >= MAX_CLAIMS_PER_BATCH
            or self.ranges_left <= 0
            or self.units_left <= 0
        )


class Redeemer:
    """Builds, stores, sends and records Redeem batches (with the refunds they net)."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        identity: VendorIdentity,
        broker: RedeemClient,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._id = identity
        self._broker = broker
        self._clock = clock
        self._refunds = Refunds(uow, identity, clock)
        self._reports = Reports(uow, clock)
        self._dropped = 0  # refunds refused locally by the current run

    def redeem(self) -> RedeemReport:
        """Send pending batches again, then redeem everything claimable now."""
        report = RedeemReport()
        self._dropped = 0
        try:
            for batch_id, request in self._pending():
                if not self._send(batch_id, request, report, retried=True):
                    return report
            for _ in range(_MAX_BATCHES_PER_RUN):
                built = self._build_batch()
                if built is None:
                    break
                if not self._send(*built, report, retried=False):
                    break
                if report.batches and report.batches[-1].deferred:
                    break  # the broker said "not now" to some claims: the next run
            return report
        finally:
            report.pending = len(self._pending())
            report.refunds_dropped = self._dropped
            with self._uow(read_only=True) as unit:
                report.refunds_waiting = unit.refunds.pending_count()

    def refund(
        self,
        *,
        ecoin_id: str,
        receipt_to_index: int,
        amount_minor: int,
        reason: str,
        refund_id: str | None = None,
    ) -> RefundRecord:
        """Record a refund for a paid click (see :meth:`Refunds.record`)."""
        return self._refunds.record(
            ecoin_id=ecoin_id,
            receipt_to_index=receipt_to_index,
            amount_minor=amount_minor,
            reason=reason,
            refund_id=refund_id,
        )

    def refunds(self, *, limit: int = 1000) -> list[RefundRecord]:
        """The newest refunds first."""
        return self._refunds.refunds(limit=limit)

    def history(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Batches, claims and refunds, newest first (see :meth:`Reports.history`)."""
        return self._reports.history(limit=limit)

    # -- stored batches ------------------------------------------------------------

    def _pending(self) -> list[tuple[str, bpb.RedeemRequest]]:
        with self._uow(read_only=True) as unit:
            rows = unit.redemption.pending_batches()
        return [(b, bpb.RedeemRequest.FromString(r)) for b, r in rows]

    def _send(
        self, batch_id: str, request: bpb.RedeemRequest, report: RedeemReport, *, retried: bool
    ) -> bool:
        """Send one stored batch; False when the broker could not be reached."""
        entry = BatchReport(
            batch_id, len(request.claims), retried=retried, refunds=len(request.vendor_refunds)
        )
        try:
            reply = self._broker.redeem(request)
        except (BrokerUnavailable, Unavailable) as err:
            log.warning("redemption batch %s stays pending: %s", batch_id, err.detail)
            return False
        except NetPayError as err:
            entry.error = f"{err.code}: {err.detail}"
            log.error("the broker refused redemption batch %s: %s", batch_id, entry.error)
            self._fail(batch_id)
            report.batches.append(entry)
            return True
        self._record(batch_id, reply, entry)
        report.batches.append(entry)
        return True

    def _fail(self, batch_id: str) -> None:
        """The broker refused the whole batch (nothing changed there): its words are
        claimed again and its refunds wait for the next batch."""
        with self._uow() as unit:
            unit.redemption.withdraw_claims(batch_id)
            unit.refunds.move_batch(
                batch_id, RefundStatus.BATCHED, RefundEvent.REQUEUED, batch_id=None
            )
            unit.redemption.end_batch(batch_id, BatchEvent.REFUSED, self._clock.now_ms())
            unit.commit()

    def _record(self, batch_id: str, reply: bpb.RedeemResponse, entry: BatchReport) -> None:
        now_ms = self._clock.now_ms()
        refunded: dict[str, int] = defaultdict(int)
        with self._uow() as unit:
            for result in reply.results:
                self._record_claim(unit, batch_id, result, entry)
            for answer in reply.refunds:
                self._record_refund(unit, batch_id, answer, entry, refunded, now_ms)
            # A refund the broker did not answer was not netted: it goes again
            # (the broker nets a refund id once).
            unit.refunds.move_batch(
                batch_id, RefundStatus.BATCHED, RefundEvent.REQUEUED, batch_id=None
            )
            unit.redemption.end_batch(
                batch_id, BatchEvent.ANSWERED, now_ms, reply.SerializeToString()
            )
            unit.commit()
        # What the batch paid the vendor, after the refunds it netted (the broker's sum).
        entry.paid_minor = {
            p.currency: p.balance_minor for p in sorted(reply.paid, key=lambda p: p.currency)
        }
        entry.refunded_minor = dict(sorted(refunded.items()))

    @staticmethod
    def _record_claim(
        unit: VendorUnit, batch_id: str, result: bpb.ClaimResult, entry: BatchReport
    ) -> None:
        key = (batch_id, result.ecoin_id, result.epoch, result.to_index)
        if result.status == bpb.CLAIM_STATUS_ACCEPTED:
            entry.accepted += 1
            unit.redemption.answer_claim(*key, ClaimEvent.ACCEPTED, paid_minor=result.paid_minor)
            return
        entry.rejected += 1
        log.warning(
            "claim %s epoch %d to %d rejected: %s %s",
            result.ecoin_id,
            result.epoch,
            result.to_index,
            result.reason,
            result.detail,
        )
        if result.reason in _RETRYABLE:
            unit.redemption.answer_claim(*key, ClaimEvent.WITHDRAWN)
            entry.deferred += 1
        else:
            unit.redemption.answer_claim(
                *key,
                ClaimEvent.REJECTED,
                reason=result.reason[:32],
                detail=result.detail[:200],
            )

    @staticmethod
    def _record_refund(
        unit: VendorUnit,
        batch_id: str,
        answer: bpb.RefundResult,
        entry: BatchReport,
        refunded: dict[str, int],
        now_ms: int,
    ) -> None:
        refund = unit.refunds.batched(answer.refund_id, batch_id)
        if refund is None:
            return  # answered already (a reply recorded twice)
        batched = RefundStatus.BATCHED
        if answer.status == bpb.CLAIM_STATUS_ACCEPTED:
            entry.refunds_accepted += 1
            refunded[refund.currency] += refund.amount_minor
            unit.refunds.move(refund.row_id, batched, RefundEvent.ACCEPTED, finished_at_ms=now_ms)
            return
        claim = unit.redemption.covering_claim(
            refund.ecoin_id, refund.epoch, refund.receipt_to_index
        )
        if answer.reason == PreconditionFailed.code and claim is None:
            # Its click's claim was turned down for now and is claimed again later:
            # the refund waits for it.
            unit.refunds.move(refund.row_id, batched, RefundEvent.REQUEUED, batch_id=None)
            return
        entry.refunds_rejected += 1
        log.warning("refund %s rejected: %s %s", refund.refund_id, answer.reason, answer.detail)
        unit.refunds.move(
            refund.row_id,
            batched,
            RefundEvent.REJECTED,
            result_reason=answer.reason[:32],
            result_detail=answer.detail[:200],
            finished_at_ms=now_ms,
        )

    # -- building a batch ----------------------------------------------------------------

    def _build_batch(self) -> tuple[str, bpb.RedeemRequest] | None:
        """Store (and return) a new batch of everything claimable, or None."""
        now_ms = self._clock.now_ms()
        with self._uow() as unit:
            unit.redemption.lock(now_ms)
            groups = _claimable(unit)
            currencies = unit.redemption.currencies(e for e, _ in groups) if groups else {}
            draft = _Draft(f"{self._id.vendor_id}-{now_ms}-{secrets.token_hex(4)}")
            for (ecoin_id, epoch), items in sorted(groups.items()):
                if draft.full():
                    break
                self._add_claim(draft, ecoin_id, epoch, items, currencies.get(ecoin_id, ""), now_ms)
            refunds, dropped = _ready_refunds(unit, draft.rows, now_ms)
            self._dropped += dropped
            if not draft.claims and not refunds:
                if dropped:
                    unit.commit()
                return None
            request = bpb.RedeemRequest(
                batch_id=draft.batch_id,
                claims=draft.claims,
                window_credits=draft.credits,
                vendor_refunds=[pb.Envelope.FromString(r.envelope) for r in refunds],
            )
            unit.redemption.add_batch(
                draft.batch_id, request.SerializeToString(), now_ms, draft.rows
            )
            if refunds:
                moved = unit.refunds.move_many(
                    [r.row_id for r in refunds],
                    RefundStatus.PENDING,
                    RefundEvent.BATCHED,
                    batch_id=draft.batch_id,
                )
                if moved != len(refunds):
                    raise Conflict("refunds changed while a batch was built")
            unit.commit()
        return draft.batch_id, request

    def _add_claim(
        self,
        draft: _Draft,
        ecoin_id: str,
        epoch: int,
        items: Sequence[_Item],
        currency: str,
        now_ms: int,
    ) -> None:
        """One claim of ``(ecoin_id, epoch)``: its first items that fit the batch."""
        chosen: list[_Item] = []
        for item in items:
            span = item.to_index - (chosen[0].from_index if chosen else item.from_index)
            if chosen and (len(item.ranges) > draft.ranges_left or span > draft.units_left):
                break
            chosen.append(item)
            draft.ranges_left -= len(item.ranges)
        ranges = [r for item in chosen for r in item.ranges]
        claim = pb.Claim(
            vendor_id=self._id.vendor_id,
            ecoin_id=ecoin_id,
            epoch=epoch,
            from_index=chosen[0].from_index,
            to_index=chosen[-1].to_index,
            payword=chosen[-1].word,
            ranges=ranges,
            issued_at_ms=now_ms,
        )
        draft.units_left -= claim.to_index - claim.from_index
        draft.claims.append(seal(claim, self._id.key))
        draft.credits.extend(pb.Envelope.FromString(item.credit) for item in chosen if item.credit)
        draft.rows.append(
            NewClaim(
                ecoin_id=ecoin_id,
                epoch=epoch,
                from_index=claim.from_index,
                to_index=claim.to_index,
                units=sum(r.to_index - r.from_index for r in ranges),
                currency=currency,
            )
        )


def _claimable(unit: VendorUnit) -> dict[tuple[str, int], list[_Item]]:
    """Per (coin, epoch), the claimable items above what was claimed, in index order."""
    claimed = unit.redemption.claimed_tops()
    items: dict[tuple[str, int], list[_Item]] = defaultdict(list)
    stops: dict[tuple[str, int], int] = {}

    def above(key: tuple[str, int], from_index: int) -> bool:
        return from_index >= claimed.get(key, -1)

    for click in unit.redemption.unclaimed_clicks():
        key = (click.ecoin_id, click.epoch)
        if above(key, click.from_index):
            rng = _claimed_range(click.ecoin_id, click)
            items[key].append(_Item(_start(rng), click.to_index, click.payword, (rng,)))
    for window in unit.redemption.unclaimed_windows():
        key = (window.ecoin_id, window.epoch)
        if not above(key, window.window_from):
            continue
        if window.is_open or window.credit is None:
            stops[key] = min(stops.get(key, window.window_from), window.window_from)
            continue
        ranges = tuple(
            _claimed_range(window.ecoin_id, c) for c in unit.windows.clicks(window.window_id)
        )
        # The first click's void words lie below the window (the words skipped by the
        # payment that opened it); a window no click was paid from starts at its bottom.
        start = min([window.window_from, *(_start(r) for r in ranges[:1])])
        items[key].append(_Item(start, window.window_top, window.payword, ranges, window.credit))
    result: dict[tuple[str, int], list[_Item]] = {}
    for key, found in items.items():
        stop = stops.get(key)
        kept = sorted(
            (i for i in found if stop is None or i.to_index <= stop), key=lambda i: i.from_index
        )
        if kept:
            result[key] = kept
    return result


def _claimed_range(ecoin_id: str, click: ClickSpan | WindowClickRecord) -> pb.ClaimedRange:
    """A Receipt as its claim lists it, ``(void_from, prev, to)``, with the void_from
    the vendor signed into it (one signed before revision 1.1 has none: then the
    range has none either, and the broker reads it as ``prev``). A stored Receipt
    that does not read back is listed without one too, so it never stops a run."""
    rng = pb.ClaimedRange(
        from_index=click.from_index,
        to_index=click.to_index,
        item_id=click.item_id,
        time_ms=click.created_at_ms,
    )
    try:
        signed = pb.Receipt.FromString(pb.Envelope.FromString(click.receipt).payload)
    except DecodeError:
        log.error("the stored receipt of coin %s to %d does not parse", ecoin_id, click.to_index)
        return rng
    if signed.HasField("void_from") and signed.void_from <= click.from_index:
        rng.void_from = signed.void_from
    return rng


def _start(rng: pb.ClaimedRange) -> int:
    """Where a listed Receipt's tile of its claim starts: its void_from (or prev)."""
    return rng.void_from if rng.HasField("void_from") else rng.from_index


def _ready_refunds(
    unit: VendorUnit, batch_claims: Sequence[NewClaim], now_ms: int
) -> tuple[list[PendingRefund], int]:
    """The pending refunds a new batch can carry (their click's claim was accepted,
    or is in this batch: the broker nets refunds after the batch's claims), and
    how many were refused here because their click's claim was refused."""
    spans: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for c in batch_claims:
        spans[(c.ecoin_id, c.epoch)].append((c.from_index, c.to_index))
    ready: list[PendingRefund] = []
    dropped = 0
    for refund in unit.refunds.pending_with_claims(limit=_PENDING_SCAN):
        in_batch = any(
            f < refund.receipt_to_index <= t
            for f, t in spans.get((refund.ecoin_id, refund.epoch), ())
        )
        if refund.claim_status is ClaimStatus.ACCEPTED or in_batch:
            if len(ready) < MAX_REFUNDS_PER_BATCH:
                ready.append(refund)
        elif refund.claim_status is ClaimStatus.REJECTED:
            dropped += unit.refunds.move(
                refund.row_id,
                RefundStatus.PENDING,
                RefundEvent.REJECTED,
                result_reason="claim_rejected",
                result_detail=(
                    f"the broker refused the claim of this click: {refund.claim_reason}"
                )[:200],
                finished_at_ms=now_ms,
            )
            log.warning("refund %s dropped: its click's claim was refused", refund.refund_id)
    return ready, dropped
