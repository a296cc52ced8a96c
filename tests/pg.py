"""Find a real PostgreSQL for the tests and hand each test its own migrated database.

Order: TEST_DATABASE_URL; else Docker through testcontainers when an engine answers;
else the project's embedded PostgreSQL (reactor/db/embedded.py). A template database
is migrated once per session and cloned per test, which takes milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from reactor.db.embedded import EmbeddedPostgres
from reactor.db.migrate import migrate

WORKER_LOGIN = "gpu_worker_test"
WORKER_PASSWORD = "worker-test-password"


def with_database(
    dsn: str, dbname: str, *, user: str | None = None, password: str | None = None
) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        cred = user if password is None else f"{user}:{password}"
        netloc = f"{cred}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, parts.fragment))


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@dataclass
class PgServer:
    admin_dsn: str
    embedded: EmbeddedPostgres | None = None
    template: str = field(default_factory=lambda: f"gpu_reactor_tpl_{uuid.uuid4().hex[:8]}")
    _counter: itertools.count = field(default_factory=itertools.count)
    _stop: object = None

    @property
    def restartable(self) -> bool:
        return self.embedded is not None

    def dsn(self, dbname: str, **kwargs: str) -> str:
        return with_database(self.admin_dsn, dbname, **kwargs)

    async def prepare_template(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.template}"')
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", WORKER_LOGIN)
        finally:
            await conn.close()
        tpl = await asyncpg.connect(self.dsn(self.template))
        try:
            await migrate(tpl)
            if not exists:
                await tpl.execute(
                    f"CREATE ROLE {WORKER_LOGIN} LOGIN PASSWORD '{WORKER_PASSWORD}'"
                    " IN ROLE gpu_worker"
                )
        finally:
            await tpl.close()

    async def create_database(self) -> str:
        name = f"t_{os.getpid()}_{next(self._counter)}_{uuid.uuid4().hex[:6]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def create_empty_database(self) -> str:
        name = f"e_{os.getpid()}_{next(self._counter)}_{uuid.uuid4().hex[:6]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    def close(self) -> None:
        async def drop_template() -> None:
            try:
                conn = await asyncpg.connect(self.admin_dsn, timeout=5)
            except Exception:
                return
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            finally:
                await conn.close()

        if self.embedded is not None:
            self.embedded.destroy()
            # The mkdtemp() folder start_server() made for it.
            shutil.rmtree(self.embedded.datadir.parent, ignore_errors=True)
        else:
            asyncio.run(drop_template())
        if self._stop is not None:
            self._stop()  # type: ignore[operator]


def start_server() -> PgServer:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        server = PgServer(admin_dsn=url)
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        container = PostgresContainer("postgres:16-alpine", driver=None)
        container.start()
        server = PgServer(admin_dsn=container.get_connection_url())
        server._stop = container.stop
    else:
        datadir = Path(tempfile.mkdtemp(prefix="gpu-reactor-test-pg-")) / "data"
        embedded = EmbeddedPostgres(datadir)
        server = PgServer(admin_dsn=embedded.start(), embedded=embedded)
    asyncio.run(server.prepare_template())
    return server
