"""The client-side e-wallet's use cases (protocol.md, "The HTTP payment").

A :class:`Wallet` keeps its state in ``<wallet_dir>/wallet.sqlite``
(:mod:`ewallet_client.store`), talks to the broker over gRPC
(:mod:`ewallet_client.broker_client`) and to vendors' web sites over HTTP
(:mod:`ewallet_client.http`). It trusts the broker it pinned at its first
contact, pays only the web origin the broker certified for a vendor, and
never gives one index range to two headers.

The reader's spending limits (:mod:`netpay.spending`, set with
:meth:`Wallet.set_spending_limits`) are enforced for every payment the wallet
makes with its own coins, in the store transaction that moves the index. A
standing auto-load agreement (:meth:`Wallet.set_autoload`) buys a new coin,
by the same path as :meth:`Wallet.buy`, when a payment leaves the usable
balance below its threshold; a failed auto-load never fails the payment.

One room per use-case area, each a class given its collaborators:

* ``ports``: what every area shares (units of work, clock, HTTP session,
  the broker link, the notes of the payment running now);
* ``account``: register, log in, pin the broker;
* ``coins``: buy (client- and server-side), resume pending purchases,
  resync a coin, balances and history;
* ``limits``: spending limits, here and at the broker;
* ``autoload``: the auto-load agreements and their purchases;
* ``quotes``: a vendor's price and certificate, verified; receipts opened;
* ``issuing``: a fresh index range and the header that spends it;
* ``paying``: read a paid URL, authorize one click;
* ``window_clicks``: a click paid from an open window;
* ``windows``: open, authorize, close and list windows;
* ``origins``: the origins approved for the browser bridge;
* ``facade``: :class:`Wallet`, one-line delegations to the above.
"""

from ewallet_client.wallet.facade import Wallet, default_wallet_dir
from ewallet_client.wallet.issuing import BUSY_RETRIES, PAY_ATTEMPTS
from ewallet_client.wallet.paying import DEFAULT_MAX_AMOUNT_MINOR
from ewallet_client.wallet.results import (
    Authorization,
    AutoloadResult,
    ReadResult,
    WindowAuthorization,
    WindowCreditView,
)
from ewallet_client.wallet.window_clicks import WINDOW_COOKIE
from ewallet_client.wallet.windows import MAX_WINDOW_UNITS

__all__ = [
    "BUSY_RETRIES",
    "DEFAULT_MAX_AMOUNT_MINOR",
    "MAX_WINDOW_UNITS",
    "PAY_ATTEMPTS",
    "WINDOW_COOKIE",
    "Authorization",
    "AutoloadResult",
    "ReadResult",
    "Wallet",
    "WindowAuthorization",
    "WindowCreditView",
    "default_wallet_dir",
]
