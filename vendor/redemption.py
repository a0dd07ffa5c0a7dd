"""The vendor's daily redemption (protocol.md, "Redemption"; docs/protocol.md,
"Redemption (choices)").

One run: first every batch stored as pending is sent again, byte for byte
(a crash or a lost reply never loses or doubles a payment: the broker
answers a retried batch id with its first reply); then new batches are
built from the click log and the closed windows above what was already
claimed, stored with their claims *before* they are sent, sent, and their
per-claim results recorded.

Refunds for returned goods (:func:`record_refund`, ``netpay vendor refund``)
are stored signed, as ``pending``, and travel in the first batch sent after
their click's claim was accepted, or in the batch that carries that claim
(the broker nets a batch's VendorRefunds after its claims). The broker's
answer is kept per refund. :func:`history` lists batches, claims and
refunds, newest first (``netpay vendor history``).

Per coin and epoch a claim runs from the first unclaimed click up to the
last one that can be claimed now: a click's own word, or a closed window's
top (its WindowCredit goes with the batch and its clicks are listed as
ranges). An open window stops the claim at its start: the vendor knows no
word inside it until it closes (windows last at most ``window_ttl_s``, so
the next day's run claims it).
"""

from __future__ import annotations

import csv
import enum
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from netpay.clock import Clock
from netpay.encoding import b64url_encode, check_ecoin_id
from netpay.envelope import seal
from netpay.errors import (
    AlreadyExists,
    BrokerUnavailable,
    Conflict,
    InvalidArgument,
    NetPayError,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from vendor.domain import WindowState
from vendor.services import UnitOfWorkFactory, VendorIdentity
from vendor.storage import (
    ClaimStateRow,
    ClickRow,
    CoinRow,
    RedemptionBatchRow,
    RedemptionLockRow,
    VendorRefundRow,
    WindowClickRow,
    WindowRow,
)

__all__ = [
    "DEFAULT_REDEEM_AT",
    "HISTORY_FIELDS",
    "MAX_CLAIMS_PER_BATCH",
    "MAX_HISTORY_ROWS",
    "MAX_RANGES_PER_BATCH",
    "MAX_REFUNDS_PER_BATCH",
    "MAX_REFUND_REASON_CHARS",
    "BatchReport",
    "RedeemClient",
    "RedeemReport",
    "Redeemer",
    "RefundEvent",
    "RefundRecord",
    "RefundStatus",
    "history",
    "next_redemption_ms",
    "parse_time_of_day",
    "record_refund",
    "refund_transition",
    "write_history_csv",
]

log = logging.getLogger(__name__)

DEFAULT_REDEEM_AT = "03:00"  # UTC, daily
_DAY_MS = 86_400_000

MAX_CLAIMS_PER_BATCH = 10_000
# Keeps a batch well inside the 4 MiB gRPC message limit (a range is < 80 bytes).
MAX_RANGES_PER_BATCH = 40_000
# Units whose words the broker checks per batch (its hash budget is 4 * 2**20).
MAX_UNITS_PER_BATCH = 2**22
_MAX_BATCHES_PER_RUN = 100
# Broker answers that say "not now" rather than "never": claim the words again.
_RETRYABLE = frozenset({"limit_exceeded", "coin_busy", "conflict", "broker_unavailable"})
_PENDING = "pending"
_DONE = "done"
_FAILED = "failed"
_ACCEPTED = "accepted"
_REJECTED = "rejected"

# A VendorRefund envelope is < 500 bytes: 1,000 of them stay well inside the
# 4 MiB message next to MAX_RANGES_PER_BATCH ranges.
MAX_REFUNDS_PER_BATCH = 1_000
MAX_REFUND_REASON_CHARS = 200  # the broker's limit
MAX_HISTORY_ROWS = 10_000
_REFUND_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the broker's grammar
_MAX_INDEX = 2**32 - 1
_MAX_REFUND_MINOR = 10**12
_PENDING_SCAN = 10_000  # pending refunds looked at per batch


class RefundStatus(enum.Enum):
    """Where a refund is on its way to the broker."""

    PENDING = "pending"  # stored, waiting for a batch that can carry it
    BATCHED = "batched"  # in a stored batch, waiting for the broker's answer
    ACCEPTED = "accepted"  # netted: the reader got the money back
    REJECTED = "rejected"  # final: the broker (or its claim's refusal) said no


class RefundEvent(enum.Enum):
    RECORDED = "recorded"
    BATCHED = "batched"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REQUEUED = "requeued"  # its batch was refused whole, or its claim goes again


_REFUND_MOVES: dict[tuple[RefundStatus | None, RefundEvent], RefundStatus] = {
    (None, RefundEvent.RECORDED): RefundStatus.PENDING,
    (RefundStatus.PENDING, RefundEvent.BATCHED): RefundStatus.BATCHED,
    (RefundStatus.PENDING, RefundEvent.REJECTED): RefundStatus.REJECTED,
    (RefundStatus.BATCHED, RefundEvent.ACCEPTED): RefundStatus.ACCEPTED,
    (RefundStatus.BATCHED, RefundEvent.REJECTED): RefundStatus.REJECTED,
    (RefundStatus.BATCHED, RefundEvent.REQUEUED): RefundStatus.PENDING,
}


def refund_transition(state: RefundStatus | None, event: RefundEvent) -> RefundStatus:
    """The one transition function of a refund; a move it does not allow is a bug."""
    after = _REFUND_MOVES.get((state, event))
    if after is None:
        raise ValueError(f"a refund cannot go from {state} on {event}")
    return after


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


class RedeemClient(Protocol):
    def redeem(self, request: bpb.RedeemRequest) -> bpb.RedeemResponse: ...


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

    def as_json(self) -> dict[str, object]:
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
            report.refunds_waiting = self._waiting_refunds()

    def refund(
        self,
        *,
        ecoin_id: str,
        receipt_to_index: int,
        amount_minor: int,
        reason: str,
        refund_id: str | None = None,
    ) -> RefundRecord:
        """Record a refund for a paid click (see :func:`record_refund`)."""
        return record_refund(
            self._uow,
            self._id,
            self._clock,
            ecoin_id=ecoin_id,
            receipt_to_index=receipt_to_index,
            amount_minor=amount_minor,
            reason=reason,
            refund_id=refund_id,
        )

    def refunds(self, *, limit: int = 1000) -> list[RefundRecord]:
        """The newest refunds first."""
        with self._uow(read_only=True) as session:
            rows = session.scalars(
                select(VendorRefundRow).order_by(VendorRefundRow.id.desc()).limit(limit)
            ).all()
            return [_refund_record(r) for r in rows]

    def history(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Batches, claims and refunds, newest first (see :func:`history`)."""
        return history(self._uow, limit=limit)

    # -- stored batches ------------------------------------------------------------

    def _pending(self) -> list[tuple[str, bpb.RedeemRequest]]:
        with self._uow(read_only=True) as session:
            rows = session.execute(
                select(RedemptionBatchRow.batch_id, RedemptionBatchRow.request)
                .where(RedemptionBatchRow.state == _PENDING)
                .order_by(RedemptionBatchRow.created_at_ms, RedemptionBatchRow.batch_id)
            ).all()
        return [(b, bpb.RedeemRequest.FromString(r)) for b, r in rows]

    def _waiting_refunds(self) -> int:
        with self._uow(read_only=True) as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(VendorRefundRow)
                    .where(VendorRefundRow.status == RefundStatus.PENDING.value)
                )
                or 0
            )

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
        with self._uow() as session:
            session.execute(delete(ClaimStateRow).where(ClaimStateRow.batch_id == batch_id))
            _move_refunds(
                session,
                RefundStatus.BATCHED,
                RefundEvent.REQUEUED,
                VendorRefundRow.batch_id == batch_id,
                batch_id=None,
            )
            session.execute(
                update(RedemptionBatchRow)
                .where(RedemptionBatchRow.batch_id == batch_id)
                .values(state=_FAILED, finished_at_ms=self._clock.now_ms())
            )
            session.commit()

    def _record(self, batch_id: str, reply: bpb.RedeemResponse, entry: BatchReport) -> None:
        now_ms = self._clock.now_ms()
        refunded: dict[str, int] = defaultdict(int)
        with self._uow() as session:
            for result in reply.results:
                where = (
                    ClaimStateRow.batch_id == batch_id,
                    ClaimStateRow.ecoin_id == result.ecoin_id,
                    ClaimStateRow.epoch == result.epoch,
                    ClaimStateRow.to_index == result.to_index,
                )
                if result.status == bpb.CLAIM_STATUS_ACCEPTED:
                    entry.accepted += 1
                    session.execute(
                        update(ClaimStateRow)
                        .where(*where)
                        .values(status=_ACCEPTED, paid_minor=result.paid_minor)
                    )
                    continue
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
                    session.execute(delete(ClaimStateRow).where(*where))
                    entry.deferred += 1
                else:
                    session.execute(
                        update(ClaimStateRow)
                        .where(*where)
                        .values(
                            status=_REJECTED,
                            reason=result.reason[:32],
                            detail=result.detail[:200],
                        )
                    )
            for answer in reply.refunds:
                self._record_refund(session, batch_id, answer, entry, refunded, now_ms)
            # A refund the broker did not answer was not netted: it goes again
            # (the broker nets a refund id once).
            _move_refunds(
                session,
                RefundStatus.BATCHED,
                RefundEvent.REQUEUED,
                VendorRefundRow.batch_id == batch_id,
                batch_id=None,
            )
            session.execute(
                update(RedemptionBatchRow)
                .where(RedemptionBatchRow.batch_id == batch_id)
                .values(
                    state=_DONE,
                    response=reply.SerializeToString(),
                    finished_at_ms=now_ms,
                )
            )
            session.commit()
        # What the batch paid the vendor, after the refunds it netted (the broker's sum).
        entry.paid_minor = {
            p.currency: p.balance_minor for p in sorted(reply.paid, key=lambda p: p.currency)
        }
        entry.refunded_minor = dict(sorted(refunded.items()))

    @staticmethod
    def _record_refund(
        session: Session,
        batch_id: str,
        answer: bpb.RefundResult,
        entry: BatchReport,
        refunded: dict[str, int],
        now_ms: int,
    ) -> None:
        row = session.scalars(
            select(VendorRefundRow).where(
                VendorRefundRow.refund_id == answer.refund_id,
                VendorRefundRow.batch_id == batch_id,
                VendorRefundRow.status == RefundStatus.BATCHED.value,
            )
        ).first()
        if row is None:
            return  # answered already (a reply recorded twice)
        same = VendorRefundRow.id == row.id
        if answer.status == bpb.CLAIM_STATUS_ACCEPTED:
            entry.refunds_accepted += 1
            refunded[row.currency] += row.amount_minor
            _move_refunds(
                session, RefundStatus.BATCHED, RefundEvent.ACCEPTED, same, finished_at_ms=now_ms
            )
            return
        claim = _covering_claim(session, row.ecoin_id, row.epoch, row.receipt_to_index)
        if answer.reason == PreconditionFailed.code and claim is None:
            # Its click's claim was turned down for now and is claimed again later:
            # the refund waits for it.
            _move_refunds(session, RefundStatus.BATCHED, RefundEvent.REQUEUED, same, batch_id=None)
            return
        entry.refunds_rejected += 1
        log.warning("refund %s rejected: %s %s", row.refund_id, answer.reason, answer.detail)
        _move_refunds(
            session,
            RefundStatus.BATCHED,
            RefundEvent.REJECTED,
            same,
            result_reason=answer.reason[:32],
            result_detail=answer.detail[:200],
            finished_at_ms=now_ms,
        )

    # -- building a batch ----------------------------------------------------------------

    def _build_batch(self) -> tuple[str, bpb.RedeemRequest] | None:
        """Store (and return) a new batch of everything claimable, or None."""
        now_ms = self._clock.now_ms()
        with self._uow() as session:
            self._lock(session, now_ms)
            claimed = _claimed_tops(session)
            groups = _claimable(session, claimed)
            currencies = (
                dict(
                    session.execute(
                        select(CoinRow.ecoin_id, CoinRow.currency).where(
                            CoinRow.ecoin_id.in_({ecoin for ecoin, _ in groups})
                        )
                    ).all()
                )
                if groups
                else {}
            )
            batch_id = f"{self._id.vendor_id}-{now_ms}-{secrets.token_hex(4)}"
            claims: list[pb.Envelope] = []
            credits: list[pb.Envelope] = []
            rows: list[ClaimStateRow] = []
            ranges_left = MAX_RANGES_PER_BATCH
            units_left = MAX_UNITS_PER_BATCH
            for (ecoin_id, epoch), items in sorted(groups.items()):
                if len(claims) >= MAX_CLAIMS_PER_BATCH or ranges_left <= 0 or units_left <= 0:
                    break
                chosen: list[_Item] = []
                for item in items:
                    span = item.to_index - (chosen[0].from_index if chosen else item.from_index)
                    if chosen and (len(item.ranges) > ranges_left or span > units_left):
                        break
                    chosen.append(item)
                    ranges_left -= len(item.ranges)
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
                units_left -= claim.to_index - claim.from_index
                claims.append(seal(claim, self._id.key))
                credits.extend(
                    pb.Envelope.FromString(item.credit) for item in chosen if item.credit
                )
                rows.append(
                    ClaimStateRow(
                        batch_id=batch_id,
                        ecoin_id=ecoin_id,
                        epoch=epoch,
                        from_index=claim.from_index,
                        to_index=claim.to_index,
                        units=sum(r.to_index - r.from_index for r in ranges),
                        status=_PENDING,
                        paid_minor=0,
                        currency=currencies.get(ecoin_id, ""),
                    )
                )
            refunds, dropped = _ready_refunds(session, rows, now_ms)
            self._dropped += dropped
            if not claims and not refunds:
                if dropped:
                    session.commit()
                return None
            request = bpb.RedeemRequest(
                batch_id=batch_id,
                claims=claims,
                window_credits=credits,
                vendor_refunds=[pb.Envelope.FromString(r.refund) for r in refunds],
            )
            session.add(
                RedemptionBatchRow(
                    batch_id=batch_id,
                    state=_PENDING,
                    request=request.SerializeToString(),
                    created_at_ms=now_ms,
                )
            )
            session.flush()
            session.add_all(rows)
            if refunds:
                moved = _move_refunds(
                    session,
                    RefundStatus.PENDING,
                    RefundEvent.BATCHED,
                    VendorRefundRow.id.in_([r.id for r in refunds]),
                    batch_id=batch_id,
                )
                if moved != len(refunds):
                    raise Conflict("refunds changed while a batch was built")
            session.commit()
        return batch_id, request

    @staticmethod
    def _lock(session: Session, now_ms: int) -> None:
        """Serialise batch building (SQLite: BEGIN IMMEDIATE does; PostgreSQL: the row lock)."""
        row = session.scalars(
            select(RedemptionLockRow).where(RedemptionLockRow.id == 1).with_for_update()
        ).first()
        if row is None:
            session.add(RedemptionLockRow(id=1, last_batch_ms=now_ms))
            session.flush()
        else:
            row.last_batch_ms = now_ms

    # -- reports -------------------------------------------------------------------------


# -- refunds for returned goods ----------------------------------------------------------


@dataclass(frozen=True)
class RefundRecord:
    """A stored refund and where it is (``status``: see :class:`RefundStatus`)."""

    refund_id: str
    ecoin_id: str
    epoch: int
    receipt_to_index: int
    item_id: str
    amount_minor: int
    currency: str
    reason: str
    status: str
    batch_id: str | None
    result_reason: str | None
    result_detail: str | None
    created_at_ms: int
    finished_at_ms: int | None
    envelope: bytes  # serialized Envelope(VendorRefund)
    created: bool = False  # False: the same refund id was recorded before

    def as_json(self) -> dict[str, object]:
        return {
            "refund_id": self.refund_id,
            "ecoin_id": self.ecoin_id,
            "epoch": self.epoch,
            "receipt_to_index": self.receipt_to_index,
            "item_id": self.item_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "reason": self.reason,
            "status": self.status,
            "batch_id": self.batch_id,
            "result_reason": self.result_reason,
            "result_detail": self.result_detail,
            "created_at_ms": self.created_at_ms,
            "finished_at_ms": self.finished_at_ms,
            "created": self.created,
            "vendor_refund": b64url_encode(self.envelope),
        }


def _refund_record(row: VendorRefundRow, *, created: bool = False) -> RefundRecord:
    return RefundRecord(
        refund_id=row.refund_id,
        ecoin_id=row.ecoin_id,
        epoch=int(row.epoch),
        receipt_to_index=row.receipt_to_index,
        item_id=row.item_id,
        amount_minor=int(row.amount_minor),
        currency=row.currency,
        reason=row.reason,
        status=row.status,
        batch_id=row.batch_id,
        result_reason=row.result_reason,
        result_detail=row.result_detail,
        created_at_ms=int(row.created_at_ms),
        finished_at_ms=None if row.finished_at_ms is None else int(row.finished_at_ms),
        envelope=row.refund,
        created=created,
    )


def _check_refund_input(
    ecoin_id: str, receipt_to_index: int, amount_minor: int, reason: str, refund_id: str | None
) -> tuple[str, str]:
    """Checked (reason, refund_id); InvalidArgument on bad input."""
    check_ecoin_id(ecoin_id)
    for name, value, top in (
        ("receipt to-index", receipt_to_index, _MAX_INDEX),
        ("amount", amount_minor, _MAX_REFUND_MINOR),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top:
            raise InvalidArgument(f"the {name} must be a whole number in 1..{top}")
    text = reason.strip()
    if not 0 < len(text) <= MAX_REFUND_REASON_CHARS or not text.isprintable():
        raise InvalidArgument(
            f"a refund reason is 1..{MAX_REFUND_REASON_CHARS} printable characters"
        )
    if refund_id is None:
        refund_id = secrets.token_hex(16)
    elif not _REFUND_ID.fullmatch(refund_id):
        raise InvalidArgument("a refund id is 1..64 characters of [A-Za-z0-9_-]")
    return text, refund_id


def record_refund(
    uow: UnitOfWorkFactory,
    identity: VendorIdentity,
    clock: Clock,
    *,
    ecoin_id: str,
    receipt_to_index: int,
    amount_minor: int,
    reason: str,
    refund_id: str | None = None,
) -> RefundRecord:
    """Record (and sign) a refund of ``amount_minor`` for the paid click whose
    Receipt ends at ``receipt_to_index`` of ``ecoin_id``.

    The click is looked up in the click log and the window clicks; an unknown
    receipt is NotFound, one whose claim the broker refused PreconditionFailed,
    and an amount above what the click paid less its earlier refunds
    InvalidArgument. The refund is stored ``pending``; the next redemption
    batch that can carry it nets it. ``refund_id`` defaults to a random one;
    the same id again with the same refund returns the stored one
    (``created=False``), with another refund AlreadyExists.
    """
    text, refund_id = _check_refund_input(
        ecoin_id, receipt_to_index, amount_minor, reason, refund_id
    )
    now_ms = clock.now_ms()
    with uow() as session:
        Redeemer._lock(session, now_ms)  # one writer of refunds and batches at a time
        stored = session.scalars(
            select(VendorRefundRow).where(VendorRefundRow.refund_id == refund_id)
        ).first()
        if stored is not None:
            if (stored.ecoin_id, stored.receipt_to_index, stored.amount_minor, stored.reason) != (
                ecoin_id,
                receipt_to_index,
                amount_minor,
                text,
            ):
                raise AlreadyExists(f"refund {refund_id} was recorded for another refund")
            return _refund_record(stored)
        receipt = _find_receipt(session, ecoin_id, receipt_to_index)
        if receipt is None:
            raise NotFound(f"no paid click of coin {ecoin_id} ends at index {receipt_to_index}")
        epoch, item_id, paid_minor, currency = receipt
        claim = _covering_claim(session, ecoin_id, epoch, receipt_to_index)
        if claim is not None and claim.status == _REJECTED:
            raise PreconditionFailed(
                f"the broker refused the claim of this click ({claim.reason}): nothing was paid"
            )
        earlier = int(
            session.scalar(
                select(func.coalesce(func.sum(VendorRefundRow.amount_minor), 0)).where(
                    VendorRefundRow.ecoin_id == ecoin_id,
                    VendorRefundRow.receipt_to_index == receipt_to_index,
                    VendorRefundRow.status != RefundStatus.REJECTED.value,
                )
            )
            or 0
        )
        if earlier + amount_minor > paid_minor:
            raise InvalidArgument(
                f"the click paid {paid_minor} {currency} minor units and {earlier} were "
                f"refunded already: at most {paid_minor - earlier} can be refunded"
            )
        envelope = seal(
            pb.VendorRefund(
                vendor_id=identity.vendor_id,
                ecoin_id=ecoin_id,
                epoch=epoch,
                receipt_to_index=receipt_to_index,
                amount_minor=amount_minor,
                currency=currency,
                reason=text,
                time_ms=now_ms,
                refund_id=refund_id,
            ),
            identity.key,
        )
        row = VendorRefundRow(
            refund_id=refund_id,
            ecoin_id=ecoin_id,
            epoch=epoch,
            receipt_to_index=receipt_to_index,
            item_id=item_id,
            amount_minor=amount_minor,
            currency=currency,
            reason=text,
            refund=envelope.SerializeToString(),
            status=refund_transition(None, RefundEvent.RECORDED).value,
            batch_id=None,
            created_at_ms=now_ms,
        )
        session.add(row)
        session.flush()
        record = _refund_record(row, created=True)
        session.commit()
    log.info("refund %s of %d %s recorded", refund_id, amount_minor, currency)
    return record


def _find_receipt(
    session: Session, ecoin_id: str, to_index: int
) -> tuple[int, str, int, str] | None:
    """(epoch, item id, amount, currency) of the click whose Receipt ends at ``to_index``."""
    found = session.execute(
        select(ClickRow.epoch, ClickRow.item_id, ClickRow.amount_minor, ClickRow.currency).where(
            ClickRow.ecoin_id == ecoin_id, ClickRow.to_index == to_index
        )
    ).first()
    if found is None:
        found = session.execute(
            select(
                WindowRow.epoch,
                WindowClickRow.item_id,
                WindowClickRow.amount_minor,
                WindowClickRow.currency,
            )
            .join(WindowRow, WindowRow.id == WindowClickRow.window_id)
            .where(WindowRow.ecoin_id == ecoin_id, WindowClickRow.to_index == to_index)
            .order_by(WindowClickRow.id.desc())
            .limit(1)
        ).first()
    if found is None:
        return None
    epoch, item_id, amount, currency = found
    return int(epoch), str(item_id), int(amount), str(currency)


def _covering_claim(
    session: Session, ecoin_id: str, epoch: int, to_index: int
) -> ClaimStateRow | None:
    """The claim whose span holds the Receipt ending at ``to_index`` (claims of an
    epoch never overlap; a claim turned down for now is deleted and made again)."""
    return session.scalars(
        select(ClaimStateRow)
        .where(
            ClaimStateRow.ecoin_id == ecoin_id,
            ClaimStateRow.epoch == epoch,
            ClaimStateRow.from_index < to_index,
            ClaimStateRow.to_index >= to_index,
        )
        .order_by(ClaimStateRow.id.desc())
        .limit(1)
    ).first()


def _ready_refunds(
    session: Session, batch_claims: Sequence[ClaimStateRow], now_ms: int
) -> tuple[list[VendorRefundRow], int]:
    """The pending refunds a new batch can carry (their click's claim was accepted,
    or is in this batch: the broker nets refunds after the batch's claims), and
    how many were refused here because their click's claim was refused."""
    spans: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for c in batch_claims:
        spans[(c.ecoin_id, int(c.epoch))].append((c.from_index, c.to_index))
    rows = session.execute(
        select(VendorRefundRow, ClaimStateRow.status, ClaimStateRow.reason)
        .outerjoin(
            ClaimStateRow,
            and_(
                ClaimStateRow.ecoin_id == VendorRefundRow.ecoin_id,
                ClaimStateRow.epoch == VendorRefundRow.epoch,
                ClaimStateRow.from_index < VendorRefundRow.receipt_to_index,
                ClaimStateRow.to_index >= VendorRefundRow.receipt_to_index,
            ),
        )
        .where(VendorRefundRow.status == RefundStatus.PENDING.value)
        .order_by(VendorRefundRow.id)
        .limit(_PENDING_SCAN)
    ).all()
    ready: list[VendorRefundRow] = []
    dropped = 0
    for refund, claim_status, claim_reason in rows:
        in_batch = any(
            f < refund.receipt_to_index <= t
            for f, t in spans.get((refund.ecoin_id, int(refund.epoch)), ())
        )
        if claim_status == _ACCEPTED or in_batch:
            if len(ready) < MAX_REFUNDS_PER_BATCH:
                ready.append(refund)
        elif claim_status == _REJECTED:
            dropped += _move_refunds(
                session,
                RefundStatus.PENDING,
                RefundEvent.REJECTED,
                VendorRefundRow.id == refund.id,
                result_reason="claim_rejected",
                result_detail=f"the broker refused the claim of this click: {claim_reason}"[:200],
                finished_at_ms=now_ms,
            )
            log.warning("refund %s dropped: its click's claim was refused", refund.refund_id)
    return ready, dropped


def _move_refunds(
    session: Session,
    before: RefundStatus,
    event: RefundEvent,
    where: Any,
    **values: object,
) -> int:
    """Compare-and-set refunds in ``before`` matching ``where`` to the state
    ``event`` leads to; how many moved."""
    after = refund_transition(before, event)
    result = session.execute(
        update(VendorRefundRow)
        .where(where, VendorRefundRow.status == before.value)
        .values(status=after.value, **values)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


# -- history -------------------------------------------------------------------------------

HISTORY_FIELDS = (
    "kind",
    "time_ms",
    "time",
    "batch_id",
    "status",
    "ecoin_id",
    "epoch",
    "from_index",
    "to_index",
    "units",
    "amount_minor",
    "currency",
    "reason",
    "detail",
    "refund_id",
    "refund_reason",
    "item_id",
    "claims",
    "refunds",
)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _row(kind: str, time_ms: int, **values: object) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(HISTORY_FIELDS)
    row.update(kind=kind, time_ms=time_ms, time=_iso(time_ms), **values)
    return row


def history(uow: UnitOfWorkFactory, *, limit: int = 100) -> list[dict[str, Any]]:
    """The vendor's redemption history, newest first, at most ``limit`` rows
    (1..10,000): one row per batch (``kind`` "batch": its state, claim and
    refund counts), per claim ("claim": status, units, ``amount_minor`` paid,
    the broker's reason) at its batch's time, and per refund ("refund":
    status, ``amount_minor`` negative — money back to the reader — and the
    receipt it refunds) at the time it was recorded. Every row has the keys
    of :data:`HISTORY_FIELDS`."""
    if isinstance(limit, bool) or not 0 < limit <= MAX_HISTORY_ROWS:
        raise InvalidArgument(f"limit is 1..{MAX_HISTORY_ROWS}")
    keyed: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    with uow(read_only=True) as session:
        batches = session.execute(
            select(
                RedemptionBatchRow.batch_id,
                RedemptionBatchRow.state,
                RedemptionBatchRow.created_at_ms,
            )
            .order_by(RedemptionBatchRow.created_at_ms.desc(), RedemptionBatchRow.batch_id.desc())
            .limit(limit)
        ).all()
        times = {b: int(t) for b, _, t in batches}
        claims = (
            session.scalars(
                select(ClaimStateRow)
                .where(ClaimStateRow.batch_id.in_(list(times)))
                .order_by(ClaimStateRow.id)
            ).all()
            if times
            else []
        )
        refunds = session.scalars(
            select(VendorRefundRow)
            .order_by(VendorRefundRow.created_at_ms.desc(), VendorRefundRow.id.desc())
            .limit(limit)
        ).all()
        claim_counts: dict[str, int] = defaultdict(int)
        for c in claims:
            claim_counts[c.batch_id] += 1
        refund_counts = _refunds_per_batch(session, list(times))
        for order, (batch_id, state, at_ms) in enumerate(batches):
            keyed.append(
                (
                    (int(at_ms), -order, 3),
                    _row(
                        "batch",
                        int(at_ms),
                        batch_id=batch_id,
                        status=state,
                        claims=claim_counts[batch_id],
                        refunds=refund_counts.get(batch_id, 0),
                    ),
                )
            )
        order_of = {b: i for i, (b, _, _) in enumerate(batches)}
        for c in claims:
            keyed.append(
                (
                    (times[c.batch_id], -order_of[c.batch_id], 2),
                    _row(
                        "claim",
                        times[c.batch_id],
                        batch_id=c.batch_id,
                        status=c.status,
                        ecoin_id=c.ecoin_id,
                        epoch=int(c.epoch),
                        from_index=c.from_index,
                        to_index=c.to_index,
                        units=c.units,
                        amount_minor=int(c.paid_minor),
                        currency=c.currency,
                        reason=c.reason,
                        detail=c.detail,
                    ),
                )
            )
        for r in refunds:
            keyed.append(
                (
                    (int(r.created_at_ms), 0, 1),
                    _row(
                        "refund",
                        int(r.created_at_ms),
                        batch_id=r.batch_id,
                        status=r.status,
                        ecoin_id=r.ecoin_id,
                        epoch=int(r.epoch),
                        to_index=r.receipt_to_index,
                        amount_minor=-int(r.amount_minor),
                        currency=r.currency,
                        reason=r.result_reason,
                        detail=r.result_detail,
                        refund_id=r.refund_id,
                        refund_reason=r.reason,
                        item_id=r.item_id,
                    ),
                )
            )
    # Newest first; inside one batch: the batch, then its claims in claim order.
    keyed.sort(key=lambda kv: kv[0], reverse=True)
    return [row for _, row in keyed][:limit]


def _refunds_per_batch(session: Session, batch_ids: list[str]) -> dict[str, int]:
    if not batch_ids:
        return {}
    rows = session.execute(
        select(VendorRefundRow.batch_id, func.count())
        .where(VendorRefundRow.batch_id.in_(batch_ids))
        .group_by(VendorRefundRow.batch_id)
    ).all()
    return {str(b): int(n) for b, n in rows}


def write_history_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    """The history rows as CSV (header: :data:`HISTORY_FIELDS`; None is empty)."""
    writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in HISTORY_FIELDS})


def _claimed_tops(session: Session) -> dict[tuple[str, int], int]:
    """Per (coin, epoch), the highest index already claimed (pending, accepted or refused)."""
    rows = session.execute(
        select(
            ClaimStateRow.ecoin_id, ClaimStateRow.epoch, func.max(ClaimStateRow.to_index)
        ).group_by(ClaimStateRow.ecoin_id, ClaimStateRow.epoch)
    ).all()
    return {(e, int(ep)): int(top) for e, ep, top in rows}


def _claimable(
    session: Session, claimed: dict[tuple[str, int], int]
) -> dict[tuple[str, int], list[_Item]]:
    """Per (coin, epoch), the claimable items above what was claimed, in index order."""
    items: dict[tuple[str, int], list[_Item]] = defaultdict(list)
    stops: dict[tuple[str, int], int] = {}

    def above(key: tuple[str, int], from_index: int) -> bool:
        return from_index >= claimed.get(key, -1)

    clicks = session.execute(
        select(
            ClickRow.ecoin_id,
            ClickRow.epoch,
            ClickRow.from_index,
            ClickRow.to_index,
            ClickRow.payword,
            ClickRow.item_id,
            ClickRow.created_at_ms,
        ).where(ClickRow.to_index > _claimed_subquery(ClickRow))
    ).all()
    for ecoin_id, epoch, frm, to, word, item_id, at_ms in clicks:
        key = (ecoin_id, int(epoch))
        if above(key, frm):
            rng = pb.ClaimedRange(from_index=frm, to_index=to, item_id=item_id, time_ms=at_ms)
            items[key].append(_Item(frm, to, word, (rng,)))
    windows = session.scalars(
        select(WindowRow).where(WindowRow.window_top > _claimed_subquery(WindowRow))
    ).all()
    for window in windows:
        key = (window.ecoin_id, int(window.epoch))
        if not above(key, window.window_from):
            continue
        if window.state == WindowState.OPEN.value or window.credit is None:
            stops[key] = min(stops.get(key, window.window_from), window.window_from)
            continue
        wclicks = session.scalars(
            select(WindowClickRow)
            .where(WindowClickRow.window_id == window.id)
            .order_by(WindowClickRow.to_index)
        ).all()
        ranges = tuple(
            pb.ClaimedRange(
                from_index=c.from_index,
                to_index=c.to_index,
                item_id=c.item_id,
                time_ms=c.created_at_ms,
            )
            for c in wclicks
        )
        items[key].append(
            _Item(window.window_from, window.window_top, window.payword, ranges, window.credit)
        )
    result: dict[tuple[str, int], list[_Item]] = {}
    for key, found in items.items():
        stop = stops.get(key)
        kept = sorted(
            (i for i in found if stop is None or i.to_index <= stop), key=lambda i: i.from_index
        )
        if kept:
            result[key] = kept
    return result


def _claimed_subquery(table: type[ClickRow] | type[WindowRow]) -> object:
    """The highest claimed index of the row's (coin, epoch), or -1."""
    return (
        select(func.coalesce(func.max(ClaimStateRow.to_index), -1))
        .where(ClaimStateRow.ecoin_id == table.ecoin_id, ClaimStateRow.epoch == table.epoch)
        .scalar_subquery()
    )
