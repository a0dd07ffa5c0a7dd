"""Server process lifecycle: the stop signals and the one JSON ready line."""

from __future__ import annotations

import json
import signal
import sys
import threading

__all__ = ["install_stop_handlers", "print_ready"]


def install_stop_handlers() -> threading.Event:
    """Route SIGINT and SIGTERM to an event (main thread only).

    Call it BEFORE printing the ready line, so a signal sent as soon as the
    line is read stops the server cleanly instead of killing it.
    """
    stop = threading.Event()

    def _handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    return stop


def print_ready(grpc_address: str, web_url: str | None) -> None:
    sys.stdout.write(json.dumps({"grpc": grpc_address, "web": web_url}) + "\n")
    sys.stdout.flush()
