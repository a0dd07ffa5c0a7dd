"""Protocol limits and timing defaults (protocol.md, "Money and amounts")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from netpay.v1 import broker_pb2

__all__ = ["DEFAULT_LIMITS", "WIRE_FIELDS", "Limits", "limits_from_proto", "limits_to_proto"]


@dataclass(frozen=True)
class Limits:
    max_chain_units: int = 2**20
    max_click_amount_minor: int = 10_000
    max_header_bytes: int = 4096
    max_grpc_message_bytes: int = 4 * 1024 * 1024
    max_window_units: int = 500
    max_gap_units: int = 1_000
    max_redemption_claims: int = 10_000
    max_checkpoint_indexes: int = 10_000
    lease_ttl_s: int = 60
    max_skew_s: int = 5
    handoff_ttl_s: int = 30
    max_unreported_units: int = 200
    retry_ttl_s: int = 600
    window_ttl_s: int = 86_400
    coin_expiry_s: int = 90 * 86_400
    redemption_grace_s: int = 7 * 86_400
    handoff_grant_ttl_s: int = 30

    def acquire_bound_units(self, largest_click_units: int) -> int:
        """How far above the latest known word an acquisition proof may lie."""
        return (
            self.max_unreported_units
            + self.max_window_units
            + self.max_gap_units
            + largest_click_units
        )

    def replace(self, **changes: Any) -> Limits:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown limits: {sorted(unknown)}")
        return Limits(**{**asdict(self), **changes})


DEFAULT_LIMITS = Limits()

# The limits a broker announces in GetInfo (netpay.v1.Limits), by field name.
WIRE_FIELDS: tuple[str, ...] = tuple(f.name for f in broker_pb2.Limits.DESCRIPTOR.fields)


def limits_to_proto(limits: Limits) -> broker_pb2.Limits:
    return broker_pb2.Limits(**{name: getattr(limits, name) for name in WIRE_FIELDS})


def limits_from_proto(proto: broker_pb2.Limits, base: Limits | None = None) -> Limits:
    """The broker's limits over ``base`` (fields the broker leaves 0 keep the default)."""
    changes = {name: value for name in WIRE_FIELDS if (value := int(getattr(proto, name))) > 0}
    return (base or DEFAULT_LIMITS).replace(**changes)
