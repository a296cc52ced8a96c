"""Databases holding the seed's schema, cloned per test from templates made once.

A template is an empty database with the fixture loaded (and, for ``migrated_seed``,
gpu-reactor's migrate run on it after); each test gets its own copy, so loading the
fixture and migrating cost once per session, not once per test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from reactor.db.migrate import migrate
from tests.pg import WORKER_LOGIN, WORKER_PASSWORD, PgServer
from tests.seed.fixture import Dependencies, load_seed


class SeedTemplates:
    """Template databases by (dependencies, migrated), made on first use."""

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self._made: dict[tuple[Dependencies, bool], str] = {}
        self._counter = itertools.count()
        self._tag = uuid.uuid4().hex[:6]

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.server.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def template(self, dependencies: Dependencies, migrated: bool) -> str:
        key = (dependencies, migrated)
        if key in self._made:
            return self._made[key]
        name = f"seed_tpl_{dependencies}_{'m' if migrated else 'u'}_{self._tag}"
        if migrated:
            source = await self.template(dependencies, migrated=False)
            await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        else:
            await self._admin(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(self.server.dsn(name))
        try:
            if migrated:
                await migrate(conn)
            else:
                await load_seed(conn, dependencies)
        finally:
            await conn.close()
        self._made[key] = name
        return name

    async def clone(self, dependencies: Dependencies, migrated: bool) -> str:
        template = await self.template(dependencies, migrated)
        name = f"seed_{os.getpid()}_{next(self._counter)}_{self._tag}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    async def drop_templates(self) -> None:
        for name in self._made.values():
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def seed_templates(pg_server: PgServer) -> Iterator[SeedTemplates]:
    templates = SeedTemplates(pg_server)
    yield templates
    asyncio.run(templates.drop_templates())


@pytest.fixture
def dependencies() -> Dependencies:
    """The shape of tasks.dependant_on; parametrize a test over DEPENDENCIES for both."""
    return "array"


def _clone(
    pg_server: PgServer, templates: SeedTemplates, dependencies: Dependencies, migrated: bool
) -> Iterator[str]:
    name = asyncio.run(templates.clone(dependencies, migrated))
    yield name
    asyncio.run(pg_server.drop_database(name))


@pytest.fixture
def seed_name(
    pg_server: PgServer, seed_templates: SeedTemplates, dependencies: Dependencies
) -> Iterator[str]:
    """A database with the seed's schema and rows, gpu-reactor not migrated onto it."""
    yield from _clone(pg_server, seed_templates, dependencies, migrated=False)


@pytest.fixture
def migrated_seed_name(
    pg_server: PgServer, seed_templates: SeedTemplates, dependencies: Dependencies
) -> Iterator[str]:
    """The same after today's ``gpu-reactor migrate``."""
    yield from _clone(pg_server, seed_templates, dependencies, migrated=True)


@pytest.fixture
def seed_dsn(pg_server: PgServer, seed_name: str) -> str:
    return pg_server.dsn(seed_name)


@pytest.fixture
def migrated_seed_dsn(pg_server: PgServer, migrated_seed_name: str) -> str:
    return pg_server.dsn(migrated_seed_name)


@pytest.fixture
def migrated_seed_pod_dsn(pg_server: PgServer, migrated_seed_name: str) -> str:
    """The migrated seed database, logged in as gpu-worker's pods are (the gpu_worker role)."""
    return pg_server.dsn(migrated_seed_name, user=WORKER_LOGIN, password=WORKER_PASSWORD)


@pytest.fixture
async def seed(seed_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(seed_dsn)
    yield connection
    await connection.close()


@pytest.fixture
async def migrated_seed(migrated_seed_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(migrated_seed_dsn)
    yield connection
    await connection.close()
