"""The browser library a newspaper page includes to pay through the reader's wallet bridge.

``netpay/static/netpay-bridge.js`` is shared by both sides of the browser
flow: vendors serve it from their own origin, the wallet's bridge answers it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BRIDGE_SCRIPT_PATH"]

BRIDGE_SCRIPT_PATH = Path(__file__).resolve().parent / "static" / "netpay-bridge.js"
