"""The vendor's unit tests run on the shared vendor fixtures
(tests/fakes/vendor_fixtures.py): real VendorServices over SQLite files under
tmp_path, the one fake broker (tests/fakes/broker/), in-process peers."""

from __future__ import annotations

from tests.fakes.vendor_fixtures import (  # noqa: F401 (fixtures, re-exported)
    broker,
    clock,
    make_header,
    make_vendor,
    peer_registry,
    vendor,
)
