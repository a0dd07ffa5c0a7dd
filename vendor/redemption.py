"""The vendor's daily redemption (protocol.md, "Redemption"; docs/protocol.md,
"Redemption (choices)").

One run: first every batch stored as pending is sent again, byte for byte
(a crash or a lost reply never loses or doubles a payment: the broker
answers a retried batch id with its first reply); then new batches are
built from the click log and the closed windows above what was already
claimed, stored with their claims *before* they are sent, sent, and their
per-claim results recorded.

Per coin and epoch a claim runs from the first unclaimed click up to the
last one that can be claimed now: a click's own word, or a closed window's
top (its WindowCredit goes with the batch and its clicks are listed as
ranges). An open window stops the claim at its start: the vendor knows no
word inside it until it closes (windows last at most ``window_ttl_s``, so
the next day's run claims it).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from netpay.clock import Clock
from netpay.envelope import seal
from netpay.errors import BrokerUnavailable, InvalidArgument, NetPayError, Unavailable
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
    WindowClickRow,
    WindowRow,
)

__all__ = [
    "DEFAULT_REDEEM_AT",
    "MAX_CLAIMS_PER_BATCH",
    "MAX_RANGES_PER_BATCH",
    "BatchReport",
    "RedeemClient",
    "RedeemReport",
    "Redeemer",
    "next_redemption_ms",
    "parse_time_of_day",
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


@dataclass
class RedeemReport:
    batches: list[BatchReport] = field(default_factory=list)
    pending: int = 0  # batches stored but not answered (the broker was unreachable)

    @property
    def paid_minor(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for b in self.batches:
            for currency, amount in b.paid_minor.items():
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
                }
                for b in self.batches
            ],
            "accepted": sum(b.accepted for b in self.batches),
            "rejected": sum(b.rejected for b in self.batches),
            "paid_minor": self.paid_minor,
            "pending": self.pending,
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
    """Builds, stores, sends and records Redeem batches."""

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

    def redeem(self) -> RedeemReport:
        """Send pending batches again, then redeem everything claimable now."""
        report = RedeemReport()
        for batch_id, request in self._pending():
            if not self._send(batch_id, request, report, retried=True):
                report.pending = len(self._pending())
                return report
        for _ in range(_MAX_BATCHES_PER_RUN):
            built = self._build_batch()
            if built is None:
                break
            if not self._send(*built, report, retried=False):
                break
        report.pending = len(self._pending())
        return report

    # -- stored batches ------------------------------------------------------------

    def _pending(self) -> list[tuple[str, bpb.RedeemRequest]]:
        with self._uow(read_only=True) as session:
            rows = session.execute(
                select(RedemptionBatchRow.batch_id, RedemptionBatchRow.request)
                .where(RedemptionBatchRow.state == _PENDING)
                .order_by(RedemptionBatchRow.created_at_ms, RedemptionBatchRow.batch_id)
            ).all()
        return [(b, bpb.RedeemRequest.FromString(r)) for b, r in rows]

    def _send(
        self, batch_id: str, request: bpb.RedeemRequest, report: RedeemReport, *, retried: bool
    ) -> bool:
        """Send one stored batch; False when the broker could not be reached."""
        entry = BatchReport(batch_id, len(request.claims), retried=retried)
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
        with self._uow() as session:
            session.execute(delete(ClaimStateRow).where(ClaimStateRow.batch_id == batch_id))
            session.execute(
                update(RedemptionBatchRow)
                .where(RedemptionBatchRow.batch_id == batch_id)
                .values(state=_FAILED, finished_at_ms=self._clock.now_ms())
            )
            session.commit()

    def _record(self, batch_id: str, reply: bpb.RedeemResponse, entry: BatchReport) -> None:
        paid: dict[str, int] = defaultdict(int)
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
                    paid[result.currency] += result.paid_minor
                    session.execute(
                        update(ClaimStateRow)
                        .where(*where)
                        .values(status="accepted", paid_minor=result.paid_minor)
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
                else:
                    session.execute(
                        update(ClaimStateRow)
                        .where(*where)
                        .values(
                            status="rejected",
                            reason=result.reason[:32],
                            detail=result.detail[:200],
                        )
                    )
            session.execute(
                update(RedemptionBatchRow)
                .where(RedemptionBatchRow.batch_id == batch_id)
                .values(
                    state=_DONE,
                    response=reply.SerializeToString(),
                    finished_at_ms=self._clock.now_ms(),
                )
            )
            session.commit()
        entry.paid_minor = {c: a for c, a in sorted(paid.items())}

    # -- building a batch ----------------------------------------------------------------

    def _build_batch(self) -> tuple[str, bpb.RedeemRequest] | None:
        """Store (and return) a new batch of everything claimable, or None."""
        now_ms = self._clock.now_ms()
        with self._uow() as session:
            self._lock(session, now_ms)
            claimed = _claimed_tops(session)
            groups = _claimable(session, claimed)
            if not groups:
                return None
            currencies = dict(
                session.execute(
                    select(CoinRow.ecoin_id, CoinRow.currency).where(
                        CoinRow.ecoin_id.in_({ecoin for ecoin, _ in groups})
                    )
                ).all()
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
            request = bpb.RedeemRequest(batch_id=batch_id, claims=claims, window_credits=credits)
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

    def claims(self, *, limit: int = 1000) -> Sequence[ClaimStateRow]:
        with self._uow(read_only=True) as session:
            return list(
                session.scalars(
                    select(ClaimStateRow).order_by(ClaimStateRow.id.desc()).limit(limit)
                )
            )


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
