"""Issuing a header: a fresh index range for one payment, and its payword.

Every payment the wallet makes with its own coins goes through
:meth:`Issuer.allocate` (the range allocation of
:mod:`ewallet_client.store.ranges`, with one auto-load and one more try when
no coin can pay) and :meth:`Issuer.header`. :meth:`Issuer.issue` is a
click's header; it warns when the coin has too many words in headers not
seen accepted (a vendor refuses a gap above the broker's ``max_gap_units``),
after asking the broker which of them it has seen.
"""

from __future__ import annotations

from ewallet_client.store import Allocation, BridgeCharge, RangeRequest, WindowRequest, ranges
from ewallet_client.wallet.autoload import Autoload
from ewallet_client.wallet.coins import Coins
from ewallet_client.wallet.ports import WalletPorts
from ewallet_client.wallet.quotes import Quote
from netpay.errors import AlreadySpent, NetPayError, WrongAmount
from netpay.header import Challenge, Credentials, format_authorization

__all__ = [
    "BUSY_RETRIES",
    "BUSY_WAIT_CAP_S",
    "GAP_WARN_FRACTION",
    "PAY_ATTEMPTS",
    "Issuer",
    "resyncable",
]

PAY_ATTEMPTS = 3  # headers issued per payment: the first and at most two after a resync
BUSY_RETRIES = 3  # re-sends of the same header after coin_busy
BUSY_WAIT_CAP_S = 5.0
GAP_WARN_FRACTION = 0.8


def resyncable(err: NetPayError, headers_issued: int) -> bool:
    """A refusal that names the vendor's index and its ``seen``, with a header left to try."""
    return (
        isinstance(err, AlreadySpent | WrongAmount)
        and err.index is not None
        and err.seen is not None
        and headers_issued < PAY_ATTEMPTS
    )


class Issuer:
    """Index ranges and the headers that spend them."""

    def __init__(self, ports: WalletPorts, coins: Coins, autoload: Autoload) -> None:
        self._ports = ports
        self._coins = coins
        self._autoload = autoload

    def allocate(
        self,
        challenge: Challenge,
        url: str,
        *,
        charge: BridgeCharge | None = None,
        window: WindowRequest | None = None,
        spend: bool = True,
    ) -> Allocation:
        """A fresh range for ``challenge``'s price (or ``window``'s words); the index moves now.

        The price counts against the reader's limits in that transaction
        (``spend=False``: a header re-issued for a payment already counted).
        """
        skew_ms = self._ports.skew_ms()

        def attempt() -> Allocation:
            request = RangeRequest(
                amount_minor=challenge.amount_minor,
                currency=challenge.currency,
                realm=challenge.realm,
                url=url,
                now_ms=self._ports.clock.now_ms(),
                skew_ms=skew_ms,
                charge=charge,
                window=window,
                spend=spend,
            )
            return ranges.allocate(self._ports.uow, request)

        return self._autoload.allocate(challenge.currency, attempt)

    def header(self, alloc: Allocation, *, window_units: int | None = None) -> str:
        """The ``Authorization`` value that spends ``alloc`` (a window's with its units)."""
        word = self._coins.word(alloc.coin.ecoin_id, alloc.index)
        return format_authorization(
            Credentials(
                ecoin_id=alloc.coin.ecoin_id,
                prev=alloc.prev,
                index=alloc.index,
                payword=word,
                window=window_units,
                holder=alloc.coin.last_vendor,
            )
        )

    def issue(
        self, quote: Quote, *, charge: BridgeCharge | None = None, spend: bool = True
    ) -> tuple[Allocation, str]:
        """Allocate a fresh range for one click and build its header (the index moves now)."""
        alloc = self.allocate(quote.challenge, quote.url, charge=charge, spend=spend)
        header = self.header(alloc)
        max_gap_units = self._ports.link.settings().max_gap_units
        threshold = GAP_WARN_FRACTION * max_gap_units
        outstanding = alloc.outstanding_words
        if outstanding >= threshold:
            # Headers used by another client (curl) were never seen accepted
            # here; the broker's latest known index settles those below it.
            self._coins.settle_from_broker(alloc.coin.ecoin_id)
            with self._ports.uow() as unit:
                now_out = unit.receipts.outstanding_words(alloc.coin.ecoin_id)
            outstanding = now_out - (alloc.index - alloc.prev)
        if outstanding >= threshold:
            self._ports.notes.warn(
                f"coin {alloc.coin.ecoin_id}: {outstanding} words are in headers "
                f"not seen accepted; a vendor refuses a gap above {max_gap_units} words"
            )
        return alloc, header
