"""The bridge's answers and the page's refused fetches publish no word (protocol.md 1.1,
change 1).

A newspaper page pays through the bridge; every answer the bridge refuses and
the vendor's refusal of a header the page reuses are scanned for every word of
the wallet's coin (tests/leaks.py). The vendor's already_spent names its index
and seen, and the words stay with the wallet.
"""

from __future__ import annotations

import json

import requests

from netpay.chain import Chain
from netpay.header import parse_authorization
from tests.fakes.wallet_store import shortcuts
from tests.leaks import RefusalScan, seen_text

from .conftest import COIN_UNITS, World


def the_chain(world: World) -> Chain:
    """The wallet's coin as a whole chain (from its seed, w[n])."""
    [coin] = world.wallet.coins()
    seed = shortcuts(world.wallet).word(coin.ecoin_id, COIN_UNITS)
    return Chain.make(bytes.fromhex(coin.ecoin_id), COIN_UNITS, seed)


def test_no_bridge_answer_nor_refused_page_fetch_carries_a_word(world: World) -> None:
    chain = the_chain(world)
    scan = RefusalScan()
    scan.add_chain(chain)
    world.approve("daily", max_click_minor=100)
    origin, bridge = world.origin("daily"), world.bridge.url
    cheap, dear = world.article("daily"), world.article("daily", -1)

    answer = world.post(bridge, cheap["url"], origin=origin)
    assert answer.status_code == 200
    header = answer.json()["authorization"]
    paid = requests.get(cheap["url"], headers={"Authorization": header}, timeout=10)
    assert paid.status_code == 200
    # The page fetches another article with the same header: already_spent, (s, seen).
    for kind, accept in (("json", "application/json"), ("html", "text/html")):
        again = requests.get(
            dear["url"], headers={"Authorization": header, "Accept": accept}, timeout=10
        )
        scan.http(f"page: a used header for another article ({kind})", again)

    scan.http("bridge: unapproved origin", world.post(bridge, cheap["url"], origin=None))
    scan.http(
        "bridge: another origin", world.post(bridge, cheap["url"], origin=world.origin("gazette"))
    )
    scan.http(
        "bridge: wrong host", world.post(bridge, cheap["url"], origin=origin, host="localhost:1")
    )
    scan.http(
        "bridge: not JSON", world.post(bridge, cheap["url"], origin=origin, content_type="text/a")
    )
    big = json.dumps({"url": cheap["url"], "pad": "x" * 10_000}).encode()
    scan.http("bridge: too large", world.post(bridge, cheap["url"], origin=origin, data=big))
    free = world.free_article("daily")
    scan.http("bridge: a free article", world.post(bridge, free, origin=origin))
    world.approve("daily", max_click_minor=cheap["amount"])
    scan.http("bridge: above the click cap", world.post(bridge, dear["url"], origin=origin))
    scan.http(
        "bridge: a certificate for another origin",
        world.post(bridge, world.article("liar")["url"], origin=world.origin("liar")),
    )

    leaks = scan.leaks()
    assert not leaks, "words in refusals:\n" + "\n".join(leaks)
    spent = parse_authorization(header).index
    reused = scan.by_label("page: a used header for another article (json)")
    assert (reused.code, reused.index, reused.seen) == (
        "already_spent",
        spent,
        seen_text(chain.word(spent)),
    )
    codes = [r.code for r in scan.refusals if r.label.startswith("bridge:")]
    assert codes == [
        "permission_denied",
        "permission_denied",
        "permission_denied",
        "invalid_argument",
        "invalid_argument",
        "failed_precondition",
        "limit_exceeded",
        "permission_denied",
    ]
