"""Redemption, window credits, vendor refunds, payouts and money history.

``Broker.Redeem`` (protocol.md, "Redemption"): a vendor sends a batch of
signed Claims with the WindowCredits and VendorRefunds it nets. The whole
batch is one unit of work: every claim is checked by
:func:`broker.claims.check_claim` and gets its own result; an accepted
claim moves its paid units from the broker float to the vendor's payable
account and its netted window credits to the reader's refund balance;
vendor refunds move money from the vendor's payable account to the reader's
refund balance; then the bank pays the vendor what it is owed. The reply is
stored under ``(vendor, batch id)`` before the commit, so a retried batch
returns it byte for byte and pays once.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from broker.bank import Bank, DemoBank
from broker.domain import (
    AccountRef,
    ClaimIndex,
    EpochView,
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
from broker.storage import (
    BrokerStore,
    ClaimRangeRow,
    ClaimRow,
    DisputeRow,
    ExpiryRefundRow,
    Repos,
    StoredCoin,
    StoredCredit,
    VendorRefundRow,
    WindowCreditRow,
)
from netpay.chain import WORD_BYTES
from netpay.clock import Clock
from netpay.encoding import check_currency, check_ecoin_id, check_party_id
from netpay.envelope import open_envelope
from netpay.errors import (
    AlreadyExists,
    AlreadySpent,
    Expired,
    Insufficient,
    InvalidArgument,
    NetPayError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unauthenticated,
)
from netpay.limits import Limits
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "BATCH_HASH_BUDGET",
    "MAX_BATCH_ITEMS",
    "HistoryItem",
    "RedemptionService",
    "keep_window_credit",
    "parse_window_credit",
]

MAX_BATCH_ITEMS = 10_000
# Hash steps one batch may spend checking claim words (about a second of SHA-256).
BATCH_HASH_BUDGET = 4 * 2**20
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ITEM_MAX_CHARS = 64
_REASON_MAX_CHARS = 200
_HISTORY_MAX = 1000
_HISTORY_DEFAULT = 100
_KIND_ORDER = {
    "purchase": 0,
    "click": 1,
    "window_credit": 2,
    "claim": 3,
    "vendor_refund": 4,
    "expiry_refund": 5,
}


@dataclass(frozen=True)
class HistoryItem:
    """One line of a reader's or a vendor's money history (``Broker.History``)."""

    time_ms: int
    kind: str
    ecoin_id: str = ""
    vendor_id: str = ""
    item_id: str = ""
    epoch: int = 0
    from_index: int = 0
    to_index: int = 0
    amount_minor: int = 0
    currency: str = ""
    batch_id: str = ""


def parse_window_credit(envelope: pb.Envelope, signer_key: bytes) -> CreditView:
    """A signed WindowCredit, checked for shape (the signer's id is checked by the caller)."""
    msg = open_envelope(envelope, pb.WindowCredit, signer_key)
    check_party_id(msg.vendor_id)
    check_ecoin_id(msg.ecoin_id)
    if msg.consumed_index > msg.window_top:
        raise InvalidArgument("a window credit's consumed index is above its top")
    if msg.refund_units != msg.window_top - msg.consumed_index:
        raise InvalidArgument("a window credit's refund is not window_top - consumed_index")
    return CreditView(
        vendor_id=msg.vendor_id,
        ecoin_id=msg.ecoin_id,
        epoch=msg.epoch,
        window_top=msg.window_top,
        consumed_index=msg.consumed_index,
        refund_units=msg.refund_units,
    )


def keep_window_credit(
    repos: Repos, credit: CreditView, envelope: pb.Envelope, epoch: EpochView, now_ms: int
) -> None:
    """Keep a WindowCredit of ``epoch`` for the reader (once; the same credit again is a no-op)."""
    if credit.vendor_id != epoch.holder or credit.epoch != epoch.epoch:
        raise PermissionDenied("the window credit is not from the epoch's holder")
    if credit.consumed_index < epoch.base.index:
        raise InvalidArgument("the window credit lies below the epoch's base")
    if epoch.end_index is not None and credit.window_top > epoch.end_index:
        raise InvalidArgument("the window credit lies above the epoch's end")
    kept = repos.redemption.credit_at(credit.ecoin_id, credit.epoch, credit.window_top)
    if kept is not None:
        if (kept.consumed_index, kept.vendor_id) != (credit.consumed_index, credit.vendor_id):
            raise AlreadyExists("another window credit with this top is already kept")
        return
    repos.redemption.add_credit(
        WindowCreditRow(
            vendor_id=credit.vendor_id,
            ecoin_id=credit.ecoin_id,
            epoch=credit.epoch,
            window_top=credit.window_top,
            consumed_index=credit.consumed_index,
            refund_units=credit.refund_units,
            credit=envelope.SerializeToString(),
            received_at_ms=now_ms,
        )
    )


def _credit_view(stored: StoredCredit) -> CreditView:
    return CreditView(
        vendor_id=stored.vendor_id,
        ecoin_id=stored.ecoin_id,
        epoch=stored.epoch,
        window_top=stored.window_top,
        consumed_index=stored.consumed_index,
        refund_units=stored.refund_units,
    )


def _parse_claim(envelope: pb.Envelope, caller: str, key: bytes) -> ClaimView:
    msg = open_envelope(envelope, pb.Claim, key)
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
        ranges.append(RangeView(r.from_index, r.to_index, r.item_id, r.time_ms))
    return ClaimView(
        vendor_id=msg.vendor_id,
        ecoin_id=msg.ecoin_id,
        epoch=msg.epoch,
        from_index=msg.from_index,
        to_index=msg.to_index,
        word=msg.payword,
        ranges=tuple(ranges),
    )


def _rejected_claim(claim: ClaimView, err: NetPayError) -> bpb.ClaimResult:
    return bpb.ClaimResult(
        ecoin_id=claim.ecoin_id,
        epoch=claim.epoch,
        to_index=claim.to_index,
        status=bpb.CLAIM_STATUS_REJECTED,
        reason=err.code,
        detail=err.detail[:_REASON_MAX_CHARS],
    )


def _known_words(repos: Repos, coin: StoredCoin, epochs: Sequence[EpochView]) -> list[IndexedWord]:
    """Every word of the coin the broker holds: its latest, the epochs' bases and ends,
    the tops of the claims it paid."""
    words = [coin.view.latest]
    for epoch in epochs:
        words.append(epoch.base)
        if epoch.end is not None:
            words.append(epoch.end)
    words.extend(repos.redemption.claimed_words(coin.view.ecoin_id))
    return words


class RedemptionService:
    """Redeem, History and the window credits kept with hand-offs."""

    def __init__(
        self,
        store: BrokerStore,
        *,
        limits: Limits,
        clock: Clock,
        bank: Bank | None = None,
        hash_budget: int = BATCH_HASH_BUDGET,
    ) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock
        self.bank: Bank = bank or DemoBank()
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

    def _replay(self, repos: Repos, caller: str, batch_id: str, fingerprint: bytes) -> bytes | None:
        found = repos.redemption.batch(caller, batch_id)
        if found is None:
            return None
        if found.request_sha256 != fingerprint:
            raise AlreadyExists(f"batch {batch_id} was redeemed with other contents")
        return found.response

    def _redeem_once(
        self, caller: str, request: bpb.RedeemRequest, fingerprint: bytes
    ) -> bpb.RedeemResponse:
        now_ms = self.clock.now_ms()
        with self.store.begin() as repos:
            stored_reply = self._replay(repos, caller, request.batch_id, fingerprint)
            if stored_reply is not None:
                return bpb.RedeemResponse.FromString(stored_reply)
            key = repos.vendors.public_key(caller)
            if key is None:
                raise Unauthenticated(f"vendor {caller} is not enrolled")
            claims = [_parse_claim(env, caller, key) for env in request.claims]
            credits: dict[tuple[str, int, int], tuple[CreditView, pb.Envelope]] = {}
            for env in request.window_credits:
                credit = parse_window_credit(env, key)
                if credit.vendor_id != caller:
                    raise PermissionDenied("a window credit must name the caller")
                credits[(credit.ecoin_id, credit.epoch, credit.window_top)] = (credit, env)
            batch_row_id = repos.redemption.add_batch(caller, request.batch_id, fingerprint, now_ms)
            paid: dict[str, int] = defaultdict(int)
            results = []
            budget = self._hash_budget
            for envelope, claim in zip(request.claims, claims, strict=True):
                try:
                    # A savepoint per claim: a claim refused half-way leaves nothing.
                    with repos.session.begin_nested():
                        result, steps = self._redeem_claim(
                            repos,
                            claim,
                            envelope,
                            credits,
                            batch_row_id,
                            budget,
                            now_ms,
                            request.batch_id,
                        )
                except IntegrityError:
                    err = AlreadySpent("a claim with this top was already paid")
                    results.append(_rejected_claim(claim, err))
                    continue
                except NetPayError as err:
                    if isinstance(err, AlreadySpent):
                        self._record_dispute(repos, claim, envelope, err, now_ms)
                    results.append(_rejected_claim(claim, err))
                    continue
                budget -= steps
                paid[result.currency] += result.paid_minor
                results.append(result)
            refunds = []
            for env in request.vendor_refunds:
                with repos.session.begin_nested():
                    refunds.append(
                        self._vendor_refund(repos, caller, env, key, batch_row_id, now_ms, paid)
                    )
            self._pay_out(repos, caller, request.batch_id, paid, now_ms)
            reply = bpb.RedeemResponse(
                batch_id=request.batch_id,
                results=results,
                paid=[
                    bpb.AccountBalance(currency=c, balance_minor=a) for c, a in sorted(paid.items())
                ],
                refunds=refunds,
            )
            repos.redemption.finish_batch(batch_row_id, reply.SerializeToString())
            repos.commit()
        return reply

    def _redeem_claim(
        self,
        repos: Repos,
        claim: ClaimView,
        envelope: pb.Envelope,
        batch_credits: dict[tuple[str, int, int], tuple[CreditView, pb.Envelope]],
        batch_row_id: int,
        budget: int,
        now_ms: int,
        batch_id: str,
    ) -> tuple[bpb.ClaimResult, int]:
        stored = repos.coins.get(claim.ecoin_id, for_update=True)
        if stored is None:
            raise NotFound(f"no coin {claim.ecoin_id}")
        coin = stored.view
        grace_ms = self.limits.redemption_grace_s * 1000
        if now_ms >= coin.expires_at_ms + grace_ms or repos.redemption.expiry_refund(
            claim.ecoin_id
        ):
            raise Expired(
                "the coin expired more than the redemption grace period ago: its unclaimed "
                "value went back to the reader"
            )
        epochs = {e.epoch: e for e in repos.coins.epochs(claim.ecoin_id)}
        epoch = epochs.get(claim.epoch)
        kept = {
            c.window_top: c
            for c in repos.redemption.credits(claim.ecoin_id, claim.epoch)
            if c.claim_id is None
        }
        credits = [_credit_view(c) for c in kept.values()]
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
        outcome: ClaimOutcome = check_claim(
            claim,
            n=coin.n,
            epoch=epoch,
            current_epoch=coin.epoch,
            credits=credits,
            paid=[PaidSpan(e, f, t) for e, f, t in repos.redemption.paid_spans(claim.ecoin_id)],
            known=_known_words(repos, stored, list(epochs.values())),
            hash_budget=budget,
            epochs=epochs,
        )
        assert epoch is not None
        for credit, env in new_credits:
            if credit in outcome.credits:
                keep_window_credit(repos, credit, env, epoch, now_ms)
        u = coin.unit_value_minor
        amount_minor = outcome.paid_units * u
        claim_id = repos.redemption.add_claim(
            ClaimRow(
                batch_row_id=batch_row_id,
                vendor_id=claim.vendor_id,
                ecoin_id=claim.ecoin_id,
                epoch=claim.epoch,
                from_index=claim.from_index,
                to_index=claim.to_index,
                payword=claim.word,
                paid_units=outcome.paid_units,
                refund_units=outcome.refund_units,
                void_units=outcome.void_units,
                amount_minor=amount_minor,
                currency=stored.currency,
                claim=envelope.SerializeToString(),
                created_at_ms=now_ms,
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
            repos.redemption.net_credit(claim.ecoin_id, claim.epoch, credit.window_top, claim_id)
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
            repos.redemption.flag(stored.owner, stored.currency, loss_minor, now_ms)
            self._record_dispute(
                repos,
                claim,
                envelope,
                AlreadySpent(
                    f"{outcome.loss_units} units re-spent after a forced acquisition: "
                    "paid from broker losses; the reader is flagged"
                ),
                now_ms,
            )
        if amount_minor:
            entries.append(
                LedgerEntry(
                    AccountRef.vendor_payable(claim.vendor_id, stored.currency), amount_minor
                )
            )
        if refund_minor:
            entries.append(
                LedgerEntry(AccountRef.reader_refund(stored.owner, stored.currency), refund_minor)
            )
        repos.ledger.post(
            Transaction(
                "redeem",
                f"redeem:{claim.vendor_id}:{batch_id}:{claim.ecoin_id}:{claim.epoch}:{claim.to_index}",
                now_ms,
                tuple(entries),
            )
        )
        if (
            coin.epoch == claim.epoch
            and claim.to_index > coin.latest.index
            and ClaimIndex in allowed_events(coin.state)
        ):
            after = transition(
                coin,
                ClaimIndex(claim.vendor_id, claim.epoch, IndexedWord(claim.to_index, claim.word)),
            )
            repos.coins.apply(coin, after)
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

    @staticmethod
    def _record_dispute(
        repos: Repos, claim: ClaimView, envelope: pb.Envelope, err: NetPayError, now_ms: int
    ) -> None:
        """A claim over words already paid is refused and kept as evidence."""
        overlaps = repos.redemption.overlapping_claims(
            claim.ecoin_id, claim.from_index, claim.to_index
        )
        repos.redemption.add_dispute(
            DisputeRow(
                vendor_id=claim.vendor_id,
                ecoin_id=claim.ecoin_id,
                epoch=claim.epoch,
                from_index=claim.from_index,
                to_index=claim.to_index,
                claim=envelope.SerializeToString(),
                overlaps=",".join(str(i) for i in overlaps)[:400],
                detail=err.detail[:400],
                created_at_ms=now_ms,
            )
        )

    def _vendor_refund(
        self,
        repos: Repos,
        caller: str,
        envelope: pb.Envelope,
        key: bytes,
        batch_row_id: int,
        now_ms: int,
        paid: dict[str, int],
    ) -> bpb.RefundResult:
        msg = open_envelope(envelope, pb.VendorRefund, key)
        if msg.vendor_id != caller:
            raise PermissionDenied("a vendor refund must name the caller")
        if not _BATCH_ID.fullmatch(msg.refund_id):
            raise InvalidArgument("refund_id must be 1..64 characters of [A-Za-z0-9_-]")

        def rejected(err: NetPayError) -> bpb.RefundResult:
            return bpb.RefundResult(
                refund_id=msg.refund_id,
                status=bpb.CLAIM_STATUS_REJECTED,
                reason=err.code,
                detail=err.detail[:_REASON_MAX_CHARS],
            )

        try:
            check_ecoin_id(msg.ecoin_id)
            check_currency(msg.currency)
            if len(msg.reason) > _REASON_MAX_CHARS:
                raise InvalidArgument(f"a refund reason has at most {_REASON_MAX_CHARS} characters")
            if msg.amount_minor <= 0:
                raise InvalidArgument("a refund is a positive amount")
            earlier = repos.redemption.refund(caller, msg.refund_id)
            if earlier is not None:
                if earlier.refund == envelope.SerializeToString():
                    # The same refund again (a vendor resending it): its first result.
                    return bpb.RefundResult(
                        refund_id=msg.refund_id,
                        status=bpb.CLAIM_STATUS_ACCEPTED,
                        detail="netted in an earlier batch",
                    )
                raise AlreadyExists(f"refund id {msg.refund_id} was used for another refund")
            stored = repos.coins.get(msg.ecoin_id)
            if stored is None:
                raise NotFound(f"no coin {msg.ecoin_id}")
            if stored.currency != msg.currency:
                raise InvalidArgument("the refund's currency is not the coin's")
            paid_range = repos.redemption.claimed_range(caller, msg.ecoin_id, msg.receipt_to_index)
            if paid_range is None:
                raise PreconditionFailed(
                    "no redeemed receipt of this vendor ends at that index: redeem it first"
                )
            already = repos.redemption.refunded_for_receipt(
                caller, msg.ecoin_id, msg.receipt_to_index
            )
            if already + msg.amount_minor > paid_range.amount_minor:
                raise InvalidArgument(
                    f"the receipt paid {paid_range.amount_minor}; {already} is already refunded"
                )
        except NetPayError as err:
            return rejected(err)
        repos.redemption.add_refund(
            VendorRefundRow(
                vendor_id=caller,
                refund_id=msg.refund_id,
                ecoin_id=msg.ecoin_id,
                receipt_to_index=msg.receipt_to_index,
                amount_minor=msg.amount_minor,
                currency=msg.currency,
                refund=envelope.SerializeToString(),
                batch_row_id=batch_row_id,
                created_at_ms=now_ms,
            )
        )
        repos.ledger.post(
            Transaction.transfer(
                "vendor_refund",
                f"vendor_refund:{caller}:{msg.refund_id}",
                now_ms,
                source=AccountRef.vendor_payable(caller, msg.currency),
                destination=AccountRef.reader_refund(stored.owner, msg.currency),
                amount_minor=msg.amount_minor,
            )
        )
        paid[msg.currency] -= msg.amount_minor
        return bpb.RefundResult(refund_id=msg.refund_id, status=bpb.CLAIM_STATUS_ACCEPTED)

    def _pay_out(
        self, repos: Repos, vendor_id: str, batch_id: str, paid: dict[str, int], now_ms: int
    ) -> None:
        """The bank pays the vendor what it is owed in each currency this batch touched."""
        for currency in sorted(paid):
            owed = repos.ledger.balance_minor(
                AccountRef.vendor_payable(vendor_id, currency), for_update=True
            )
            if owed > 0:
                key = f"payout:{vendor_id}:{batch_id}:{currency}"
                self.bank.pay_vendor(repos, vendor_id, owed, currency, key, now_ms)

    # -- flagged readers ------------------------------------------------------------------

    def settle_flags(self, repos: Repos, reader_id: str, now_ms: int) -> None:
        """Before a purchase: a flagged reader's debt to the broker-loss account is
        debited from their account; PermissionDenied when it cannot be (nothing moves)."""
        bank = self.bank
        for row in repos.redemption.flags(reader_id, for_update=True):
            owed = row.owed_minor - row.recovered_minor
            if owed <= 0:
                continue
            try:
                bank.collect(
                    repos,
                    reader_id,
                    owed,
                    row.currency,
                    kind="loss_recovery",
                    key=f"loss_recovery:{reader_id}:{row.currency}:{row.owed_minor}",
                    at_ms=now_ms,
                    into=AccountRef.broker_loss(row.currency),
                )
            except Insufficient as err:
                raise PermissionDenied(
                    f"words of your coin were spent twice; {owed} {row.currency} minor units "
                    "must be paid back before you buy a new coin"
                ) from err
            row.recovered_minor = row.owed_minor
            row.updated_at_ms = now_ms

    # -- expiry refunds -------------------------------------------------------------------

    def refund_expired(self, *, limit: int = 1000) -> list[ExpiryRefundRow]:
        """Refund every coin past ``expires_at + redemption_grace_s``: what no vendor
        claimed (unspent, void and un-netted window words) and the reader's refund
        balance go to the reader's account, once per coin. Returns the refunds made."""
        now_ms = self.clock.now_ms()
        cutoff = now_ms - self.limits.redemption_grace_s * 1000
        made: list[ExpiryRefundRow] = []
        with self.store.begin() as repos:
            for ecoin_id in repos.redemption.coins_due_for_refund(cutoff, limit):
                made.append(self._refund_one(repos, ecoin_id, now_ms))
            repos.commit()
        return made

    def _refund_one(self, repos: Repos, ecoin_id: str, now_ms: int) -> ExpiryRefundRow:
        bank = self.bank
        stored = repos.coins.get(ecoin_id, for_update=True)
        assert stored is not None
        coin = stored.view
        claimed_minor, netted_units = repos.redemption.claimed_value(ecoin_id)
        value_minor = coin.n * coin.unit_value_minor
        unclaimed = value_minor - claimed_minor - netted_units * coin.unit_value_minor
        assert unclaimed >= 0, (ecoin_id, value_minor, claimed_minor, netted_units)
        refund_account = AccountRef.reader_refund(stored.owner, stored.currency)
        balance = repos.ledger.balance_minor(refund_account, for_update=True)
        bank.refund_reader(
            repos,
            stored.owner,
            stored.currency,
            f"expiry_refund:{ecoin_id}",
            now_ms,
            from_float_minor=unclaimed,
            from_refund_balance_minor=max(balance, 0),
        )
        if Expire in allowed_events(coin.state):
            repos.coins.apply(coin, transition(coin, Expire(now_ms)))
        row = ExpiryRefundRow(
            ecoin_id=ecoin_id,
            reader_id=stored.owner,
            amount_minor=unclaimed,
            refund_balance_minor=max(balance, 0),
            currency=stored.currency,
            created_at_ms=now_ms,
        )
        repos.redemption.add_expiry_refund(row)
        return row

    # -- History ------------------------------------------------------------------------

    def history(
        self,
        *,
        reader_id: str | None = None,
        vendor_id: str | None = None,
        ecoin_id: str = "",
        limit: int = 0,
        before_ms: int = 0,
    ) -> list[HistoryItem]:
        """Newest first: a reader's purchases, redeemed clicks and credits, or a vendor's
        claims, refunds and payouts."""
        assert (reader_id is None) != (vendor_id is None)
        if ecoin_id:
            check_ecoin_id(ecoin_id)
        if limit < 0 or limit > _HISTORY_MAX:
            raise InvalidArgument(f"limit is 1..{_HISTORY_MAX} (0: {_HISTORY_DEFAULT})")
        limit = limit or _HISTORY_DEFAULT
        before = before_ms if before_ms > 0 else None
        with self.store.begin(read_only=True) as repos:
            if reader_id is not None:
                items = self._reader_history(repos, reader_id, ecoin_id, limit, before)
            else:
                assert vendor_id is not None
                items = self._vendor_history(repos, vendor_id, ecoin_id, limit, before)
        # Newest first; at the same millisecond in the order things happen.
        items.sort(key=lambda h: (h.time_ms, _KIND_ORDER.get(h.kind, 99)), reverse=True)
        return items[:limit]

    def _reader_history(
        self, repos: Repos, reader_id: str, ecoin_id: str, limit: int, before: int | None
    ) -> list[HistoryItem]:
        coins = repos.coins.list_for_owner(reader_id, 10_000)
        if ecoin_id:
            coins = [c for c in coins if c.view.ecoin_id == ecoin_id]
            if not coins:
                raise NotFound(f"no coin {ecoin_id} of yours")
        ids = [c.view.ecoin_id for c in coins]
        items: list[HistoryItem] = []
        for purchase in repos.purchases.of_coins(ids):
            if before is None or purchase.created_at_ms < before:
                items.append(
                    HistoryItem(
                        time_ms=purchase.created_at_ms,
                        kind="purchase",
                        ecoin_id=purchase.ecoin_id,
                        amount_minor=-purchase.amount_minor,
                        currency=purchase.currency,
                    )
                )
        for r in repos.redemption.ranges(ecoin_ids=ids, before_ms=before, limit=limit):
            items.append(
                HistoryItem(
                    time_ms=r.time_ms,
                    kind="click",
                    ecoin_id=r.ecoin_id,
                    vendor_id=r.vendor_id,
                    item_id=r.item_id,
                    epoch=r.epoch,
                    from_index=r.from_index,
                    to_index=r.to_index,
                    amount_minor=-r.amount_minor,
                    currency=r.currency,
                )
            )
        for vendor_refund in repos.redemption.refunds_of(ids):
            if before is None or vendor_refund.created_at_ms < before:
                items.append(
                    HistoryItem(
                        time_ms=vendor_refund.created_at_ms,
                        kind="vendor_refund",
                        ecoin_id=vendor_refund.ecoin_id,
                        vendor_id=vendor_refund.vendor_id,
                        to_index=vendor_refund.receipt_to_index,
                        amount_minor=vendor_refund.amount_minor,
                        currency=vendor_refund.currency,
                    )
                )
        for ecoin in ids:
            refund = repos.redemption.expiry_refund(ecoin)
            if refund is not None and (before is None or refund.created_at_ms < before):
                items.append(
                    HistoryItem(
                        time_ms=refund.created_at_ms,
                        kind="expiry_refund",
                        ecoin_id=ecoin,
                        amount_minor=refund.amount_minor + refund.refund_balance_minor,
                        currency=refund.currency,
                    )
                )
        units = {c.view.ecoin_id: (c.view.unit_value_minor, c.currency) for c in coins}
        for credit in repos.redemption.credits_of(ids):
            if before is not None and credit.received_at_ms >= before:
                continue
            u, currency = units[credit.ecoin_id]
            items.append(
                HistoryItem(
                    time_ms=credit.received_at_ms,
                    kind="window_credit",
                    ecoin_id=credit.ecoin_id,
                    vendor_id=credit.vendor_id,
                    epoch=credit.epoch,
                    from_index=credit.consumed_index,
                    to_index=credit.window_top,
                    amount_minor=credit.refund_units * u,
                    currency=currency,
                )
            )
        return items

    def _vendor_history(
        self, repos: Repos, vendor_id: str, ecoin_id: str, limit: int, before: int | None
    ) -> list[HistoryItem]:
        claims = repos.redemption.claims(
            vendor_id=vendor_id,
            ecoin_ids=[ecoin_id] if ecoin_id else None,
            before_ms=before,
            limit=limit,
        )
        return [
            HistoryItem(
                time_ms=c.created_at_ms,
                kind="claim",
                ecoin_id=c.ecoin_id,
                vendor_id=c.vendor_id,
                epoch=c.epoch,
                from_index=c.from_index,
                to_index=c.to_index,
                amount_minor=c.amount_minor,
                currency=c.currency,
                batch_id=c.batch_id,
            )
            for c in claims
        ]
