"""The browser bridge's origins: which web pages may ask the wallet to pay.

Use cases: ``approve_origin`` (again: change its caps), ``revoke_origin``,
``approved_origin``/``approved_origins`` and ``bridge_spending`` (what the
bridge authorised for an origin on a UTC day). The caps themselves are
checked in the transaction that moves a coin's index
(:mod:`ewallet_client.store.ranges`), whoever asks.
"""

from __future__ import annotations

from ewallet_client.store import ApprovedOrigin
from ewallet_client.wallet.ports import WalletPorts

__all__ = ["Origins"]


class Origins:
    """The origins approved for the browser bridge and their spending."""

    def __init__(self, ports: WalletPorts) -> None:
        self._ports = ports
        self._uow = ports.uow

    def approve_origin(
        self, origin: str, *, max_click_minor: int | None, max_day_minor: int | None
    ) -> ApprovedOrigin:
        """Approve (or re-approve with new caps) a normalised web origin."""
        with self._uow() as unit:
            approved = unit.bridge.approve(
                origin,
                max_click_minor=max_click_minor,
                max_day_minor=max_day_minor,
                now_ms=self._ports.clock.now_ms(),
            )
            unit.commit()
            return approved

    def revoke_origin(self, origin: str) -> bool:
        """Forget an approved origin (its spending history stays); True if it was there."""
        with self._uow() as unit:
            gone = unit.bridge.revoke(origin)
            unit.commit()
            return gone

    def approved_origin(self, origin: str) -> ApprovedOrigin | None:
        with self._uow(read_only=True) as unit:
            return unit.bridge.approved(origin)

    def approved_origins(self) -> list[ApprovedOrigin]:
        with self._uow(read_only=True) as unit:
            return unit.bridge.all()

    def bridge_spending(self, origin: str, day: int) -> dict[str, tuple[int, int]]:
        """{currency: (spent minor units, clicks)} authorised for ``origin`` on ``day``."""
        with self._uow(read_only=True) as unit:
            return unit.bridge.spending(origin, day)
