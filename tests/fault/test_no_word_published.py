"""No refusal publishes a word of the coin (protocol.md revision 1.1, change 1).

1.0 answered ``wrong_amount`` and ``already_spent`` (and the broker's spent
proofs and stale CoinIndexes) with ``(index, payword)``: anyone could ask a
newspaper for its current word, which lay above the broker's latest known word
and so served as an AcquireCoin proof (issue 9, finding 1). Here a reader's coin
is paid at one newspaper (clicks, a checkpoint, a window), then every refusal we
can provoke from the real servers is collected — each HTTP answer as JSON and as
an HTML page, every gRPC error of the broker's custody calls and of
``Vendor.HandOff`` — and scanned for every word of the coin's chain in any
encoding (tests/leaks.py). A refusal names an index and its ``seen`` only for a
genuine word; a made-up word gets ``bad_payword`` naming nothing.
"""

from __future__ import annotations

import secrets

import grpc
import requests

from netpay.chain import Chain
from netpay.envelope import load_or_create_key, seal
from netpay.header import Credentials, format_authorization
from netpay.limits import DEFAULT_LIMITS
from netpay.transport.auth import bearer_metadata, sign_call
from netpay.transport.server import channel_options
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from netpay.v1 import vendor_pb2, vendor_pb2_grpc
from tests.fault.conftest import HTTP_TIMEOUT_S, World, pay_header
from tests.leaks import RefusalScan, seen_text
from vendor.peer_client import HANDOFF_METHOD
from vendor.server import VendorHandle

HOLDER = "daily-hash"
TAKER = "chain-gazette"
N = 2 * DEFAULT_LIMITS.acquire_bound_units(DEFAULT_LIMITS.max_click_amount_minor)
ACCEPTS = {"json": "application/json", "html": "text/html"}


def forged_header(chain: Chain, prev: int, index: int, window: int | None = None) -> str:
    """A header with a made-up word at ``index``."""
    creds = Credentials(chain.ecoin_id.hex(), prev, index, secrets.token_bytes(32), window=window)
    return format_authorization(creds)


class Http:
    """Every HTTP refusal of the newspaper, asked for as JSON and as HTML."""

    def __init__(self, scan: RefusalScan, vendor: VendorHandle) -> None:
        self.scan = scan
        self.vendor = vendor

    def get(self, label: str, path: str, **headers: str) -> None:
        self.ask("GET", label, path, headers)

    def post(self, label: str, path: str, **headers: str) -> None:
        self.ask("POST", label, path, headers)

    def ask(self, method: str, label: str, path: str, headers: dict[str, str]) -> None:
        for kind, accept in ACCEPTS.items():
            resp = requests.request(
                method,
                self.vendor.web_url + path,
                headers={"Accept": accept, **headers},
                timeout=HTTP_TIMEOUT_S,
            )
            self.scan.http(f"{label} ({kind})", resp)

    def article(self, label: str, article: str, header: str) -> None:
        self.get(label, f"/articles/{article}", Authorization=header)


def coin_index(world: World, chain: Chain, index: int, word: bytes, to: str = "") -> pb.Envelope:
    """A CoinIndex of epoch 1 signed with the holder's own key."""
    key = load_or_create_key(world.tmp / HOLDER / "vendor.key")
    return seal(
        pb.CoinIndex(
            ecoin_id=chain.ecoin_id.hex(),
            epoch=1,
            index=index,
            payword=word,
            vendor_id=HOLDER,
            to_vendor=to,
            issued_at_ms=world.clock.now_ms(),
        ),
        key,
    )


def provoke_http(scan: RefusalScan, http: Http, chain: Chain) -> None:
    """The newspaper's refusals; the coin stands at 58 there (a window (8, 58])."""
    http.get("unpaid", "/articles/1")
    http.article("wrong amount", "1", pay_header(chain, 58, 60))
    http.article("wrong amount, made-up word", "1", forged_header(chain, 58, 60))
    http.article("already spent", "1", pay_header(chain, 5, 6))
    http.article("already spent, made-up word", "1", forged_header(chain, 5, 6))
    http.article("already spent, far below", "1", pay_header(chain, 1, 2))
    http.article("replay for another item", "12", pay_header(chain, 0, 5))
    http.article("bad payword", "1", forged_header(chain, 58, 59))
    http.article("gap too large", "1", pay_header(chain, 58 + 1100, 58 + 1101))
    http.article("malformed", "1", "NetPay ecoin=oops")
    http.article("window header on an article", "1", pay_header(chain, 58, 59, window=1))
    http.post("window already spent", "/netpay/window", Authorization=pay_header(chain, 5, 15, 10))
    http.post(
        "window already spent, made-up word",
        "/netpay/window",
        Authorization=forged_header(chain, 5, 15, 10),
    )
    http.post("window too large", "/netpay/window", Authorization=pay_header(chain, 58, 658, 600))
    http.post("window malformed", "/netpay/window", Authorization=pay_header(chain, 58, 62, 3))
    http.get("window click, unknown handle", "/articles/1", Cookie="netpay_window=" + "A" * 43)
    http.post("window close, unknown handle", "/netpay/window/close", Cookie="netpay_window=x")


def provoke_broker(scan: RefusalScan, world: World, chain: Chain) -> None:
    """The broker's custody refusals; its latest known word is 8 (A's checkpoint)."""
    ecoin = chain.ecoin_id.hex()
    taker = bearer_metadata(world.vendor_token(TAKER))
    holder = bearer_metadata(world.vendor_token(HOLDER))

    def acquire(label: str, index: int, word: bytes) -> None:
        request = bpb.AcquireCoinRequest(ecoin_id=ecoin, proof_index=index, proof_word=word)
        scan.refused(label, lambda: world.stub.AcquireCoin(request, metadata=taker))

    acquire("acquire spent", 6, chain.word(6))
    acquire("acquire spent, made-up word", 6, secrets.token_bytes(32))
    acquire("acquire spent, at the latest", 8, chain.word(8))
    acquire("acquire above, made-up word", 9, secrets.token_bytes(32))
    bound = DEFAULT_LIMITS.acquire_bound_units(DEFAULT_LIMITS.max_click_amount_minor)
    acquire("acquire far above", 8 + bound + 1, chain.word(8 + bound + 1))
    acquire("acquire beyond n", chain.n + 1, secrets.token_bytes(32))
    for label, word in (("genuine", chain.word(6)), ("made-up", secrets.token_bytes(32))):
        handed = bpb.RecordHandoffRequest(coin_index=coin_index(world, chain, 6, word, TAKER))
        scan.refused(
            f"record handoff below the latest, {label} word",
            lambda r=handed: world.stub.RecordHandoff(r, metadata=taker),
        )
        reclaim = bpb.ReclaimRequest(
            ecoin_id=ecoin, epoch=1, coin_index=coin_index(world, chain, 6, word)
        )
        scan.refused(
            f"reclaim below the latest, {label} word",
            lambda r=reclaim: world.stub.Reclaim(r, metadata=holder),
        )
        checkpoint = world.stub.Checkpoint(
            bpb.CheckpointRequest(indexes=[coin_index(world, chain, 6, word)]), metadata=holder
        )
        [item] = checkpoint.results
        assert item.status == bpb.CHECKPOINT_STATUS_REJECTED, item
        scan.text(f"checkpoint below the latest, {label} word", "rejected", item.detail)


def provoke_handoff(scan: RefusalScan, world: World, holder: VendorHandle, chain: Chain) -> None:
    """``Vendor.HandOff`` at the holder, refused: a bad grant, the wrong caller, expired."""
    request = bpb.AcquireCoinRequest(
        ecoin_id=chain.ecoin_id.hex(), proof_index=59, proof_word=chain.word(59)
    )
    reply = world.stub.AcquireCoin(request, metadata=bearer_metadata(world.vendor_token(TAKER)))
    assert reply.WhichOneof("result") == "handoff", reply
    grant = reply.handoff.grant
    channel = grpc.insecure_channel(holder.grpc_address, options=channel_options())
    stub = vendor_pb2_grpc.VendorStub(channel)  # type: ignore[no-untyped-call]
    taker_key = load_or_create_key(world.tmp / TAKER / "vendor.key")
    holder_key = load_or_create_key(world.tmp / HOLDER / "vendor.key")

    def hand_off(label: str, envelope: pb.Envelope, caller: str, key: object) -> None:
        msg = vendor_pb2.HandOffRequest(grant=envelope)
        meta = sign_call(key, caller, HANDOFF_METHOD, msg, world.clock.now_ms())  # type: ignore[arg-type]
        scan.refused(label, lambda: stub.HandOff(msg, metadata=meta, timeout=30))

    try:
        bad = pb.Envelope()
        bad.CopyFrom(grant)
        bad.signature = bytes(64)
        hand_off("handoff, bad grant", bad, TAKER, taker_key)
        hand_off("handoff, the grant names another caller", grant, HOLDER, holder_key)
        world.advance(DEFAULT_LIMITS.handoff_ttl_s + 1)
        hand_off("handoff, expired grant", grant, TAKER, taker_key)
    finally:
        channel.close()


def test_no_refusal_carries_a_word_of_the_coin(any_world: World) -> None:
    world = any_world  # SQLite and PostgreSQL: the refusal path reads the click log
    a = world.start_vendor(HOLDER)
    world.start_vendor(TAKER)
    chain = world.reader.buy(N)
    scan = RefusalScan()
    scan.add_chain(chain)
    s = world.pay(a, chain, 0, "4")  # (0, 5]
    s = world.pay(a, chain, s, "3")  # (5, 8]
    assert a.services.checkpoint_all().leased == 1  # the broker's latest word: 8
    handle, _window = world.open_window(a, chain, s, 50)  # (8, 58]: never reported
    assert world.click(a, handle, "1").status_code == 200

    provoke_http(scan, Http(scan, a), chain)
    provoke_broker(scan, world, chain)
    provoke_handoff(scan, world, a, chain)

    assert len(scan.refusals) > 40
    leaks = scan.leaks()
    assert not leaks, "words in refusals:\n" + "\n".join(leaks)

    # What each refusal names: the index and its seen for a genuine word only.
    at_vendor, at_broker = seen_text(chain.word(58)), seen_text(chain.word(8))
    expected = {
        "wrong amount (json)": ("wrong_amount", 58, at_vendor),
        "wrong amount, made-up word (json)": ("bad_payword", None, None),
        "already spent (json)": ("already_spent", 58, at_vendor),
        "already spent, made-up word (json)": ("bad_payword", None, None),
        "already spent, far below (json)": ("already_spent", 58, at_vendor),
        "replay for another item (json)": ("already_spent", 58, at_vendor),
        "bad payword (json)": ("bad_payword", None, None),
        "gap too large (json)": ("bad_payword", None, None),
        "window already spent (json)": ("already_spent", 58, at_vendor),
        "window already spent, made-up word (json)": ("bad_payword", None, None),
        "window too large (json)": ("limit_exceeded", None, None),
        "acquire spent": ("already_spent", 8, at_broker),
        "acquire spent, made-up word": ("bad_payword", None, None),
        "acquire spent, at the latest": ("already_spent", 8, at_broker),
        "acquire above, made-up word": ("bad_payword", None, None),
        "acquire far above": ("limit_exceeded", None, None),
        "acquire beyond n": ("insufficient", None, None),
        "record handoff below the latest, genuine word": ("failed_precondition", 8, at_broker),
        "record handoff below the latest, made-up word": ("bad_payword", None, None),
        "reclaim below the latest, genuine word": ("failed_precondition", 8, at_broker),
        "reclaim below the latest, made-up word": ("bad_payword", None, None),
        "handoff, bad grant": ("bad_signature", None, None),
        "handoff, the grant names another caller": ("permission_denied", None, None),
        "handoff, expired grant": ("failed_precondition", None, None),
    }
    got = {label: (r.code, r.index, r.seen) for label in expected for r in [scan.by_label(label)]}
    assert got == expected
    # No other refusal names an index (an HTML page is read by a person).
    for r in scan.refusals:
        if r.label not in expected:
            assert (r.index, r.seen) == (None, None), r
