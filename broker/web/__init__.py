"""The broker's web portal (Flask): one blueprint per area -- ``accounts`` (register,
log in, log out), ``profile`` (personal data, limits, password), ``instruments``,
``coins``, ``directory`` (the newspapers) and ``wallets`` (buying a server-side
wallet at ``/wallets/buy``, and the wallet sign-in a newspaper redirects readers
to at ``/wallet/signin``, contract in docs/protocol.md "Server-side wallets") --
made into one app by :func:`create_app` (``broker.web.app``).

The purchase form carries a random request id made when it is rendered and
remembered in the session (the last few); ``buy_coin`` is idempotent by request
id, so submitting the same form twice returns the same coin and charges once.

Views only translate: each reads a length-limited form, calls one
:class:`broker.services.BrokerServices` method in process (never the
broker's own gRPC) and renders the answer; a NetPayError becomes a friendly
HTML page with its HTTP status (``broker.web.common.error_page``, and the
app's one error handler for what a view does not render itself). The app is
a plain WSGI app made by :func:`create_app`, served in the broker process
(``broker.server``) or by any WSGI server.

Security: every POST carries a CSRF token bound to the session (compared
with ``secrets.compare_digest``; missing or wrong -> 400 before the view
runs). The session cookie is HttpOnly and SameSite=Lax (Lax, not Strict:
the reader arrives from a newspaper's page by a top-level link or redirect
and must find their broker session there), and Secure with the ``__Host-``
prefix when the portal is not on a loopback address. The cookie carries an
opaque portal-session token whose hash is stored by the broker, so logging
out ends the session for good. Passwords are never logged nor echoed.
"""

from __future__ import annotations

from broker.web.app import COOKIE_NAME, SECURE_COOKIE_NAME, create_app
from broker.web.common import PortalDeps
from netpay.webforms import CSRF_FIELD

__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "SECRET_FILE",
    "SECURE_COOKIE_NAME",
    "PortalDeps",
    "create_app",
]

# The session cookie's signing key, in the broker's data dir (0600).
SECRET_FILE = "web-secret.key"
