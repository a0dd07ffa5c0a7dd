"""The operator's dashboard login: password hash, web secret key, attempt limits.

Files in the vendor's data dir, both mode 0600:

- ``dashboard-password.argon2``: the operator password as an Argon2id hash,
  written by ``netpay vendor serve --dashboard-password-file F``; later
  starts need no flag. No file: the dashboard is disabled.
- ``web-secret.key``: the key that signs the dashboard's session cookie, made
  by the vendor's main process at first start. Every web worker (gunicorn or
  in process) reads this one file, so a session made by one worker is valid
  in all of them.

Login attempts are limited **per process** (:class:`LoginLimiter`): with N
gunicorn workers an address gets at most N x 5 wrong passwords per 5
minutes, each costing an Argon2id verification.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from netpay.errors import InvalidArgument, PermissionDenied
from netpay.files import load_or_create_secret, read_secret, write_private

__all__ = [
    "PASSWORD_FILE",
    "PASSWORD_MAX_CHARS",
    "PASSWORD_MIN_CHARS",
    "SECRET_FILE",
    "LoginLimiter",
    "ensure_secret_key",
    "load_password_hash",
    "password_hasher",
    "password_tag",
    "read_password_file",
    "read_secret_key",
    "set_dashboard_password",
    "verify_password",
]

PASSWORD_FILE = "dashboard-password.argon2"
SECRET_FILE = "web-secret.key"
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 1024
_MAX_FILE_BYTES = 4096


def password_hasher() -> PasswordHasher:
    """Argon2id with the broker's parameters (OWASP's second option)."""
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def _check_password(password: str) -> str:
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise InvalidArgument(
            f"the dashboard password must have {PASSWORD_MIN_CHARS}..{PASSWORD_MAX_CHARS} "
            "characters"
        )
    return password


def read_password_file(text: str) -> str:
    """The password in a password file's text: its first line, without the line end."""
    first = text.split("\n", 1)[0].removesuffix("\r")
    return _check_password(first)


def set_dashboard_password(data_dir: Path, password: str) -> None:
    """Store the operator password's Argon2id hash in the data dir (0600)."""
    digest = password_hasher().hash(_check_password(password))
    write_private(data_dir / PASSWORD_FILE, (digest + "\n").encode())


def _read_private(path: Path) -> bytes | None:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise PermissionDenied(f"{path} must be mode 0600, is {mode:04o}")
    with path.open("rb") as f:
        return f.read(_MAX_FILE_BYTES)


def load_password_hash(data_dir: Path | None) -> str | None:
    """The stored hash, or None when no dashboard password was set."""
    if data_dir is None:
        return None
    raw = _read_private(data_dir / PASSWORD_FILE)
    if raw is None:
        return None
    digest = raw.decode("ascii", "replace").strip()
    return digest or None


def verify_password(digest: str, password: str) -> bool:
    if not 0 < len(password) <= PASSWORD_MAX_CHARS:
        return False
    try:
        return password_hasher().verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_tag(digest: str) -> str:
    """A short fingerprint of the hash, kept in the session: a new password ends old sessions."""
    return hashlib.sha256(digest.encode()).hexdigest()[:16]


def ensure_secret_key(data_dir: Path) -> bytes:
    """The web secret key; made (0600) when missing. Called by the main process only."""
    return load_or_create_secret(data_dir / SECRET_FILE)


def read_secret_key(data_dir: Path) -> bytes:
    """The web secret key the main process made (web workers never make one)."""
    try:
        return read_secret(data_dir / SECRET_FILE)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{data_dir / SECRET_FILE} is missing or unreadable: {exc}") from exc


class LoginLimiter:
    """Wrong passwords per client address in a sliding window, in this process.

    Memory is bounded: at most ``max_clients`` addresses are tracked; when
    full, expired entries are dropped, then the oldest address.
    """

    def __init__(
        self, *, max_failures: int = 5, window_s: int = 300, max_clients: int = 10_000
    ) -> None:
        self.max_failures = max_failures
        self.window_ms = window_s * 1000
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._failures: dict[str, list[int]] = {}

    def retry_after_s(self, client: str, now_ms: int) -> int:
        """0 when ``client`` may try now, else the seconds until it may."""
        with self._lock:
            recent = self._recent(client, now_ms)
            if len(recent) < self.max_failures:
                return 0
            return max(1, -(-(recent[0] + self.window_ms - now_ms) // 1000))

    def failed(self, client: str, now_ms: int) -> None:
        with self._lock:
            recent = self._recent(client, now_ms)
            if client not in self._failures and len(self._failures) >= self._max_clients:
                self._evict(now_ms)
            recent.append(now_ms)
            self._failures[client] = recent[-self.max_failures :]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now_ms: int) -> list[int]:
        return [t for t in self._failures.get(client, ()) if t > now_ms - self.window_ms]

    def _evict(self, now_ms: int) -> None:
        for key in [k for k, v in self._failures.items() if v[-1] <= now_ms - self.window_ms]:
            del self._failures[key]
        while len(self._failures) >= self._max_clients:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]
