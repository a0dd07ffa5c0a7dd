"""Auto-load against the real broker (the demo bank pays) and the real newspaper."""

from __future__ import annotations

from ewallet_client.domain import CoinState
from ewallet_client.wallet import Wallet
from ewallet_client.wallet.coins import new_coin
from netpay.envelope import open_envelope
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from tests.fakes.wallet_store import shortcuts

from .conftest import BANK_MINOR, World


def _broker_coins(wallet: Wallet) -> list[str]:
    """The reader's coins as the broker lists them (ListCoins), by e-coin id."""
    st = shortcuts(wallet).settings()
    assert st.token is not None and st.broker_public_key is not None
    key = st.broker_public_key
    return sorted(
        open_envelope(c.touchstone, pb.Touchstone, key).ecoin_id
        for c in wallet._broker().list_coins(st.token)
    )


def test_crossing_the_threshold_buys_exactly_one_coin_from_the_bank(world: World) -> None:
    wallet = world.wallet
    wallet.buy(30)
    wallet.set_autoload("EUR", below_minor=20, units=100)
    url = world.article(5)
    wallet.read(url)  # 25 left
    assert wallet.autoloads == []
    result = wallet.read(url)  # 20 left: not below
    assert wallet.autoloads == [] and result.receipt is not None
    wallet.read(url)  # 15 left: below
    [loaded] = wallet.autoloads
    assert loaded.bought and loaded.coin is not None and loaded.coin.n == 100
    assert world.bank_minor() == BANK_MINOR - 30 - 100
    for _ in range(4):  # 115 .. 95 left: above the threshold
        wallet.read(url)
        assert wallet.autoloads == []
    assert world.bank_minor() == BANK_MINOR - 130
    assert len(_broker_coins(wallet)) == 2


def test_a_broker_outage_never_fails_the_payment_and_the_auto_load_is_retried(
    world: World,
) -> None:
    wallet = world.wallet
    old = wallet.buy(30)
    wallet.set_autoload("EUR", below_minor=20, units=100)
    url = world.article(5)
    wallet.read(url)  # the newspaper now holds the coin; 25 left
    wallet.read(url)  # 20 left
    world.stop_broker()
    during = world.new_wallet()
    result = during.read(url)  # 15 left: below, and the broker is down
    assert result.status == 200 and result.receipt is not None
    [failed] = during.autoloads
    assert failed.error is not None and failed.error.code in ("broker_unavailable", "unavailable")
    assert shortcuts(during).coin(failed.ecoin_id).state is CoinState.PENDING

    world.restart_broker()
    after = world.new_wallet()
    later = after.read(url)  # 10 left on the old coin; the purchase is retried
    assert later.status == 200 and later.ecoin_id == old.ecoin_id
    [retried] = after.autoloads
    assert retried.bought and retried.ecoin_id == failed.ecoin_id
    assert world.bank_minor(after) == BANK_MINOR - 30 - 100
    assert _broker_coins(after) == sorted([old.ecoin_id, failed.ecoin_id])
    agreement = shortcuts(after).autoload("EUR")
    assert agreement is not None and agreement.last_error is None and not agreement.pending


def test_a_reused_request_id_after_a_crash_does_not_buy_twice(world: World) -> None:
    wallet = world.wallet
    wallet.buy(20)
    wallet.set_autoload("EUR", below_minor=20, units=100)
    # The process stored the purchase as pending, sent BuyCoin, and died before
    # the reply: the broker sold the coin, the wallet does not know it yet.
    claimed = shortcuts(wallet).claim_autoload(
        new_coin(100, 1, "EUR"), now_ms=10**13, skew_ms=0
    )  # far in the future, every coin has expired: the usable balance is 0
    assert claimed is not None
    pending = claimed[0]
    token = shortcuts(wallet).settings().token
    assert token is not None
    wallet._broker().buy_coin(
        token,
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
    assert world.bank_minor() == BANK_MINOR - 20 - 100

    restarted = world.new_wallet()
    result = restarted.read(world.article(5))
    assert result.status == 200
    [resumed] = restarted.autoloads
    assert resumed.bought and resumed.ecoin_id == pending.ecoin_id
    assert shortcuts(restarted).coin(pending.ecoin_id).state is CoinState.ACTIVE
    assert world.bank_minor(restarted) == BANK_MINOR - 20 - 100  # one sale, one charge
    assert len(_broker_coins(restarted)) == 2
