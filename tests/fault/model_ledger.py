"""An independent model of who must own what, replayed from a test's own events.

The fault tests feed it only what a reader and an operator can see from the
outside: purchases (``n`` words of value ``u``), the headers the wallet
issued (its index moves to ``j`` when it prints a header), every HTTP 200
with its signed Receipt, the windows opened, clicked and closed (with their
WindowCredits), and each vendor's redemption report. From these alone the
model computes what every account of the broker's ledger must hold once the
vendors redeemed:

- each vendor's bank account: the Receipts it was paid for and redeemed;
- the reader's refund balance: the netted window credits;
- the reader's bank account: the opening deposit less the purchases;
- the broker float: every coin's value not yet paid out, which includes the
  *void* words (a header issued and never used: in ``(s, p]`` of a later
  payment, or the words of an unanswered header), the unspent words, the
  words of open windows and anything not redeemed yet.

It also checks, as events arrive, that no word is accepted twice: ranges of
one coin never overlap (a re-served Receipt, byte for byte the same, is a
retry and counts once), a window click lies inside its window, and nothing
lies above what the wallet issued.

Pure Python, no product imports except the protobuf messages and
``broker.domain.AccountRef`` for the final comparison.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from broker.domain import AccountRef
from broker.storage import BrokerStore
from netpay.v1 import statements_pb2 as pb

__all__ = ["ModelCoin", "ModelLedger", "ModelPaid", "ModelWindow"]


@dataclass
class ModelCoin:
    ecoin_id: str
    n: int
    unit_value_minor: int
    issued_index: int = 0  # the wallet's index: the highest j it printed a header for


@dataclass
class ModelPaid:
    """One acknowledged Receipt (an HTTP 200)."""

    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    amount_minor: int
    item_id: str
    receipt: bytes  # the serialized Envelope, to recognise a retry
    window_from: int | None = None  # paid from the window opened at this index
    redeemed: bool = False


@dataclass
class ModelWindow:
    vendor_id: str
    ecoin_id: str
    epoch: int
    window_from: int
    window_top: int
    consumed_index: int
    closed: bool = False
    netted: bool = False

    @property
    def refund_units(self) -> int:
        return self.window_top - self.consumed_index


@dataclass
class ModelLedger:
    """The books as the test's own events say they must be."""

    deposit_minor: int
    currency: str = "EUR"
    coins: dict[str, ModelCoin] = field(default_factory=dict)
    paid: list[ModelPaid] = field(default_factory=list)
    windows: list[ModelWindow] = field(default_factory=list)
    redemptions: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    # -- events ---------------------------------------------------------------------

    def purchase(self, ecoin_id: str, n: int, unit_value_minor: int = 1) -> None:
        assert ecoin_id not in self.coins, f"coin {ecoin_id} bought twice"
        self.coins[ecoin_id] = ModelCoin(ecoin_id, n, unit_value_minor)

    def issue(self, ecoin_id: str, prev: int, index: int) -> None:
        """The wallet printed a header for ``(prev, index]``: its index moves up to ``index``."""
        coin = self.coins[ecoin_id]
        assert 0 <= prev < index <= coin.n, (prev, index, coin.n)
        coin.issued_index = max(coin.issued_index, index)

    def receipt(self, vendor_id: str, receipt: pb.Receipt, envelope: bytes) -> bool:
        """An HTTP 200 carried ``receipt``: True when new, False for a re-served one.

        Raises AssertionError when the Receipt pays a word already paid."""
        coin = self.coins[receipt.ecoin_id]
        assert receipt.vendor_id == vendor_id, (receipt.vendor_id, vendor_id)
        assert 0 <= receipt.from_index < receipt.to_index <= coin.issued_index, (
            "a Receipt above what the wallet issued",
            receipt,
            coin.issued_index,
        )
        units = receipt.to_index - receipt.from_index
        assert receipt.amount_minor == units * coin.unit_value_minor, receipt
        assert receipt.currency == self.currency, receipt
        for seen in self.paid:
            if seen.receipt == envelope:
                return False  # the same Receipt again: a retry, paid once
        window = self._window_holding(vendor_id, receipt)
        for seen in self.paid:
            if seen.ecoin_id != receipt.ecoin_id:
                continue
            assert not _overlap(
                seen.from_index, seen.to_index, receipt.from_index, receipt.to_index
            ), f"word paid twice: {seen} and {receipt}"
        if window is None:
            for w in self.windows:
                if w.ecoin_id == receipt.ecoin_id:
                    assert not _overlap(
                        w.window_from, w.window_top, receipt.from_index, receipt.to_index
                    ), f"a click inside a window's words: {w} and {receipt}"
        else:
            assert not window.closed, f"a click paid from a closed window: {window}"
            assert receipt.from_index == window.consumed_index, (window, receipt)
            window.consumed_index = receipt.to_index
        self.paid.append(
            ModelPaid(
                vendor_id=vendor_id,
                ecoin_id=receipt.ecoin_id,
                epoch=receipt.epoch,
                from_index=receipt.from_index,
                to_index=receipt.to_index,
                amount_minor=receipt.amount_minor,
                item_id=receipt.item_id,
                receipt=envelope,
                window_from=None if window is None else window.window_from,
            )
        )
        return True

    def _window_holding(self, vendor_id: str, receipt: pb.Receipt) -> ModelWindow | None:
        for w in self.windows:
            if (
                (w.vendor_id, w.ecoin_id, w.epoch) == (vendor_id, receipt.ecoin_id, receipt.epoch)
                and w.window_from <= receipt.from_index
                and receipt.to_index <= w.window_top
            ):
                return w
        return None

    def window_opened(
        self, vendor_id: str, ecoin_id: str, epoch: int, window_from: int, window_top: int
    ) -> ModelWindow:
        coin = self.coins[ecoin_id]
        assert 0 <= window_from < window_top <= coin.issued_index, (window_from, window_top)
        for w in self.windows:
            if (w.vendor_id, w.ecoin_id, w.epoch, w.window_from) == (
                vendor_id,
                ecoin_id,
                epoch,
                window_from,
            ):
                assert w.window_top == window_top
                return w  # the same window again (a retried header)
            if w.ecoin_id == ecoin_id:
                assert not _overlap(w.window_from, w.window_top, window_from, window_top), w
        for p in self.paid:
            if p.ecoin_id == ecoin_id:
                assert not _overlap(p.from_index, p.to_index, window_from, window_top), p
        window = ModelWindow(vendor_id, ecoin_id, epoch, window_from, window_top, window_from)
        self.windows.append(window)
        return window

    def window_closed(self, window: ModelWindow, credit: pb.WindowCredit | None = None) -> None:
        """The window closed (the wallet, a hand-off, expiry): its unconsumed words go back
        to the reader once its vendor redeems. ``credit``, when the test saw it, must agree."""
        if credit is not None:
            assert (credit.vendor_id, credit.ecoin_id, credit.epoch, credit.window_top) == (
                window.vendor_id,
                window.ecoin_id,
                window.epoch,
                window.window_top,
            ), credit
            assert credit.consumed_index == window.consumed_index, (credit, window)
            assert credit.refund_units == window.refund_units, (credit, window)
        window.closed = True

    def window_of(self, vendor_id: str, ecoin_id: str, window_from: int) -> ModelWindow:
        [found] = [
            w
            for w in self.windows
            if (w.vendor_id, w.ecoin_id, w.window_from) == (vendor_id, ecoin_id, window_from)
        ]
        return found

    # -- redemption -----------------------------------------------------------------

    def _stops(self, vendor_id: str) -> dict[tuple[str, int], int]:
        """Per (coin, epoch), where this vendor's claims stop: its open window's start."""
        stops: dict[tuple[str, int], int] = {}
        for w in self.windows:
            if w.vendor_id == vendor_id and not w.closed:
                key = (w.ecoin_id, w.epoch)
                stops[key] = min(stops.get(key, w.window_from), w.window_from)
        return stops

    def _claimable(self, vendor_id: str) -> tuple[list[ModelPaid], list[ModelWindow]]:
        stops = self._stops(vendor_id)

        def below_stop(ecoin_id: str, epoch: int, top: int) -> bool:
            stop = stops.get((ecoin_id, epoch))
            return stop is None or top <= stop

        windows = [
            w
            for w in self.windows
            if w.vendor_id == vendor_id
            and w.closed
            and not w.netted
            and below_stop(w.ecoin_id, w.epoch, w.window_top)
        ]
        tops = {(w.ecoin_id, w.epoch, w.window_from) for w in windows}
        paid = []
        for p in self.paid:
            if p.vendor_id != vendor_id or p.redeemed:
                continue
            if p.window_from is None:
                if below_stop(p.ecoin_id, p.epoch, p.to_index):
                    paid.append(p)
            elif (p.ecoin_id, p.epoch, p.window_from) in tops:
                paid.append(p)
        return paid, windows

    def redeemable_minor(self, vendor_id: str) -> int:
        paid, _ = self._claimable(vendor_id)
        return sum(p.amount_minor for p in paid)

    def redeemed(self, vendor_id: str, paid_minor: int) -> None:
        """A redemption run of ``vendor_id`` paid ``paid_minor``: exactly what it could claim."""
        paid, windows = self._claimable(vendor_id)
        expected = sum(p.amount_minor for p in paid)
        assert paid_minor == expected, (
            f"{vendor_id} was paid {paid_minor}, the model says {expected}"
        )
        for p in paid:
            p.redeemed = True
        for w in windows:
            w.netted = True
        self.redemptions[vendor_id].append(paid_minor)

    # -- what each account must hold ----------------------------------------------------

    def vendor_ids(self) -> set[str]:
        return {p.vendor_id for p in self.paid} | {w.vendor_id for w in self.windows}

    def vendor_bank_minor(self, vendor_id: str) -> int:
        return sum(p.amount_minor for p in self.paid if p.vendor_id == vendor_id and p.redeemed)

    def reader_refund_minor(self) -> int:
        return sum(
            w.refund_units * self.coins[w.ecoin_id].unit_value_minor
            for w in self.windows
            if w.netted
        )

    def purchases_minor(self) -> int:
        return sum(c.n * c.unit_value_minor for c in self.coins.values())

    def reader_bank_minor(self) -> int:
        return self.deposit_minor - self.purchases_minor()

    def void_units(self, ecoin_id: str) -> int:
        """Words the wallet issued that nobody was paid for nor holds in a window."""
        coin = self.coins[ecoin_id]
        covered = sum(
            p.to_index - p.from_index
            for p in self.paid
            if p.ecoin_id == ecoin_id and p.window_from is None
        )
        covered += sum(w.window_top - w.window_from for w in self.windows if w.ecoin_id == ecoin_id)
        void = coin.issued_index - covered
        assert void >= 0, (ecoin_id, coin.issued_index, covered)
        return void

    def float_minor(self) -> int:
        """The broker float, coin by coin: unspent + void + paid but not redeemed +
        window words not yet netted."""
        total = 0
        for coin in self.coins.values():
            unspent = coin.n - coin.issued_index
            void = self.void_units(coin.ecoin_id)
            unredeemed = sum(
                p.to_index - p.from_index
                for p in self.paid
                if p.ecoin_id == coin.ecoin_id and not p.redeemed
            )
            window_rest = sum(
                w.refund_units for w in self.windows if w.ecoin_id == coin.ecoin_id and not w.netted
            )
            total += (unspent + void + unredeemed + window_rest) * coin.unit_value_minor
        # The same figure the other way round: what came in less what went out.
        paid_out = sum(self.vendor_bank_minor(v) for v in self.vendor_ids())
        assert total == self.purchases_minor() - paid_out - self.reader_refund_minor(), (
            "the model's own books do not balance"
        )
        return total

    def check(self, store: BrokerStore, reader_id: str, vendor_ids: set[str] | None = None) -> None:
        """The broker's ledger agrees with the model to the cent."""
        c = self.currency
        vendors = (vendor_ids or set()) | self.vendor_ids()
        want: dict[AccountRef, int] = {
            AccountRef.broker_float(c): self.float_minor(),
            AccountRef.reader(reader_id, c): self.reader_bank_minor(),
            AccountRef.reader_refund(reader_id, c): self.reader_refund_minor(),
            AccountRef.broker_loss(c): 0,
        }
        for v in vendors:
            want[AccountRef.vendor_bank(v, c)] = self.vendor_bank_minor(v)
            want[AccountRef.vendor_payable(v, c)] = 0  # the demo bank pays everything owed
        with store.begin(read_only=True) as repos:
            got = {ref: repos.ledger.balance_minor(ref) for ref in want}
        assert got == want, {
            str(ref): (got[ref], want[ref]) for ref in want if got[ref] != want[ref]
        }

    def summary(self) -> dict[str, object]:
        return {
            "coins": len(self.coins),
            "receipts": len(self.paid),
            "windows": len(self.windows),
            "void_units": sum(self.void_units(e) for e in self.coins),
            "vendor_bank": {v: self.vendor_bank_minor(v) for v in sorted(self.vendor_ids())},
            "reader_refund": self.reader_refund_minor(),
            "float": self.float_minor(),
        }


def _overlap(a_from: int, a_to: int, b_from: int, b_to: int) -> bool:
    return a_from < b_to and b_from < a_to
