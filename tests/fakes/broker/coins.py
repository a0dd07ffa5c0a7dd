"""The fake broker's coin table: one :class:`FakeCoin` a coin, for both faces.

A coin enters the table when a wallet buys it (``FakeBroker.buy_coin``) or
when a vendor test has the broker issue one (``FakeBroker.issue``); the
wallet's RPCs read its touchstone and latest word, the vendors' RPCs its
custody fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netpay.chain import Chain
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

__all__ = ["FakeCoin", "LatestWords"]


@dataclass
class FakeCoin:
    """One coin as the broker keeps it.

    ``touchstone`` is the body the broker signed and ``sealed`` the envelope
    it sealed then (what custody grants and hand-off answers carry);
    ``chain`` is the hash chain when the fake made it itself (``issue``),
    None for a coin a wallet bought (a broker never sees a client wallet's
    seed). The custody fields: the holder and its epoch, the latest index
    and word the broker knows (the root at 0 until a vendor moves it), the
    grant of each epoch and what opened it ("acquire", "handoff",
    "reclaim"), and whether the coin is frozen.
    """

    touchstone: pb.Touchstone
    sealed: pb.Envelope
    chain: Chain | None = None
    holder: str | None = None
    epoch: int = 0
    latest_index: int = 0
    latest_word: bytes = b""
    grants: dict[int, bpb.CustodyGrant] = field(default_factory=dict)
    opened_by: dict[int, str] = field(default_factory=dict)  # epoch -> "acquire" | ...
    frozen: bool = False

    @property
    def ecoin_id(self) -> str:
        return self.touchstone.ecoin_id

    @property
    def ecoin_bytes(self) -> bytes:
        return bytes.fromhex(self.touchstone.ecoin_id)

    def word(self, index: int) -> bytes:
        """The chain's word at ``index``: only the fake's own coins have a chain."""
        assert self.chain is not None, f"the fake broker did not make coin {self.ecoin_id}"
        return self.chain.word(index)


class LatestWords:
    """``broker.latest[ecoin_id] = (index, word)``: the coin table's latest known
    word of a coin (what GetCoin answers), as a test sets it."""

    def __init__(self, coins: dict[str, FakeCoin]) -> None:
        self._coins = coins

    def __getitem__(self, ecoin_id: str) -> tuple[int, bytes]:
        coin = self._coins[ecoin_id]
        return coin.latest_index, coin.latest_word

    def __setitem__(self, ecoin_id: str, known: tuple[int, bytes]) -> None:
        coin = self._coins[ecoin_id]
        coin.latest_index, coin.latest_word = known
