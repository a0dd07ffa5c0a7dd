"""The paid-click statements (Core, compiled once) on a real SQLite file:
the one-read lookup, the payment compare-and-set and the click insert."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.engine.default import CACHE_HIT

from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from vendor.storage import Base, ClickRecord, EpochGrant, VendorUnit

NOW = 1_800_000_000_000
ECOIN = "00" * 16
OTHER = "11" * 16


@pytest.fixture
def engine(tmp_path):
    eng = make_engine(sqlite_url(tmp_path / "v.sqlite"), private=True)
    yield eng
    eng.dispose()


@pytest.fixture
def uow(engine):
    unit = UnitOfWork(engine, VendorUnit)
    unit.create_all(Base)
    return unit


def grant(ecoin_id: str = ECOIN, *, epoch: int = 1, base: int = 0) -> EpochGrant:
    return EpochGrant(
        ecoin_id=ecoin_id,
        epoch=epoch,
        base_index=base,
        base_word=bytes([base % 256]) * 32,
        n=100,
        unit_value_minor=1,
        currency="EUR",
        expires_at_ms=NOW + 86_400_000,
        touchstone=b"t",
        lease_deadline_ms=NOW + 55_000,
    )


def click(ecoin_id: str = ECOIN, *, frm: int = 0, to: int = 5, item: str = "a1") -> ClickRecord:
    return ClickRecord(
        ecoin_id=ecoin_id,
        epoch=1,
        from_index=frm,
        to_index=to,
        payword=bytes([to]) * 32,
        item_id=item,
        amount_minor=to - frm,
        currency="EUR",
        receipt=b"receipt-" + ecoin_id.encode() + bytes([to]),
        created_at_ms=NOW + to,
    )


def pay(s, c: ClickRecord, *, epoch: int = 1, now: int = NOW) -> bool:
    moved = s.coins.cas_pay(
        ecoin_id=c.ecoin_id,
        epoch=epoch,
        from_index=c.from_index,
        to_index=c.to_index,
        payword=c.payword,
        now_ms=now,
    )
    if moved:
        s.coins.add_click(c)
    return moved


def test_pay_lookup_reads_the_coin_and_only_the_click_that_took_the_index(uow) -> None:
    with uow(read_only=True) as s:
        assert s.coins.pay_lookup(ECOIN, 5) == (None, None)
    with uow() as s:
        s.coins.open_epoch(grant(), NOW)
        s.coins.open_epoch(grant(OTHER), NOW)
        assert pay(s, click(OTHER, to=5))  # same index, another coin
        s.commit()
    with uow(read_only=True) as s:
        coin, found = s.coins.pay_lookup(ECOIN, 5)
    assert found is None
    assert coin is not None and coin.view.index == 0
    with uow() as s:
        assert pay(s, click(to=5))
        s.commit()
    with uow(read_only=True) as s:
        coin, found = s.coins.pay_lookup(ECOIN, 5)
        missing = [s.coins.pay_lookup(ECOIN, to)[1] for to in (4, 6)]
        assert s.coins.get(ECOIN) == coin
    assert found == click(to=5)  # every field round-trips
    assert missing == [None, None]
    assert coin is not None
    assert (coin.view.index, coin.view.payword, coin.view.max_accepted_index) == (
        5,
        bytes([5]) * 32,
        5,
    )
    assert (coin.base_index, coin.base_word, coin.touchstone) == (0, bytes(32), b"t")


def test_cas_pay_never_lowers_the_highest_accepted_index(uow) -> None:
    with uow() as s:
        s.coins.open_epoch(grant(), NOW)
        assert pay(s, click(frm=0, to=9))
        s.coins.close_epoch(ecoin_id=ECOIN, epoch=1, now_ms=NOW)
        s.coins.open_epoch(grant(epoch=2, base=3), NOW)  # a stale base, below 9
        assert s.coins.cas_pay(
            ecoin_id=ECOIN,
            epoch=2,
            from_index=3,
            to_index=4,
            payword=b"w" * 32,
            now_ms=NOW,
        )
        view = s.coins.get(ECOIN).view
        assert (view.epoch, view.index, view.max_accepted_index) == (2, 4, 9)
        assert not s.coins.cas_pay(  # the CAS needs a live lease
            ecoin_id=ECOIN,
            epoch=2,
            from_index=4,
            to_index=5,
            payword=b"w" * 32,
            now_ms=NOW + 55_000,
        )
        s.commit()


def test_a_taken_click_index_fails_the_insert_and_the_unit_rolls_back(uow) -> None:
    with uow() as s:
        s.coins.open_epoch(grant(), NOW)
        assert pay(s, click(to=5))
        s.commit()
    with uow() as s:
        assert s.coins.cas_pay(
            ecoin_id=ECOIN,
            epoch=1,
            from_index=5,
            to_index=6,
            payword=b"w" * 32,
            now_ms=NOW,
        )
        assert not s.coins.add_click(click(frm=4, to=5, item="other"))  # the index is taken
        # left without commit: the compare-and-set is undone with the insert
    with uow(read_only=True) as s:
        coin, found = s.coins.pay_lookup(ECOIN, 5)
    assert coin is not None and coin.view.index == 5
    assert found == click(to=5)


def test_a_paid_click_is_three_statements_all_cached_after_the_first(engine, uow) -> None:
    with uow() as s:
        s.coins.open_epoch(grant(), NOW)
        s.commit()
    hits: list[bool] = []

    @event.listens_for(engine, "after_cursor_execute")
    def _seen(conn, cursor, statement, params, context, executemany) -> None:
        if context is not None and context.compiled is not None:
            hits.append(context.cache_hit is CACHE_HIT)

    for to in range(1, 4):
        with uow(read_only=True) as s:
            s.coins.pay_lookup(ECOIN, to)
        with uow() as s:
            assert pay(s, click(frm=to - 1, to=to))
            s.commit()
    assert len(hits) == 9
    assert hits[3:] == [True] * 6  # from the second click on, every statement is cached
