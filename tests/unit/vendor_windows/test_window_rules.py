"""The window rules (vendor.domain) and the window statements (vendor.storage)."""

from __future__ import annotations

import pytest

from netpay.errors import (
    AlreadySpent,
    Expired,
    Insufficient,
    LimitExceeded,
    Malformed,
    WrongAmount,
    WrongCurrency,
)
from netpay.limits import DEFAULT_LIMITS
from netpay.money import Money
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from tests.dbs import BACKENDS, fresh_db_url
from vendor.domain import (
    CloseReason,
    CoinView,
    IllegalTransition,
    Item,
    VendorCoinState,
    WindowClick,
    WindowEvent,
    WindowState,
    WindowView,
    check_window_click,
    check_window_open,
    window_click_void_from,
    window_expiry_ms,
    window_transition,
)
from vendor.storage import (
    Base,
    EpochGrant,
    VendorUnit,
    WindowClickRecord,
    WindowRecord,
)

NOW = 1_800_000_000_000
ECOIN = "ab" * 16


def coin(index: int = 0, *, expires_at_ms: int = NOW + 90 * 86_400_000) -> CoinView:
    return CoinView(
        ecoin_id=ECOIN,
        epoch=1,
        state=VendorCoinState.HELD,
        index=index,
        payword=bytes(32),
        n=1000,
        unit_value_minor=1,
        currency="EUR",
        expires_at_ms=expires_at_ms,
        lease_deadline_ms=NOW + 55_000,
        acknowledged_index=index,
        max_accepted_index=index,
    )


def window(consumed: int = 0, *, top: int = 20, state: WindowState = WindowState.OPEN):
    return WindowView(
        window_id=1,
        ecoin_id=ECOIN,
        epoch=1,
        window_from=0,
        window_top=top,
        consumed_index=consumed,
        state=state,
        opened_at_ms=NOW,
        expires_at_ms=NOW + 1000,
        unit_value_minor=1,
        currency="EUR",
    )


def test_window_transitions() -> None:
    assert window_transition(None, WindowEvent.OPENED) is WindowState.OPEN
    assert window_transition(WindowState.OPEN, WindowEvent.CONSUMED) is WindowState.OPEN
    assert window_transition(WindowState.OPEN, WindowEvent.CLOSED) is WindowState.CLOSED
    for state, event in (
        (WindowState.CLOSED, WindowEvent.CONSUMED),
        (WindowState.CLOSED, WindowEvent.CLOSED),
        (WindowState.CLOSED, WindowEvent.OPENED),
        (WindowState.OPEN, WindowEvent.OPENED),
        (None, WindowEvent.CONSUMED),
    ):
        with pytest.raises(IllegalTransition):
            window_transition(state, event)


def test_check_window_open() -> None:
    plan = check_window_open(coin(10), 10, 60, 50, DEFAULT_LIMITS, NOW)
    assert (plan.prev, plan.index, plan.words) == (10, 60, 50)
    assert check_window_open(coin(10), 12, 512, 500, DEFAULT_LIMITS, NOW).words == 500
    with pytest.raises(Malformed):
        check_window_open(coin(), 0, 0, 0, DEFAULT_LIMITS, NOW)
    with pytest.raises(LimitExceeded):
        check_window_open(coin(), 0, 501, 501, DEFAULT_LIMITS, NOW)
    with pytest.raises(Malformed):
        check_window_open(coin(), 0, 6, 5, DEFAULT_LIMITS, NOW)
    with pytest.raises(AlreadySpent):
        check_window_open(coin(10), 9, 14, 5, DEFAULT_LIMITS, NOW)
    with pytest.raises(Insufficient):
        check_window_open(coin(990), 990, 1001, 11, DEFAULT_LIMITS, NOW)
    with pytest.raises(Expired):
        check_window_open(coin(expires_at_ms=NOW + 4_000), 0, 5, 5, DEFAULT_LIMITS, NOW)


def test_window_expiry_is_capped_by_the_coin() -> None:
    assert window_expiry_ms(coin(), DEFAULT_LIMITS, NOW) == NOW + 86_400_000
    short = coin(expires_at_ms=NOW + 3_600_000)
    assert window_expiry_ms(short, DEFAULT_LIMITS, NOW) == NOW + 3_600_000 - 5_000


def test_check_window_click() -> None:
    five = Item("a", Money(5, "EUR"))
    click = check_window_click(window(3), five, NOW)
    assert (click.from_index, click.to_index, click.words) == (3, 8, 5)
    assert check_window_click(window(15), five, NOW).to_index == 20  # exactly full
    with pytest.raises(Insufficient):
        check_window_click(window(16), five, NOW)
    with pytest.raises(Expired):
        check_window_click(window(state=WindowState.CLOSED), five, NOW)
    with pytest.raises(Expired):
        check_window_click(window(), five, NOW + 1000)
    with pytest.raises(WrongCurrency):
        check_window_click(window(), Item("a", Money(5, "USD")), NOW)
    wide = WindowView(**{**window().__dict__, "unit_value_minor": 2})
    with pytest.raises(WrongAmount):
        check_window_click(wide, five, NOW)
    assert window(4).words_left == 16 and window().units == 20


# -- storage -------------------------------------------------------------------------


@pytest.fixture
def uow(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "v.sqlite"), private=True)
    unit = UnitOfWork(engine, VendorUnit)
    unit.create_all(Base)
    yield unit
    engine.dispose()


def record(top: int, handle: bytes, *, void_from: int = 0) -> WindowRecord:
    return WindowRecord(
        ecoin_id=ECOIN,
        epoch=1,
        handle_sha256=handle,
        window_from=0,
        window_top=top,
        payword=bytes(32),
        unit_value_minor=1,
        currency="EUR",
        opened_at_ms=NOW,
        expires_at_ms=NOW + 60_000,
        void_from=void_from,
    )


def held(uow, lease_deadline_ms: int = NOW + 55_000) -> None:
    with uow() as s:
        s.coins.open_epoch(
            EpochGrant(
                ecoin_id=ECOIN,
                epoch=1,
                base_index=0,
                base_word=bytes(32),
                n=100,
                unit_value_minor=1,
                currency="EUR",
                expires_at_ms=NOW + 86_400_000,
                touchstone=b"t",
                lease_deadline_ms=lease_deadline_ms,
            ),
            NOW,
        )
        s.commit()


def consume(s, wid: int, frm: int, to: int, now: int = NOW) -> bool:
    return s.windows.cas_consume(
        window_id=wid, ecoin_id=ECOIN, epoch=1, from_index=frm, to_index=to, now_ms=now
    )


def test_the_database_holds_one_open_window_per_coin(uow) -> None:
    held(uow)
    with uow() as s:
        wid = s.windows.add(record(10, b"a" * 32))
        s.commit()
    with uow() as s:
        assert s.windows.add(record(20, b"b" * 32)) is None
    with uow() as s:  # a handle is never reused
        assert s.windows.add(record(20, b"a" * 32)) is None
    with uow() as s:
        assert s.windows.close(
            window_id=wid, consumed_index=0, reason=CloseReason.CLOSED, credit=b"c", now_ms=NOW
        )
        assert s.windows.add(record(20, b"b" * 32)) != wid
        s.commit()
    with uow(read_only=True) as s:
        assert [w.state for w in s.windows.of_coin(ECOIN)] == [
            WindowState.CLOSED,
            WindowState.OPEN,
        ]
        assert s.reports.open_window_count() == 1


def test_consuming_is_a_compare_and_set(uow) -> None:
    held(uow)
    with uow() as s:
        wid = s.windows.add(record(10, b"a" * 32))
        assert consume(s, wid, 0, 4)
        assert not consume(s, wid, 0, 4)  # the index moved
        assert not consume(s, wid, 4, 11)  # past the top
        assert not consume(s, wid, 4, 5, now=NOW + 55_000)  # no live lease
        assert not consume(s, wid, 4, 5, now=NOW + 60_000)  # expired window
        assert consume(s, wid, 4, 10)
        s.windows.add_click(
            WindowClickRecord(wid, "x", 4, 10, 6, "EUR", b"r", NOW),
        )
        s.commit()
    with uow() as s:
        assert not s.windows.add_click(WindowClickRecord(wid, "y", 4, 10, 6, "EUR", b"r", NOW))
    with uow() as s:
        # Closing needs the consumed index the credit was signed for.
        assert not s.windows.close(
            window_id=wid, consumed_index=4, reason=CloseReason.EXPIRED, credit=b"c", now_ms=NOW
        )
        assert s.windows.close(
            window_id=wid, consumed_index=10, reason=CloseReason.EXPIRED, credit=b"c", now_ms=NOW
        )
        assert not consume(s, wid, 10, 10)
        s.commit()
    with uow(read_only=True) as s:
        w = s.windows.get(wid)
        assert w is not None
        assert (w.state, w.close_reason, w.credit) == (
            WindowState.CLOSED,
            CloseReason.EXPIRED,
            b"c",
        )
        assert s.windows.click_for(wid, "x", NOW) is not None
        assert s.windows.click_for(wid, "x", NOW + 1) is None


def test_consuming_needs_the_coin_held_in_the_window_epoch(uow) -> None:
    held(uow)
    with uow() as s:
        wid = s.windows.add(record(10, b"a" * 32))
        s.coins.close_epoch(ecoin_id=ECOIN, epoch=1, now_ms=NOW)
        assert not consume(s, wid, 0, 1)
        s.commit()


# -- void_from (revision 1.1) ------------------------------------------------------------


def test_a_window_clicks_void_from_is_the_previous_clicks_to_or_the_openings_s() -> None:
    opened = WindowView(**{**window().__dict__, "window_from": 12, "void_from": 10})
    first, second = WindowClick(12, 17, 5), WindowClick(17, 18, 1)
    assert window_click_void_from(opened, first) == 10  # (10, 12] skipped by the opening
    assert window_click_void_from(opened, second) == 17
    old = WindowView(**{**opened.__dict__, "void_from": None})  # opened before 1.1
    assert window_click_void_from(old, first) == 12


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_old_data_dir_gains_the_void_from_column_and_its_windows_read_none(
    backend: str, tmp_path
) -> None:
    from sqlalchemy import text

    engine = make_engine(fresh_db_url(backend, tmp_path, "vendor"), private=True)
    try:
        uow = UnitOfWork(engine, VendorUnit)
        uow.create_all(Base)
        held(uow)
        with uow() as s:
            wid = s.windows.add(record(10, b"a" * 32))
            s.commit()
        with engine.begin() as conn:  # the schema before revision 1.1
            conn.execute(text("ALTER TABLE vendor_windows DROP COLUMN void_from"))
        uow.create_all(Base)  # what every start does
        uow.create_all(Base)  # and again: the column is added once
        with uow(read_only=True) as s:
            view = s.windows.get(wid)
        assert view is not None and view.void_from is None
        assert window_click_void_from(view, WindowClick(0, 5, 5)) == 0
        with uow() as s:
            assert s.windows.close(
                window_id=wid, consumed_index=0, reason=CloseReason.CLOSED, now_ms=NOW, credit=b"c"
            )
            new = s.windows.add(record(20, b"b" * 32))
            s.commit()
        with uow(read_only=True) as s:
            assert new is not None and s.windows.get(new).void_from == 0  # type: ignore[union-attr]
    finally:
        engine.dispose()
