"""The browser bridge: the client-side wallet served to newspaper pages on loopback.

``netpay wallet bridge`` listens on a loopback IP address only. A newspaper
page's JavaScript (``netpay/static/netpay-bridge.js``) asks it for the
``Authorization`` header that pays one article, then fetches the article
itself, so the receipt and the balance go to the page.

Who may ask (every rule refuses before anything moves):

* the ``Host`` header must be the bridge's own ``ip:port`` (a DNS-rebinding
  page reaches the bridge under its own host name and is refused);
* the ``Origin`` header must be present and one the reader approved
  (``netpay wallet approve-origin``);
* the article URL must have that same origin, and the broker's certificate
  for the vendor that the URL's challenge names must certify it (the
  wallet's own check: the vendor certificate's web origin == the URL's);
* a POST must be ``Content-Type: application/json`` (a cross-site form
  cannot send that without a CORS preflight, which only approved origins
  pass), at most ``MAX_BODY_BYTES``, with a URL of at most ``MAX_URL_CHARS``;
* the price must be within the per-click cap and the origin's spending of
  the UTC day within the daily cap, checked in the store transaction that
  moves the coin's index (:func:`ewallet_client.store.ranges.allocate`);
  the reader's own spending limits (``netpay wallet limits``) apply in that
  same transaction, on top of the bridge's caps.

A payment through the bridge runs the wallet's auto-load agreement like any
other (its outcome is logged; a failure never fails the payment).

``POST /v1/window`` (``{"url", "units"}``) does the same for a cookie-cache
window of ``units`` words (1..``MAX_WINDOW_UNITS``): the price the URL's
challenge names must be within the per-click cap, and units times the coin's
unit value counts against the daily cap in the transaction that moves the
index. The page then POSTs the header to ``window_url`` itself, so the
browser — not the wallet — receives the window's cookie.

CORS headers (``Access-Control-Allow-Origin: <origin>``, never ``*``) go
to approved origins only, so another site's script cannot even read an answer.

The package's rooms: :mod:`~ewallet_client.bridge.rules` (addresses,
origins, caps), :mod:`~ewallet_client.bridge.service` (the use cases over
one :class:`~ewallet_client.wallet.Wallet`), :mod:`~ewallet_client.bridge.web`
(the Flask app: who may ask, errors mapped in one place) and
:mod:`~ewallet_client.bridge.server` (serving it on loopback).
"""

from ewallet_client.bridge.rules import (
    BRIDGE_SCRIPT,
    DEFAULT_LISTEN,
    DEFAULT_MAX_CLICK_MINOR,
    DEFAULT_MAX_DAY_MINOR,
    MAX_BODY_BYTES,
    MAX_URL_CHARS,
    BridgeCaps,
    check_bridge_address,
    check_cap,
    normalize_origin,
    utc_day,
)
from ewallet_client.bridge.server import BridgeHandle, start_bridge
from ewallet_client.bridge.service import Bridge, BridgeApi
from ewallet_client.bridge.web import create_app

__all__ = [
    "BRIDGE_SCRIPT",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_CLICK_MINOR",
    "DEFAULT_MAX_DAY_MINOR",
    "MAX_BODY_BYTES",
    "MAX_URL_CHARS",
    "Bridge",
    "BridgeApi",
    "BridgeCaps",
    "BridgeHandle",
    "check_bridge_address",
    "check_cap",
    "create_app",
    "normalize_origin",
    "start_bridge",
    "utc_day",
]
