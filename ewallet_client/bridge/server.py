"""Serving the bridge: bind a loopback address, answer to that Host only, stop cleanly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ewallet_client.bridge.rules import DEFAULT_LISTEN, BridgeCaps, check_bridge_address
from ewallet_client.bridge.service import Bridge
from ewallet_client.bridge.web import create_app
from ewallet_client.wallet import Wallet

__all__ = ["BridgeHandle", "start_bridge"]


class _QuietHandler(WSGIRequestHandler):
    """No access log: the bridge logs what it authorises, not every request line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class BridgeHandle:
    """A running bridge; ``stop()`` shuts it down (idempotent)."""

    url: str
    bridge: Bridge
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _on_stop: Callable[[], None] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        if self._on_stop is not None:
            self._on_stop()


def start_bridge(
    wallet: Wallet,
    *,
    listen: str = DEFAULT_LISTEN,
    caps: BridgeCaps | None = None,
    close_wallet: bool = False,
) -> BridgeHandle:
    """Serve ``wallet`` on ``listen`` (a loopback ``ip:port``; port 0 picks one)."""
    host, port = check_bridge_address(listen)
    bridge = Bridge(wallet, caps)
    # Bind first (port 0), then build the app that knows its own Host.
    server = make_server(
        host, port, Flask("netpay_bridge_boot"), threaded=True, request_handler=_QuietHandler
    )
    bound = server.server_port
    shown = f"[{host}]" if ":" in host else host
    authority = f"{shown}:{bound}"
    hosts = [authority, shown] if bound == 80 else [authority]  # Host omits a default port
    server.app = create_app(bridge, allowed_hosts=hosts)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="netpay-bridge",
        daemon=True,
    )
    thread.start()
    return BridgeHandle(
        url=f"http://{authority}",
        bridge=bridge,
        _server=server,
        _thread=thread,
        _on_stop=wallet.close if close_wallet else None,
    )
