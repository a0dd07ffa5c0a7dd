"""The broker's domain, one module per aggregate; no I/O, no grpc, flask or sqlalchemy.

- :mod:`broker.domain.coins`: the coin's custody states, its events and the
  one :func:`transition` function every custody change goes through;
- :mod:`broker.domain.custody`: which change an acquisition, a hand-off or a
  reclaim asks for (proofs, index advances, repeats);
- :mod:`broker.domain.windows`: how many units a server-side window releases;
- :mod:`broker.domain.ledger`: accounts and balanced transactions;
- :mod:`broker.domain.claims`: when a vendor's Claim is paid (redemption);
- :mod:`broker.domain.personal`: the portal's personal data and demo instruments.

The names of the first four are re-exported here.
"""

from __future__ import annotations

from broker.domain.coins import (
    FINAL_STATES,
    Acquire,
    BeginRecall,
    CheckpointIndex,
    ClaimIndex,
    CoinIndexView,
    CoinRecordView,
    CoinState,
    CustodyEvent,
    DrawWindow,
    EpochOpening,
    EpochView,
    Expire,
    FinishRecall,
    Freeze,
    HandOff,
    IndexedWord,
    IssueHandOffGrant,
    Reclaim,
    RenewLease,
    Unfreeze,
    WalletKind,
    allowed_events,
    check_can_draw,
    effective_state,
    latest_known_word,
    transition,
)
from broker.domain.custody import (
    AcquireDecision,
    WordVerifier,
    check_acquire_proof,
    check_index_advance,
    decide_acquire,
    handoff_is_repeat,
    proof_bound_units,
    reclaim_is_repeat,
)
from broker.domain.ledger import (
    DEMO_FUNDING_OWNER,
    AccountKind,
    AccountRef,
    LedgerEntry,
    Transaction,
    assert_balanced,
    sums_by_currency,
)
from broker.domain.windows import WindowRequest, allowed_window_units

__all__ = [
    "DEMO_FUNDING_OWNER",
    "FINAL_STATES",
    "AccountKind",
    "AccountRef",
    "Acquire",
    "AcquireDecision",
    "BeginRecall",
    "CheckpointIndex",
    "ClaimIndex",
    "CoinIndexView",
    "CoinRecordView",
    "CoinState",
    "CustodyEvent",
    "DrawWindow",
    "EpochOpening",
    "EpochView",
    "Expire",
    "FinishRecall",
    "Freeze",
    "HandOff",
    "IndexedWord",
    "IssueHandOffGrant",
    "LedgerEntry",
    "Reclaim",
    "RenewLease",
    "Transaction",
    "Unfreeze",
    "WalletKind",
    "WindowRequest",
    "WordVerifier",
    "allowed_events",
    "allowed_window_units",
    "assert_balanced",
    "check_acquire_proof",
    "check_can_draw",
    "check_index_advance",
    "decide_acquire",
    "effective_state",
    "handoff_is_repeat",
    "latest_known_word",
    "proof_bound_units",
    "reclaim_is_repeat",
    "sums_by_currency",
    "transition",
]
