"""Server process lifecycle: the stop signals and the one JSON ready line."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading

__all__ = [
    "PARENT_PID_ENV",
    "child_env",
    "die_with_parent",
    "install_stop_handlers",
    "print_ready",
]

# Set by a launcher (the demo, the vendor for its gunicorn) to its own pid: a
# child that finds it asks the kernel for SIGTERM when that parent dies, so a
# launcher killed with SIGKILL leaves no server behind holding its ports.
PARENT_PID_ENV = "NETPAY_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that must not outlive this process."""
    return {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """If a launcher asked for it (PARENT_PID_ENV), stop when it dies (Linux only).

    Call from the main thread early in the child. The parent may already be
    gone by then: the pid check after prctl closes that race.
    """
    expected = os.environ.get(PARENT_PID_ENV, "")
    if not expected.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGTERM)


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
