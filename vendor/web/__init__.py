"""The newspaper web site (Flask): articles, the 402 challenge, paid clicks,
windows, server-side wallet sign-in and the operator's dashboard.

Views only translate: a paid click calls ``VendorServices.pay`` in process
(not the vendor's gRPC), and a NetPayError rises to the one error handler
(errors.py), which answers it as the view asked (pages.py renders it).

==============  ================================================================
``app``         :func:`create_app`, the app factory
``site``        blueprint "site": the front page, the articles and the paid click
``windows``     blueprint "windows": open and close cookie-cache windows
``wallet``      blueprint "wallet": server-side wallet sign-in
``dashboard``   blueprint "dashboard": the operator's dashboard and its login
``api``         blueprint "api": ``/healthz``, ``/api/articles``, ``/netpay/bridge.js``
``errors``      NetPayError -> HTTP answer, in one place
``pages``       the payment pages: 402, the paid article, an error's page
``common``      the site's dependencies, negotiation, challenges, the cookie helper
==============  ================================================================
"""

from vendor.web.app import create_app
from vendor.web.common import (
    BALANCE_HEADER,
    RECEIPT_HEADER,
    WALLET_COOKIE,
    WINDOW_COOKIE,
    WINDOW_HEADER,
    WebDeps,
    format_money,
)

__all__ = [
    "BALANCE_HEADER",
    "RECEIPT_HEADER",
    "WALLET_COOKIE",
    "WINDOW_COOKIE",
    "WINDOW_HEADER",
    "WebDeps",
    "create_app",
    "format_money",
]
