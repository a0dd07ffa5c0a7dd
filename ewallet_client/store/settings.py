"""The settings aggregate: the one row that pins the broker and keeps the login.

Broker address, pinned broker id and key, reader id, username, token (never
the password) and the limits the broker announced.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ewallet_client.store.records import SETTINGS_FIELDS, Settings
from ewallet_client.store.tables import SettingsRow

__all__ = ["SettingsRepo"]


class SettingsRepo:
    """The single settings row (id 1)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def ensure(self) -> bool:
        """Create the row on a new wallet file; True if this unit created it."""
        if self._s.get(SettingsRow, 1) is not None:
            return False
        try:
            with self._s.begin_nested():
                self._s.add(SettingsRow(id=1))
        except IntegrityError:  # pragma: no cover - a concurrent first start
            return False
        return True

    def get(self) -> Settings:
        row = self._s.get_one(SettingsRow, 1)
        return Settings(**{name: getattr(row, name) for name in SETTINGS_FIELDS})

    def save(self, **changes: object) -> None:
        unknown = set(changes) - SETTINGS_FIELDS
        assert not unknown, unknown
        self._s.execute(update(SettingsRow).where(SettingsRow.id == 1).values(**changes))
