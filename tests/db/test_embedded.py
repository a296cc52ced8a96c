"""reactor/db/embedded.py: a throwaway cluster that starts, keeps its data across a restart
and is gone after destroy()."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from reactor.db.embedded import EmbeddedPostgres, find_binaries
from reactor.errors import ConfigError

TOO_SLOW_SEC = 5.0


async def _query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_a_second_cluster_starts_restarts_with_its_data_and_is_destroyed(tmp_path: Path) -> None:
    try:
        find_binaries()
    except ConfigError as exc:
        pytest.skip(f"no PostgreSQL binaries here: {exc}")
    datadir = tmp_path / "cluster" / "data"
    cluster = EmbeddedPostgres(datadir)
    try:
        began = time.monotonic()
        dsn = cluster.start()
        if time.monotonic() - began > TOO_SLOW_SEC:
            pytest.skip("starting a cluster takes too long on this machine")
        assert cluster.running() and cluster.initialised()
        port = cluster.port
        asyncio.run(_query(dsn, "CREATE TABLE kept AS SELECT 42 AS answer"))

        # start() on a running cluster is a no-op that reports the same DSN.
        assert EmbeddedPostgres(datadir).start() == dsn

        cluster.stop()
        assert not cluster.running()
        assert cluster.start() == dsn
        assert cluster.port == port
        assert asyncio.run(_query(dsn, "SELECT answer FROM kept")) == 42

        cluster.restart()
        assert asyncio.run(_query(dsn, "SELECT answer FROM kept")) == 42
    finally:
        cluster.destroy()
    assert not datadir.exists()
    assert not cluster.running()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        asyncio.run(_query(dsn, "SELECT 1"))
