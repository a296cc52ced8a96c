"""The demo's database: a fresh one in an embedded PostgreSQL, or the user's own.

Embedded (the default): the cluster lives in ``<data dir>/demo-pg`` and is kept between
runs (initdb once); each run drops and re-creates the database ``gpu_reactor_demo``,
migrates it and makes sure a login in the least-privilege ``gpu_worker`` role exists, so
the workers connect the way a pod should. ``stop()`` stops the server and makes sure the
postmaster it started is gone.

``--database-url``: migrated, and refused unless idle (no open task, no live worker):
the demo adds tasks and workers of its own and must not mix with anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from reactor.db.connect import connect
from reactor.db.embedded import EmbeddedPostgres
from reactor.db.migrate import migrate
from reactor.demo.workload import process_alive
from reactor.errors import ConfigError
from reactor.logs import register_secrets

log = logging.getLogger("reactor.demo.command")

DEMO_DATABASE = "gpu_reactor_demo"
WORKER_LOGIN = "gpu_reactor_demo_worker"
EXIT_WAIT_SEC = 5.0  # per attempt to stop the postmaster

CREATE_WORKER_LOGIN = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WORKER_LOGIN}') THEN
        CREATE ROLE {WORKER_LOGIN} LOGIN IN ROLE gpu_worker;
    END IF;
END
$$
"""
OPEN_WORK = """
SELECT (SELECT count(*) FROM tasks WHERE status IN ('Queued', 'In Progress')) AS open,
       (SELECT count(*) FROM workers WHERE status IN ('spawning', 'active', 'terminating')) AS live
"""


def with_database(dsn: str, database: str, user: str | None = None) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rsplit('@', 1)[-1]}"
    return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, parts.fragment))


class DemoDatabase:
    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.database_url = database_url
        self.pg = None if database_url else EmbeddedPostgres(data_dir / "demo-pg")
        self.pg_pid: int | None = None
        self.dsn = self.worker_dsn = self.where = ""

    async def open(self) -> None:
        if self.pg is None:
            await self._external()
        else:
            await self._embedded(self.pg)

    async def _external(self) -> None:
        assert self.database_url is not None
        register_secrets([self.database_url])
        conn = await connect(self.database_url)
        try:
            await migrate(conn)
            row = await conn.fetchrow(OPEN_WORK)
        finally:
            await conn.close()
        if row["open"] or row["live"]:
            raise ConfigError(
                f"the demo needs an idle database: --database-url has "
                f"{row['open']} open task(s) and {row['live']} live worker(s)"
            )
        self.dsn = self.worker_dsn = self.database_url
        self.where = "the database of --database-url (the workers use the same login)"

    async def _embedded(self, pg: EmbeddedPostgres) -> None:
        admin = await asyncio.to_thread(pg.start)
        self.pg_pid = _postmaster_pid(pg.datadir)
        conn = await connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        finally:
            await conn.close()
        self.dsn = with_database(admin, DEMO_DATABASE)
        conn = await connect(self.dsn)
        try:
            applied = await migrate(conn)
            await conn.execute(CREATE_WORKER_LOGIN)
        finally:
            await conn.close()
        self.worker_dsn = with_database(self.dsn, DEMO_DATABASE, user=WORKER_LOGIN)
        self.where = (
            f"embedded PostgreSQL ({pg.source}) on 127.0.0.1:{pg.port}, a fresh "
            f"database '{DEMO_DATABASE}' ({len(applied)} migrations); workers log in "
            f"as '{WORKER_LOGIN}' (role gpu_worker)"
        )

    async def stop(self) -> None:
        """pg_ctl stop, then make sure: the postmaster this demo started must be gone."""
        if self.pg is None:
            return
        await asyncio.to_thread(self.pg.stop)
        if self.pg_pid is None:
            return
        # EmbeddedPostgres.stop() does nothing when pg_ctl cannot reach the data directory
        # (it reads that as "not running"); signal the postmaster itself then.
        for sig in (None, signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            if sig is not None:
                log.warning(
                    "demo_postgres_signalled", extra={"pid": self.pg_pid, "signal": sig.name}
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pg_pid, sig)
            if await _exited(self.pg_pid, EXIT_WAIT_SEC):
                return


async def _exited(pid: int, timeout: float) -> bool:
    for _ in range(int(timeout / 0.05)):
        if not process_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return not process_alive(pid)


def _postmaster_pid(datadir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((datadir / "postmaster.pid").read_text().splitlines()[0])
    return None
