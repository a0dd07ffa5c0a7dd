"""The one JSON line a server prints on stdout when it is ready."""

from __future__ import annotations

import json
import sys

__all__ = ["print_ready", "wait_for_stop_signal"]


def print_ready(grpc_address: str, web_url: str | None) -> None:
    sys.stdout.write(json.dumps({"grpc": grpc_address, "web": web_url}) + "\n")
    sys.stdout.flush()


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (main thread only)."""
    import signal
    import threading

    stop = threading.Event()

    def _handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    stop.wait()
