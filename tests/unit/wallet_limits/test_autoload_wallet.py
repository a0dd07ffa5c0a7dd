"""Auto-load: a new coin from the bank account when a payment leaves the balance low.

The fake broker keeps the reader's bank balance and every BuyCoin it gets,
and can fail a purchase before the sale or lose the reply after it; the fake
newspaper sells clicks at 5 cents.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ewallet_client.bridge import Bridge
from ewallet_client.domain import CoinState
from ewallet_client.wallet import Wallet
from ewallet_client.wallet.coins import new_coin
from netpay.clock import FakeClock
from netpay.errors import BrokerUnavailable, Insufficient, InvalidArgument
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from tests.fakes.broker import DAY_MS, FakeBroker
from tests.fakes.vendor import FakeVendor
from tests.fakes.wallet_store import shortcuts

BANK = 10_000  # the fake broker's opening deposit


def _bank(broker: FakeBroker) -> int:
    return broker.balances["r-1"]


def _request_ids(broker: FakeBroker) -> list[str]:
    return [r.request_id for r in broker.buy_requests]


def test_one_coin_is_bought_when_the_balance_falls_below_the_threshold(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.buy(20)
    agreement = wallet.set_autoload("EUR", below_minor=12, units=100)
    assert agreement.enabled and agreement.value_minor == 100
    url = vendor.url + "/articles/1"
    wallet.read(url)  # 15 left: above the threshold
    assert wallet.autoloads == [] and len(broker.buy_requests) == 1
    result = wallet.read(url)  # 10 left: below
    assert result.status == 200 and result.receipt is not None
    [loaded] = wallet.autoloads
    assert loaded.bought and loaded.coin is not None and loaded.error is None
    assert (loaded.coin.n, loaded.coin.state) == (100, CoinState.ACTIVE)
    assert loaded.to_json()["value_minor"] == 100
    assert _bank(broker) == BANK - 20 - 100
    # 110 left: payments above the threshold buy nothing more.
    for _ in range(10):
        wallet.read(url)
        assert wallet.autoloads == []
    assert len(broker.buy_requests) == 2 and _bank(broker) == BANK - 120
    stored = shortcuts(wallet).autoload("EUR")
    assert stored is not None and stored.last_ecoin_id == loaded.ecoin_id
    assert stored.last_error is None and not stored.pending


def test_authorize_and_open_window_run_the_agreement_too(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.buy(30)
    wallet.set_autoload("EUR", below_minor=25, units=50)
    wallet.authorize(vendor.url + "/articles/1")  # 25 left
    assert wallet.autoloads == []
    wallet.authorize(vendor.url + "/articles/1")  # 20 left
    assert [a.bought for a in wallet.autoloads] == [True]
    window = wallet.open_window(vendor.url + "/articles/1", 50)  # from the new coin
    assert window.words_left == 50
    assert [a.bought for a in wallet.autoloads] == [True]
    assert _bank(broker) == BANK - 30 - 50 - 50


def test_a_broker_outage_never_fails_the_payment_and_the_same_purchase_is_retried(
    make_wallet: Callable[[], Wallet],
    wallet: Wallet,
    vendor: FakeVendor,
    broker: FakeBroker,
) -> None:
    wallet.buy(10)
    wallet.set_autoload("EUR", below_minor=10, units=100)
    broker.fail_buy_before = [BrokerUnavailable("the broker is down")]
    result = wallet.read(vendor.url + "/articles/1")
    assert result.status == 200 and result.receipt is not None  # the payment stands
    [failed] = wallet.autoloads
    assert not failed.bought and failed.error is not None
    assert failed.error.code == "broker_unavailable"
    assert failed.to_json()["error"] == "broker_unavailable"
    agreement = shortcuts(wallet).autoload("EUR")
    assert agreement is not None and agreement.pending
    assert agreement.last_error == "broker_unavailable: the broker is down"
    assert _bank(broker) == BANK - 10
    # The next payment (another command: a new Wallet object) retries it.
    later = make_wallet()
    later.read(vendor.url + "/articles/2")
    [retried] = later.autoloads
    assert retried.bought and retried.ecoin_id == failed.ecoin_id
    assert _request_ids(broker)[-1] == _request_ids(broker)[-2]
    assert _bank(broker) == BANK - 10 - 100
    after = shortcuts(later).autoload("EUR")
    assert after is not None and not after.pending and after.last_error is None


def test_a_lost_reply_is_retried_with_its_request_id_and_charged_once(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.buy(5)
    wallet.set_autoload("EUR", below_minor=5, units=100)
    broker.lose_buy_replies = 1  # sold, then the reply is lost
    wallet.read(vendor.url + "/articles/1")
    [lost] = wallet.autoloads
    assert not lost.bought
    assert _bank(broker) == BANK - 5 - 100  # the broker did sell it
    assert shortcuts(wallet).coin(lost.ecoin_id).state is CoinState.PENDING
    wallet.buy(10)  # a manual purchase: the balance is above the threshold again
    wallet.read(vendor.url + "/articles/2")
    [completed] = wallet.autoloads
    assert completed.bought and completed.ecoin_id == lost.ecoin_id
    assert _request_ids(broker)[-1] == _request_ids(broker)[-3]
    assert _bank(broker) == BANK - 5 - 100 - 10  # one sale, one charge


def test_a_crash_before_or_after_buycoin_does_not_buy_twice(
    make_wallet: Callable[[], Wallet],
    wallet: Wallet,
    vendor: FakeVendor,
    broker: FakeBroker,
) -> None:
    wallet.buy(10)
    wallet.set_autoload("EUR", below_minor=10, units=100)
    wallet.read(vendor.url + "/articles/1")  # 5 left: one auto-load
    [first] = wallet.autoloads
    assert first.bought
    # Use the new coin down below the threshold without a payment finishing:
    # the process stores the next purchase as pending, sends BuyCoin, and dies.
    st = shortcuts(wallet).settings()
    claimed = shortcuts(wallet).claim_autoload(
        new_coin(100, 1, "EUR"), now_ms=10**13, skew_ms=0
    )  # every coin is past its expiry then: the usable balance is 0
    assert claimed is not None and claimed[1]
    pending = claimed[0]
    assert st.token is not None
    broker.buy_coin(
        st.token,
        broker_pb2.BuyCoinRequest(
            request_id=pending.request_id,
            ecoin_id=pending.ecoin_id,
            root=pending.root,
            n=100,
            unit_value_minor=1,
            currency="EUR",
            wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
        ),
    )
    assert _bank(broker) == BANK - 10 - 100 - 100
    restarted = make_wallet()
    restarted.read(vendor.url + "/articles/2")
    [resumed] = restarted.autoloads
    assert resumed.bought and resumed.ecoin_id == pending.ecoin_id
    assert _request_ids(broker).count(pending.request_id) == 2
    assert _bank(broker) == BANK - 10 - 100 - 100  # the replay was not charged
    assert len(broker.coins) == 3


def test_an_empty_bank_account_abandons_the_coin_and_the_next_payment_tries_again(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.buy(20)
    wallet.set_autoload("EUR", below_minor=20, units=100)
    broker.balances["r-1"] = 50
    wallet.read(vendor.url + "/articles/1")
    [refused] = wallet.autoloads
    assert refused.error is not None and refused.error.code == "insufficient"
    assert shortcuts(wallet).coin(refused.ecoin_id).state is CoinState.ABANDONED
    wallet.read(vendor.url + "/articles/1")
    [again] = wallet.autoloads
    assert not again.bought and again.ecoin_id != refused.ecoin_id
    broker.balances["r-1"] = 1000
    wallet.read(vendor.url + "/articles/1")
    [bought] = wallet.autoloads
    assert bought.bought and _bank(broker) == 900
    assert len({r.request_id for r in broker.buy_requests}) == 4


def test_a_payment_no_coin_can_make_is_paid_after_the_auto_load(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.set_autoload("EUR", below_minor=10, units=100)
    result = wallet.read(vendor.url + "/articles/1")  # no coin at all
    assert result.status == 200 and result.receipt is not None
    [loaded] = wallet.autoloads  # one auto-load for this payment, not two
    assert loaded.bought and result.ecoin_id == loaded.ecoin_id
    assert len(broker.buy_requests) == 1


def test_when_the_auto_load_fails_the_insufficient_error_says_why(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.set_autoload("EUR", below_minor=10, units=100)
    broker.fail_buy_before = [BrokerUnavailable("the broker is down")]
    with pytest.raises(Insufficient, match="auto-load failed: broker_unavailable"):
        wallet.read(vendor.url + "/articles/1")
    assert vendor.paid_clicks == 0


def test_turning_it_off_stops_new_purchases_but_completes_a_pending_one(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.buy(10)
    wallet.set_autoload("EUR", below_minor=10, units=100)
    broker.fail_buy_before = [BrokerUnavailable("down")]
    wallet.read(vendor.url + "/articles/1")
    off = wallet.autoload_off("EUR")
    assert off is not None and not off.enabled and off.pending
    assert wallet.autoload_agreements() == []
    wallet.read(vendor.url + "/articles/1")
    [completed] = wallet.autoloads
    assert completed.bought
    for _ in range(20):  # the new coin runs down below 10: nothing more is bought
        wallet.read(vendor.url + "/articles/1")
    assert len(broker.buy_requests) == 3 and wallet.autoloads == []


def test_an_expired_login_is_reported_and_the_payment_stands(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker, clock: FakeClock
) -> None:
    wallet.buy(10)
    wallet.set_autoload("EUR", below_minor=10, units=100)
    clock.advance(DAY_MS / 1000 + 1)  # the fake broker's tokens last a day
    broker.certify(vendor.vendor_id, vendor.key.public_key, vendor.url)  # so do certificates
    result = wallet.read(vendor.url + "/articles/1")
    assert result.status == 200
    [failed] = wallet.autoloads
    assert failed.error is not None and failed.error.code == "unauthenticated"


def test_the_bridge_runs_the_agreement_after_a_payment(
    wallet: Wallet, vendor: FakeVendor, broker: FakeBroker
) -> None:
    wallet.buy(10)
    wallet.set_autoload("EUR", below_minor=10, units=100)
    shortcuts(wallet).approve_origin(vendor.url, max_click_minor=None, max_day_minor=None, now_ms=0)
    answer = Bridge(wallet).authorize(vendor.url, vendor.url + "/articles/1")
    assert answer["amount"] == 5
    assert [a.bought for a in wallet.autoloads] == [True]
    assert _bank(broker) == BANK - 110


@pytest.mark.parametrize(
    ("below", "units", "unit_value", "currency"),
    [
        (101, 100, 1, "EUR"),  # the coin would not lift the balance over the threshold
        (0, 100, 1, "EUR"),
        (10_000_001, 10_000_001, 1, "EUR"),
        (10, 0, 1, "EUR"),
        (10, 100, 0, "EUR"),
        (10, 100, 1, "euro"),
    ],
)
def test_bad_terms_are_refused_and_nothing_is_stored(
    wallet: Wallet, below: int, units: int, unit_value: int, currency: str
) -> None:
    with pytest.raises(InvalidArgument):
        wallet.set_autoload(currency, below, units, unit_value)
    assert shortcuts(wallet).autoloads(enabled_only=False) == []
