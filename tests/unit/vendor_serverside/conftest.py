"""Server-side wallets at one vendor: the shared vendor fixtures
(tests/fakes/vendor_fixtures.py) with the broker's wallet RPCs
(ExchangeWalletCode, AcquireCoin with a WalletGrant, DrawWindow: the one
fake broker's ``wallet_client``), over real SQLite files."""

from __future__ import annotations

from tests.fakes.vendor_fixtures import (  # noqa: F401 (fixtures, re-exported)
    broker,
    clock,
    make_vendor,
    make_wallet_vendor,
    new_code,
    peer_registry,
)
