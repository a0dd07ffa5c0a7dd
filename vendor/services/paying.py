"""Paying for one click with a payword (protocol.md, "The HTTP payment").

:meth:`Paying.pay` accepts a paid click: the same header for the same item
within ``retry_ttl_s`` re-serves the first Receipt (a replay); otherwise
:meth:`Paying.spend` takes custody when needed, checks the rules, hashes,
and commits the compare-and-set of the coin's index with the click and its
Receipt before the article is served. :meth:`Paying.spend` is shared with
opening a window (windows.py), and :func:`seal_receipt` is the one place a
Receipt is signed, for a paid click and a window click alike.

The paid click is the hot path: one read unit (the coin and the click that
took the index, in one statement) and one write unit (the compare-and-set
and the insert).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from netpay.envelope import seal
from netpay.errors import AlreadySpent, CoinBusy, Malformed, PaymentError, WrongAmount
from netpay.header import Credentials, parse_authorization
from netpay.money import Money, words_for
from netpay.v1 import statements_pb2 as pb
from vendor.domain import (
    CoinView,
    Item,
    PaymentPlan,
    VendorCoinState,
    check_payment,
    lease_is_live,
    needs_checkpoint,
    resync_refusal,
    spent_here,
    verify_payword,
)
from vendor.services.custody import Custody
from vendor.services.ports import VendorIdentity, VendorPorts
from vendor.storage import ClickRecord, StoredCoin

__all__ = ["Paying", "PaymentResult", "check_item_id", "seal_receipt"]

_PAY_ATTEMPTS = 4
_ITEM_ID_MAX = 64

_R = TypeVar("_R")


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
    # Paid from a window: the words left in it (a server-side wallet's
    # words_left also counts the coin's words not yet drawn).
    window_words_left: int | None = None
    # Paid from a cookie-cache window: words_left is the window's, and the rest of
    # the coin is in the reader's own wallet (this newspaper cannot know it).
    window_only: bool = False

    @property
    def credit_left(self) -> Money:
        """What is left on the reader's coin after this payment."""
        return Money(self.words_left * self.unit_value_minor, self.currency)


def check_item_id(item: Item) -> None:
    """Every paid click names its item: 1..64 characters."""
    if not 0 < len(item.item_id) <= _ITEM_ID_MAX:
        raise Malformed("bad item id")


def seal_receipt(
    identity: VendorIdentity,
    *,
    ecoin_id: str,
    epoch: int,
    void_from: int,
    from_index: int,
    to_index: int,
    item: Item,
    now_ms: int,
) -> bytes:
    """The serialized Envelope(Receipt) for the click that paid ``(from, to]`` for
    ``item``; ``void_from`` is the coin's index here before the payment (``s``: the
    words ``(void_from, from]`` are void), for a window click the previous click's
    ``to`` (see :func:`vendor.domain.window_click_void_from`)."""
    assert void_from <= from_index, (void_from, from_index)
    return seal(
        pb.Receipt(
            vendor_id=identity.vendor_id,
            ecoin_id=ecoin_id,
            epoch=epoch,
            from_index=from_index,
            to_index=to_index,
            amount_minor=item.price.amount_minor,
            currency=item.price.currency,
            item_id=item.item_id,
            time_ms=now_ms,
            void_from=void_from,
        ),
        identity.key,
    ).SerializeToString()


class Paying:
    """Paid clicks: the spend of ``(prev, index]`` of a coin, and its replays."""

    def __init__(self, ports: VendorPorts, custody: Custody) -> None:
        self._uow = ports.uow
        self._id = ports.identity
        self._limits = ports.limits
        self._custody = custody

    def pay(self, header_value: str, item: Item, now_ms: int) -> PaymentResult:
        """Accept one paid click (protocol.md, "The HTTP payment").

        The spend and the click are committed durably before this returns;
        the caller may then send the resource.
        """
        check_item_id(item)
        creds = parse_authorization(header_value)
        if creds.window is not None:
            raise Malformed("windows are opened with POST /netpay/window, not on an article")

        # One read, one statement for both: the retry lookup (before any
        # custody check) and the coin.
        with self._uow(read_only=True) as unit:
            first_look, earlier = unit.coins.pay_lookup(creds.ecoin_id, creds.index)
        replay = self._replay_of(earlier, first_look, creds, item, now_ms)
        if replay is not None:
            return replay

        def plan(coin: CoinView) -> PaymentPlan:
            try:
                return check_payment(coin, creds.prev, creds.index, item, self._limits, now_ms)
            except WrongAmount as err:
                # words_for raises the same when the price itself is the trouble (the
                # coin's unit does not divide it): that answer names nothing.
                price_units = words_for(item.price, coin.unit_value_minor, coin.currency)
                raise self._refusal(err, creds, coin, price_units) from None

        return self.spend(
            creds,
            now_ms,
            first_look,
            plan,
            lambda: self._replay(creds, item, now_ms),
            lambda coin, plan: self._commit_click(creds, item, now_ms, coin, plan),
            currency=item.price.currency,
        )

    def spend(
        self,
        creds: Credentials,
        now_ms: int,
        first_look: StoredCoin | None,
        plan_for: Callable[[CoinView], PaymentPlan],
        replay: Callable[[], _R | None],
        commit: Callable[[CoinView, PaymentPlan], _R | None],
        *,
        currency: str = "",
    ) -> _R:
        """The spend of ``(prev, index]`` shared by a paid click and a window
        (``currency``: the price's, so a coin in another one never moves here).

        Custody first (acquire, hand-off in progress, lease), then ``plan_for``
        (the rules, before hashing), a synchronous checkpoint when the spend
        would pass max_unreported_units, the hash, and ``commit`` (the
        compare-and-set; ``None`` when it lost). ``replay`` finds the same
        purchase committed by a twin request.
        """
        custody = self._custody
        checkpointed = probed = False
        for attempt in range(_PAY_ATTEMPTS):
            stored = first_look if attempt == 0 else custody.coin(creds.ecoin_id)
            if stored is None or stored.view.state is VendorCoinState.CLOSED:
                if creds.index <= creds.prev:
                    raise WrongAmount("index must be above prev")
                stored = custody.acquire(creds, now_ms, currency)
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF:
                # The reader may be back from the next holder: if the broker says
                # the hand-off completed, our epoch is closed and we acquire anew.
                custody.check_handed_over(stored, probe=not probed)
                probed = True
                continue
            if coin.state is VendorCoinState.CLOSED:
                continue
            if not lease_is_live(coin, now_ms):
                custody.renew(coin)
                continue
            try:
                plan = plan_for(coin)
            except AlreadySpent as err:
                # A twin of this very purchase may have committed since the first look.
                again = replay()
                if again is None:  # the amount rule passed: j - p is the price (or m)
                    raise self._refusal(err, creds, coin, creds.index - creds.prev) from None
                return again
            if not checkpointed and needs_checkpoint(coin, creds.index, self._limits):
                checkpointed = True
                custody.renew(coin)
                continue
            verify_payword(creds.ecoin_bytes, coin, creds.index, creds.payword)
            done = commit(coin, plan)
            if done is None:
                done = replay()  # lost the compare-and-set: maybe to the same purchase
            if done is not None:
                return done
            self._resync(creds.ecoin_id, coin)
        raise CoinBusy("the coin keeps changing; retry", retry_after_s=1)

    def _resync(self, ecoin_id: str, coin: CoinView) -> None:
        """After a lost compare-and-set: stop when the coin left our hands or
        another payment moved it; else try again."""
        fresh = self._custody.coin(ecoin_id)
        assert fresh is not None, "a coin row is never deleted"
        if fresh.view.state is VendorCoinState.HANDING_OFF:
            raise CoinBusy(
                "the coin is being handed off", retry_after_s=self._custody.busy_s(fresh)
            )
        if (
            fresh.view.state is VendorCoinState.HELD
            and fresh.view.epoch == coin.epoch
            and fresh.view.index != coin.index
        ):
            # The word verified against our own before the compare-and-set: genuine.
            raise spent_here(f"another payment moved the coin to {fresh.view.index}", fresh.view)

    def _refusal(
        self,
        err: WrongAmount | AlreadySpent,
        creds: Credentials,
        coin: CoinView,
        price_units: int,
    ) -> PaymentError:
        """``err`` as the reader gets it: naming our index and its ``seen`` only for a
        genuine payword (within ``max_gap_units`` + the price of a word we hold),
        else ``bad_payword`` (:func:`vendor.domain.resync_refusal`)."""
        with self._uow(read_only=True) as unit:
            held = unit.coins.words_near(creds.ecoin_id, creds.index)
            stored = unit.coins.get(creds.ecoin_id)
        if stored is not None:
            held.append((stored.base_index, stored.base_word))
        return resync_refusal(
            err,
            creds.ecoin_bytes,
            coin,
            held,
            (creds.index, creds.payword),
            self._limits.max_gap_units + price_units,
        )

    def _commit_click(
        self, creds: Credentials, item: Item, now_ms: int, coin: CoinView, plan: PaymentPlan
    ) -> PaymentResult | None:
        """Sign the Receipt and commit the spend with the click; ``None`` when the
        compare-and-set lost."""
        receipt = seal_receipt(
            self._id,
            ecoin_id=coin.ecoin_id,
            epoch=coin.epoch,
            void_from=coin.index,  # s: the compare-and-set below moves the coin from it
            from_index=plan.prev,
            to_index=plan.index,
            item=item,
            now_ms=now_ms,
        )
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
        with self._uow() as unit:
            if not unit.coins.cas_pay(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                from_index=coin.index,
                to_index=click.to_index,
                payword=click.payword,
                now_ms=now_ms,
            ) or not unit.coins.add_click(click):
                return None
            unit.commit()
        return PaymentResult(
            receipt=receipt,
            words_left=coin.n - plan.index,
            replayed=False,
            ecoin_id=coin.ecoin_id,
            to_index=plan.index,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
        )

    def _replay(self, creds: Credentials, item: Item, now_ms: int) -> PaymentResult | None:
        with self._uow(read_only=True) as unit:
            stored, click = unit.coins.pay_lookup(creds.ecoin_id, creds.index)
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
        if click.created_at_ms < now_ms - self._limits.retry_ttl_s * 1000:
            return None
        assert stored is not None, "a click implies a coin row"
        if click.item_id != item.item_id:
            # The word is the click's own: genuine.
            raise spent_here("this payword already paid for another item", stored.view)
        return PaymentResult(
            receipt=click.receipt,
            words_left=stored.view.n - click.to_index,
            replayed=True,
            ecoin_id=click.ecoin_id,
            to_index=click.to_index,
            unit_value_minor=stored.view.unit_value_minor,
            currency=stored.view.currency,
        )
