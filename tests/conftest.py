from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from reactor.engine.supervision import task_stack
from tests.pg import WORKER_LOGIN, WORKER_PASSWORD, PgServer, start_server

SETTLE_STEPS = 20  # loop iterations a task cancelled at the very end gets to finish


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long fault soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_task_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an async test that leaves asyncio tasks running when its event loop closes
    (pytest-asyncio would cancel them silently). Checked after the test's own fixtures
    are torn down, so a fixture's server or connection counts too."""
    if not inspect.iscoroutinefunction(getattr(request.node, "obj", None)):
        yield
        return
    runner = request.getfixturevalue("_function_scoped_runner")
    yield
    left = runner.run(_still_running())
    if left:
        where = "\n".join(f"- {t.get_name()}:\n{task_stack(t)}" for t in left)
        pytest.fail(f"the test left {len(left)} asyncio task(s) running:\n{where}", False)


async def _still_running() -> list[asyncio.Task[object]]:
    for _ in range(SETTLE_STEPS):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    return sorted(
        (t for t in asyncio.all_tasks() if t is not current and not t.done()),
        key=lambda t: t.get_name(),
    )


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
