"""After expiry + redemption grace the reader gets back everything no vendor claimed."""

from __future__ import annotations

from broker.domain import AccountRef, CoinState

from .conftest import balance, books, click, handle_of, open_window, pay, reader_id

DAY_S = 86_400


def test_unclaimed_value_and_window_credits_go_back_after_the_grace_period(
    start, broker, reader, clock
) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    chain = reader.buy(100)
    me = reader_id(broker)
    bank = AccountRef.reader(me, "EUR")
    assert balance(broker, bank) == 10_000 - 100

    pay(v1, chain, 0, "7")  # (0, 10]
    handle = handle_of(open_window(v1.web_url, chain, 12, 28))  # (12, 40], (10, 12] void
    assert click(v1.web_url, "4", handle).status_code == 200  # 5 of the window's 28
    pay(v2, chain, 40, "5")  # the hand-off closes the window: 23 words come back
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    # The Gazette never redeems its 7 cents in time.

    services = broker.services
    assert services.refund_expired() == []  # not expired yet
    clock.advance(90 * DAY_S)  # the coin expires; the grace period runs
    assert services.refund_expired() == []
    clock.advance(7 * DAY_S)
    [refund] = services.refund_expired()
    # 100 - 15 claimed - 23 netted = 62 unclaimed (unspent 53, void 2, the Gazette's 7),
    # plus the refund balance (the 23 of window credit).
    assert (refund.amount_minor, refund.refund_balance_minor) == (62, 23)
    assert balance(broker, bank) == 10_000 - 100 + 62 + 23
    assert balance(broker, AccountRef.reader_refund(me, "EUR")) == 0
    assert services.refund_expired() == []  # once
    [line] = [h for h in services.history(reader_id=me) if h.kind == "expiry_refund"]
    assert (line.ecoin_id, line.amount_minor) == (chain.ecoin_id.hex(), 85)
    status = broker.services.get_coin(chain.ecoin_id.hex(), vendor_id="daily-hash")
    assert status.state is CoinState.EXPIRED

    late = v2.redeemer.redeem()  # too late: refused, nothing paid
    assert late.as_json()["rejected"] == 1 and late.paid_minor == {}
    assert balance(broker, AccountRef.vendor_bank("chain-gazette", "EUR")) == 0
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced
    assert report.outstanding_cents == {"EUR": 0}
    assert report.refunded_cents == {"EUR": 23 + 62}
