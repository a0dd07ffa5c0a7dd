"""Private files and data directories (keys, tokens, wallet stores: mode 0600)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = [
    "ensure_private_dir",
    "load_or_create_secret",
    "read_json",
    "read_secret",
    "write_private",
]


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600 and fsync."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        value = json.load(f)
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return value


def read_secret(path: Path, nbytes: int = 32) -> bytes:
    """A secret written by :func:`load_or_create_secret`; it must be 0600 and whole."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} must be mode 0600, is {mode:04o}")
    secret = path.read_bytes()
    if len(secret) != nbytes:
        raise ValueError(f"{path} must hold {nbytes} bytes")
    return secret


def load_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """The random secret at ``path`` (a session signing key, say), made 0600 if missing."""
    if path.exists():
        return read_secret(path, nbytes)
    secret = secrets.token_bytes(nbytes)
    write_private(path, secret)
    return secret
