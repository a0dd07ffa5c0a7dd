from __future__ import annotations

import pytest

from netpay.limits import DEFAULT_LIMITS, WIRE_FIELDS, Limits, limits_from_proto, limits_to_proto
from netpay.v1 import broker_pb2


def test_protocol_defaults() -> None:
    d = DEFAULT_LIMITS
    assert (d.max_chain_units, d.max_click_amount_minor, d.max_header_bytes) == (
        2**20,
        10_000,
        4096,
    )
    assert (d.max_window_units, d.max_gap_units, d.max_redemption_claims) == (500, 1_000, 10_000)
    assert (d.lease_ttl_s, d.max_skew_s, d.handoff_ttl_s) == (60, 5, 30)
    assert (d.max_unreported_units, d.retry_ttl_s, d.window_ttl_s) == (200, 600, 86_400)
    assert (d.coin_expiry_s, d.redemption_grace_s) == (90 * 86_400, 7 * 86_400)
    assert d.acquire_bound_units(25) == 200 + 500 + 1_000 + 25


def test_wire_round_trip_covers_every_proto_field() -> None:
    assert set(WIRE_FIELDS) == {f.name for f in broker_pb2.Limits.DESCRIPTOR.fields}
    custom = DEFAULT_LIMITS.replace(lease_ttl_s=7, max_gap_units=3)
    assert limits_from_proto(limits_to_proto(custom)) == custom


def test_zero_fields_keep_the_base() -> None:
    got = limits_from_proto(broker_pb2.Limits(lease_ttl_s=9))
    assert got == DEFAULT_LIMITS.replace(lease_ttl_s=9)


def test_replace_refuses_unknown_names() -> None:
    with pytest.raises(TypeError, match="unknown limits"):
        Limits().replace(no_such_limit=1)
