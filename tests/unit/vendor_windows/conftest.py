"""Windows at one vendor: the shared vendor fixtures (tests/fakes/vendor_fixtures.py:
the one fake broker, in-process peers, real SQLite files), plus window helpers."""

from __future__ import annotations

import pytest

from netpay.chain import Chain
from netpay.envelope import open_envelope
from netpay.v1 import statements_pb2 as pb
from tests.fakes.vendor_fixtures import (  # noqa: F401 (fixtures, re-exported)
    MakeVendor,
    broker,
    clock,
    header,
    make_header,
    make_vendor,
    peer_registry,
    vendor,
)
from vendor.articles import load_newspaper
from vendor.domain import Item
from vendor.services import PaymentResult, VendorServices, WindowOpened


def window_header(chain: Chain, prev: int, units: int, **extra: object) -> str:
    return header(chain, prev, prev + units, window=units, **extra)


def open_window(services: VendorServices, chain: Chain, prev: int, units: int) -> WindowOpened:
    return services.open_window(window_header(chain, prev, units), services._ports.clock.now_ms())


def receipt_of(result: PaymentResult, services: VendorServices) -> pb.Receipt:
    return open_envelope(
        pb.Envelope.FromString(result.receipt), pb.Receipt, services._ports.identity.key.public_key
    )


@pytest.fixture
def items() -> dict[str, Item]:
    """The demo newspaper's paid articles by id (prices 1, 2, 5, 7, 10, 25 cents)."""
    paper = load_newspaper("The Daily Hash")
    return {a.article_id: a.item() for a in paper.articles if not a.is_free}
