"""The seed system's database (banodoco/Reigh's Supabase schema) on a plain PostgreSQL.

``load_seed(conn, dependencies)`` runs the files of tests/seed/sql in order on an empty
database: Supabase's stand-ins, the tables, the sample rows, the functions, one of the
two shapes of ``tasks.dependant_on`` and the views. The constants below name the rows
the tests talk about; tests/seed/README.md says what each part comes from.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Literal

import asyncpg

SQL_DIR = Path(__file__).parent / "sql"

Dependencies = Literal["single", "array"]
# "single": tasks.dependant_on uuid (databases before Reigh's 20260121000000 migration);
# "array": uuid[] with the all-dependencies rule (the current schema).
DEPENDENCIES: tuple[Dependencies, ...] = ("single", "array")

_COMMON_BEFORE = ("00_supabase.sql", "10_tables.sql", "20_rows.sql", "30_functions.sql")
_COMMON_AFTER = ("50_views.sql", "60_grants.sql")

ALICE = "00000000-0000-4000-a000-000000000001"  # has credits
BOB = "00000000-0000-4000-a000-000000000002"  # no credits
ALICE_PROJECT = "00000000-0000-4000-b000-000000000001"
BOB_PROJECT = "00000000-0000-4000-b000-000000000002"

DONE_IMAGE = "00000000-0000-4000-c000-000000000001"  # Complete
FAILED_IMAGE = "00000000-0000-4000-c000-000000000002"  # Failed
ORCHESTRATOR = "00000000-0000-4000-c000-000000000010"  # travel_orchestrator, In Progress
SEGMENT_0 = "00000000-0000-4000-c000-000000000011"  # Queued, no dependency: ready
SEGMENT_1 = "00000000-0000-4000-c000-000000000012"  # Queued, waits for SEGMENT_0
STITCH = "00000000-0000-4000-c000-000000000013"  # Queued, waits for SEGMENT_1 (array: both)
API_TASK = "00000000-0000-4000-c000-000000000020"  # image_upscale, run_type api
BOB_TASK = "00000000-0000-4000-c000-000000000030"  # single_image of a user without credits

CHAIN = (SEGMENT_0, SEGMENT_1, STITCH)  # the order the seed's claim hands them out
QUEUED = (*CHAIN, API_TASK, BOB_TASK)
READY_GPU = (SEGMENT_0,)  # what a GPU worker could claim right now

SEED_WORKER = "gpu-20260102_120000-5eed0001"  # active, heartbeating, holds ORCHESTRATOR
OLD_WORKER = "gpu-20260101_080000-0ld00001"  # terminated
SEED_WORKER_INSTANCE_TYPE = "NVIDIA GeForce RTX 4090"

# The claims of Supabase's service-role key (what the edge functions and the workers use).
SERVICE_ROLE_CLAIMS: dict[str, object] = {"role": "service_role", "iss": "supabase"}


def seed_files(dependencies: Dependencies) -> list[Path]:
    names = (*_COMMON_BEFORE, f"40_dependencies_{dependencies}.sql", *_COMMON_AFTER)
    return [SQL_DIR / name for name in names]


async def load_seed(conn: asyncpg.Connection, dependencies: Dependencies) -> None:
    """Create the seed's schema and rows on the empty database ``conn`` is on."""
    async with conn.transaction():
        for path in seed_files(dependencies):
            await conn.execute(path.read_text())


@asynccontextmanager
async def as_role(
    conn: asyncpg.Connection, role: str, claims: dict[str, object] | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """One transaction run the way PostgREST runs a request: SET LOCAL ROLE and the
    JWT's claims in request.jwt.claims, both gone when the transaction ends."""
    async with conn.transaction():
        await conn.execute(f'SET LOCAL ROLE "{role}"')
        await conn.execute(
            "SELECT set_config('request.jwt.claims', $1, true)",
            json.dumps(claims if claims is not None else {"role": role}),
        )
        yield conn


def as_service_role(conn: asyncpg.Connection) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """What an edge function's supabase-js client (the service-role key) runs as."""
    return as_role(conn, "service_role", SERVICE_ROLE_CLAIMS)
