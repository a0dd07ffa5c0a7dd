"""The repository's compare-and-sets on a real SQLite file."""

from __future__ import annotations

import importlib

import pytest

from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from vendor.domain import VendorCoinState
from vendor.storage import Base, EpochGrant, VendorUnit

NOW = 1_800_000_000_000
ECOIN = "00" * 16


@pytest.fixture
def uow(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "v.sqlite"), private=True)
    unit = UnitOfWork(engine, VendorUnit)
    unit.create_all(Base)
    yield unit
    engine.dispose()


def grant(epoch: int = 1, base: int = 0, lease: int = NOW + 55_000) -> EpochGrant:
    return EpochGrant(
        ecoin_id=ECOIN,
        epoch=epoch,
        base_index=base,
        base_word=bytes([base % 256]) * 32,
        n=100,
        unit_value_minor=1,
        currency="EUR",
        expires_at_ms=NOW + 86_400_000,
        touchstone=b"t",
        lease_deadline_ms=lease,
    )


def spend(unit, *, epoch=1, frm=0, to=5, now=NOW) -> bool:
    return unit.coins.cas_pay(
        ecoin_id=ECOIN,
        epoch=epoch,
        from_index=frm,
        to_index=to,
        payword=b"w" * 32,
        now_ms=now,
    )


def test_cas_pay_needs_the_epoch_the_index_the_state_and_a_live_lease(uow) -> None:
    with uow() as s:
        s.coins.open_epoch(grant(), NOW)
        s.commit()
    with uow() as s:
        assert not spend(s, epoch=2)
        assert not spend(s, frm=1)
        assert not spend(s, now=NOW + 55_000)  # the lease has lapsed
        assert spend(s)
        assert not spend(s)  # the index moved: the same CAS loses
        s.commit()
    with uow() as s:
        view = s.coins.get(ECOIN).view
        assert (view.index, view.max_accepted_index) == (5, 5)
        assert s.coins.start_handoff(
            ecoin_id=ECOIN, epoch=1, index=5, to_vendor="v2", coin_index=b"ci", now_ms=NOW
        )
        assert not spend(s, frm=5, to=10)  # HANDING_OFF accepts nothing
        s.commit()


def test_open_epoch_keeps_an_existing_row_and_reopens_a_closed_one(uow) -> None:
    with uow() as s:
        s.coins.open_epoch(grant(), NOW)
        assert spend(s)
        again = s.coins.open_epoch(grant(), NOW)  # a repeated reply: the row is authoritative
        assert again.view.index == 5
        assert s.coins.close_epoch(ecoin_id=ECOIN, epoch=1, now_ms=NOW)
        assert not s.coins.close_epoch(ecoin_id=ECOIN, epoch=1, now_ms=NOW)
        reopened = s.coins.open_epoch(grant(epoch=3, base=7), NOW)
        assert (reopened.view.state, reopened.view.epoch, reopened.view.index) == (
            VendorCoinState.HELD,
            3,
            7,
        )
        assert reopened.view.max_accepted_index == 5  # kept across epochs
        s.commit()


def test_renew_lease_never_lowers_the_deadline_or_the_acknowledged_index(uow) -> None:
    with uow() as s:
        s.coins.open_epoch(grant(base=4), NOW)
        s.coins.renew_lease(
            ecoin_id=ECOIN, epoch=1, lease_deadline_ms=NOW + 10, acknowledged_index=2
        )
        view = s.coins.get(ECOIN).view
        assert (view.lease_deadline_ms, view.acknowledged_index) == (NOW + 55_000, 4)
        s.coins.drop_all_leases()
        assert s.coins.get(ECOIN).view.lease_deadline_ms == 0


def test_reclaimed_needs_handing_off(uow) -> None:
    with uow() as s:
        s.coins.open_epoch(grant(), NOW)
        assert not s.coins.reclaimed(
            ecoin_id=ECOIN,
            old_epoch=1,
            new_epoch=2,
            base_index=0,
            base_word=b"x" * 32,
            lease_deadline_ms=NOW,
            now_ms=NOW,
        )


@pytest.mark.parametrize(
    "module",
    [
        "vendor.domain",
        "vendor.storage",
        "vendor.services",
        "vendor.broker_client",
        "vendor.peer_client",
        "vendor.rpc",
        "vendor.web",
        "vendor.wsgi",
        "vendor.articles",
        "vendor.server",
        "vendor.cli",
    ],
)
def test_public_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"
