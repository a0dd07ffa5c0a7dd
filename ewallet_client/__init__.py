"""The reader's client-side e-wallet: library (:class:`Wallet`) and CLI."""

from ewallet_client.domain import CoinState, CoinView
from ewallet_client.wallet import ReadResult, Wallet, default_wallet_dir

__all__ = ["CoinState", "CoinView", "ReadResult", "Wallet", "default_wallet_dir"]
