"""Fixtures for the schema tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.db.support import CHANNEL, Notifications


@pytest.fixture
async def listener(db_dsn: str) -> AsyncIterator[Notifications]:
    notifications = Notifications()
    connection = await asyncpg.connect(db_dsn)
    await connection.add_listener(CHANNEL, notifications.on_notify)
    yield notifications
    await connection.close()
