"""The one object the servicer (``broker.rpc``), the portal (``broker.web``) and the
tests call: :class:`BrokerServices`, every broker use case as a one-line delegation
to the area that holds it.

What an area may import (no cycles): ``ports`` and ``common`` are for all;
``ledger`` is called by ``identity``, ``coins`` and ``redemption``; ``identity`` by
``accounts`` and ``wallets``; ``wallets`` by ``custody``; ``credits`` by ``custody``
and ``redemption``; ``epochs`` by ``custody``; ``refunds`` by ``redemption``;
``history`` and ``reconcile`` by nobody. Only this module composes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from argon2 import PasswordHasher

from broker.bank import DemoBank
from broker.domain.personal import BankAccountDetails, CardDetails
from broker.seedvault import SeedVault
from broker.services.accounts import Accounts, InstrumentView, PortalSession, ProfileView
from broker.services.coins import (
    BuyCoinInput,
    Coins,
    CoinStatusView,
    PortalCoinView,
    PurchaseResult,
)
from broker.services.custody import CheckpointOutcome, Custody, HandOffRequiredView
from broker.services.epochs import CustodyGrantView
from broker.services.history import History, HistoryItem
from broker.services.identity import DirectoryEntry, Identity, LoginResult, VendorRegistration
from broker.services.ledger import Ledger
from broker.services.ports import (
    Bank,
    BrokerIdentity,
    BrokerPorts,
    Passwords,
    UnitOfWorkFactory,
    check_currencies,
)
from broker.services.redemption import Redemption
from broker.services.wallets import (
    SigninTarget,
    WalletGrantView,
    Wallets,
    WalletSignin,
    WindowDrawView,
)
from broker.storage import ExpiryRefundRow
from netpay.clock import Clock
from netpay.encoding import check_party_id
from netpay.envelope import SigningKey
from netpay.errors import InvalidArgument
from netpay.limits import Limits
from netpay.spending import SpendingLimits
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

__all__ = ["BrokerServices"]


class BrokerServices:
    """Every broker use case, over one unit-of-work factory, one key and one clock.

    ``store`` is a :class:`broker.storage.BrokerStore` (or any unit-of-work
    factory: the unit tests pass an in-memory fake).
    """

    def __init__(
        self,
        store: UnitOfWorkFactory,
        key: SigningKey,
        broker_id: str,
        *,
        limits: Limits,
        currencies: Sequence[str],
        demo_deposit_minor: int,
        clock: Clock,
        password_hasher: PasswordHasher | None = None,
        seed_vault: SeedVault | None = None,
        bank: Bank | None = None,
    ) -> None:
        check_party_id(broker_id, "broker id")
        offered = check_currencies(currencies)
        if demo_deposit_minor < 0:
            raise InvalidArgument("the demo deposit cannot be negative")
        self.store = store
        self.ports = BrokerPorts(
            uow=store,
            identity=BrokerIdentity(broker_id, key),
            clock=clock,
            limits=limits,
            currencies=offered,
            # Macro-payments: the demo bank keeps its accounts in our own ledger.
            bank=bank or DemoBank(demo_deposit_minor),
            passwords=Passwords(password_hasher),
            vault=seed_vault,
        )
        self.ledger = Ledger(self.ports)
        self.identity = Identity(self.ports, self.ledger)
        self.accounts = Accounts(self.ports, self.identity)
        self.coins = Coins(self.ports, self.ledger)
        self.wallets = Wallets(self.ports, self.identity)
        self.custody = Custody(self.ports, self.wallets)
        self.redemption = Redemption(self.ports, self.ledger)
        self.history_log = History(self.ports)
        # The web portal's base URL, set once it serves ("" without a portal).
        self.portal_url = ""

    # -- who the broker is ------------------------------------------------------------

    @property
    def broker_id(self) -> str:
        return self.ports.identity.broker_id

    @property
    def key(self) -> SigningKey:
        return self.ports.identity.key

    @property
    def public_key(self) -> bytes:
        return self.ports.identity.public_key

    @property
    def limits(self) -> Limits:
        return self.ports.limits

    @property
    def currencies(self) -> tuple[str, ...]:
        return self.ports.currencies

    @property
    def clock(self) -> Clock:
        return self.ports.clock

    @property
    def bank(self) -> Bank:
        return self.ports.bank

    # -- identity ---------------------------------------------------------------------

    def register_reader(self, username: str, password: str) -> str:
        return self.identity.register_reader(username, password)

    def login(self, username: str, password: str) -> LoginResult:
        return self.identity.login(username, password)

    def authenticate_reader(self, token: str) -> str:
        return self.identity.authenticate_reader(token)

    def authenticate_vendor(self, token: str) -> str:
        return self.identity.authenticate_vendor(token)

    def authenticate_any(self, token: str) -> tuple[str | None, str | None]:
        return self.identity.authenticate_any(token)

    def change_password(
        self, reader_id: str, current: str, new: str, *, keep_session: str | None = None
    ) -> None:
        self.identity.change_password(reader_id, current, new, keep_session=keep_session)

    def add_vendor(self, vendor_id: str, origin: str | None = None) -> str:
        return self.identity.add_vendor(vendor_id, origin)

    def register_vendor(
        self,
        *,
        enrollment_token: str,
        bearer_token: str | None,
        public_key: bytes,
        grpc_address: str,
        web_origin: str,
        display_name: str,
    ) -> VendorRegistration:
        return self.identity.register_vendor(
            enrollment_token=enrollment_token,
            bearer_token=bearer_token,
            public_key=public_key,
            grpc_address=grpc_address,
            web_origin=web_origin,
            display_name=display_name,
        )

    def vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        return self.identity.vendor_certificate(vendor_id)

    def vendor_directory(self) -> list[DirectoryEntry]:
        return self.identity.vendor_directory()

    # -- the reader's account (portal) -------------------------------------------------

    def account_balances(self, reader_id: str) -> dict[str, int]:
        return self.ledger.account_balances(reader_id)

    def spending_limits(self, reader_id: str) -> list[tuple[SpendingLimits, int]]:
        return self.accounts.spending_limits(reader_id)

    def set_spending_limits(self, reader_id: str, limits: SpendingLimits) -> None:
        self.accounts.set_spending_limits(reader_id, limits)

    def portal_login(self, username: str, password: str) -> PortalSession:
        return self.accounts.portal_login(username, password)

    def portal_register(self, username: str, password: str) -> PortalSession:
        return self.accounts.portal_register(username, password)

    def portal_reader(self, session_token: str) -> str:
        return self.accounts.portal_reader(session_token)

    def portal_logout(self, session_token: str) -> None:
        self.accounts.portal_logout(session_token)

    def reader_profile(self, reader_id: str) -> ProfileView:
        return self.accounts.reader_profile(reader_id)

    def update_profile(self, reader_id: str, display_name: str, email: str) -> ProfileView:
        return self.accounts.update_profile(reader_id, display_name, email)

    def erase_personal_data(self, reader_id: str) -> ProfileView:
        return self.accounts.erase_personal_data(reader_id)

    def list_instruments(self, reader_id: str) -> list[InstrumentView]:
        return self.accounts.list_instruments(reader_id)

    def add_instrument(
        self,
        reader_id: str,
        details: CardDetails | BankAccountDetails,
        *,
        make_default: bool = False,
    ) -> InstrumentView:
        return self.accounts.add_instrument(reader_id, details, make_default=make_default)

    def remove_instrument(self, reader_id: str, instrument_id: str) -> None:
        self.accounts.remove_instrument(reader_id, instrument_id)

    def set_default_instrument(self, reader_id: str, instrument_id: str) -> None:
        self.accounts.set_default_instrument(reader_id, instrument_id)

    # -- coins -------------------------------------------------------------------------

    def buy_coin(self, reader_id: str, request: BuyCoinInput) -> PurchaseResult:
        return self.coins.buy_coin(reader_id, request)

    def get_coin(
        self, ecoin_id: str, *, reader_id: str | None = None, vendor_id: str | None = None
    ) -> CoinStatusView:
        return self.coins.get_coin(ecoin_id, reader_id=reader_id, vendor_id=vendor_id)

    def list_coins(self, reader_id: str) -> list[CoinStatusView]:
        return self.coins.list_coins(reader_id)

    def freeze_coin(
        self, ecoin_id: str, *, frozen: bool = True, reader_id: str | None = None
    ) -> CoinStatusView:
        return self.coins.freeze_coin(ecoin_id, frozen=frozen, reader_id=reader_id)

    def portal_coins(self, reader_id: str) -> list[PortalCoinView]:
        return self.coins.portal_coins(reader_id)

    # -- custody -----------------------------------------------------------------------

    def acquire_coin(
        self,
        caller: str,
        ecoin_id: str,
        proof_index: int,
        proof_word: bytes,
        *,
        force: bool,
        wallet_grant: pb.Envelope | None = None,
        currency: str = "",
    ) -> CustodyGrantView | HandOffRequiredView:
        return self.custody.acquire_coin(
            caller,
            ecoin_id,
            proof_index,
            proof_word,
            force=force,
            wallet_grant=wallet_grant,
            currency=currency,
        )

    def record_handoff(
        self, caller: str, coin_index: pb.Envelope, window_credit: pb.Envelope | None = None
    ) -> CustodyGrantView:
        return self.custody.record_handoff(caller, coin_index, window_credit)

    def reclaim(
        self, caller: str, ecoin_id: str, epoch: int, coin_index: pb.Envelope
    ) -> CustodyGrantView:
        return self.custody.reclaim(caller, ecoin_id, epoch, coin_index)

    def checkpoint(self, caller: str, indexes: Sequence[pb.Envelope]) -> CheckpointOutcome:
        return self.custody.checkpoint(caller, indexes)

    # -- server-side wallets -----------------------------------------------------------

    def signin_target(self, vendor_id: str, return_to: str) -> SigninTarget:
        return self.wallets.signin_target(vendor_id, return_to)

    def wallet_signin(self, ecoin_id: str, password: str, vendor_id: str) -> WalletSignin:
        return self.wallets.wallet_signin(ecoin_id, password, vendor_id)

    def wallet_session_coin(self, session_token: str) -> str | None:
        return self.wallets.wallet_session_coin(session_token)

    def wallet_continue(self, session_token: str, vendor_id: str) -> WalletSignin:
        return self.wallets.wallet_continue(session_token, vendor_id)

    def wallet_session_end(self, session_token: str) -> None:
        self.wallets.wallet_session_end(session_token)

    def exchange_wallet_code(self, caller: str, code: str) -> WalletGrantView:
        return self.wallets.exchange_wallet_code(caller, code)

    def draw_window(
        self, caller: str, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> WindowDrawView:
        return self.wallets.draw_window(caller, wallet_grant, epoch, units)

    # -- money: redemption, refunds, history, the books --------------------------------

    def redeem(self, caller: str, request: bpb.RedeemRequest) -> bpb.RedeemResponse:
        return self.redemption.redeem(caller, request)

    def refund_expired(self, *, limit: int = 1000) -> list[ExpiryRefundRow]:
        return self.redemption.refund_expired(limit=limit)

    def history(
        self,
        *,
        reader_id: str | None = None,
        vendor_id: str | None = None,
        ecoin_id: str = "",
        limit: int = 0,
        before_ms: int = 0,
    ) -> list[HistoryItem]:
        return self.history_log.history(
            reader_id=reader_id,
            vendor_id=vendor_id,
            ecoin_id=ecoin_id,
            limit=limit,
            before_ms=before_ms,
        )
