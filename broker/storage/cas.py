"""Compare-and-set plumbing shared by the repositories."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult

__all__ = ["rowcount"]


def rowcount(result: Any) -> int:
    """The rows an ``UPDATE ... WHERE`` or ``DELETE`` matched: 1 when a compare-and-set won."""
    return cast(CursorResult[Any], result).rowcount
