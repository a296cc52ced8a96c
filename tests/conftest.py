from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.pg import WORKER_LOGIN, WORKER_PASSWORD, PgServer, start_server


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long fault soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    yield server
    server.close()


@pytest.fixture
def db_name(pg_server: PgServer) -> Iterator[str]:
    name = asyncio.run(pg_server.create_database())
    yield name
    asyncio.run(pg_server.drop_database(name))


@pytest.fixture
def db_dsn(pg_server: PgServer, db_name: str) -> str:
    """DSN of a fresh, migrated database owned by this test."""
    return pg_server.dsn(db_name)


@pytest.fixture
def worker_dsn(pg_server: PgServer, db_name: str) -> str:
    """DSN of the same database, logged in as a member of the gpu_worker role."""
    return pg_server.dsn(db_name, user=WORKER_LOGIN, password=WORKER_PASSWORD)


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_dsn)
    yield connection
    await connection.close()
