"""Security: what the GPU pods' database role can do, and who may read /status.

tests/db/test_roles.py already proves the gpu_worker role is refused the tables, views
and reactor-only functions and cannot complete another worker's task; this adds the
server-level escapes, the attempt fence from a pod's side, what a pod can do to *other*
workers through the functions and the NOTIFY channel, the token check of /status in its
variants and the loopback default of the HTTP server. Secrets in outputs: test_secrets.py.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import psutil
import pytest

from reactor.db.embedded import free_port
from reactor.settings import Settings
from tests.db.support import add_task, add_worker, task_row
from tests.engine.harness import running, runpod_settings
from tests.fakes.runpod_v2 import run_fake_runpod
from tests.faults.rig import FaultRig
from tests.http.conftest import TOKEN, base_url, reactor_settings, serving
from tests.metrics import metric_value
from tests.util import wait_until

DENIED = (asyncpg.InsufficientPrivilegeError, asyncpg.exceptions.FeatureNotSupportedError)


@pytest.fixture
async def pod(worker_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the credentials baked into every GPU pod."""
    connection = await asyncpg.connect(worker_dsn)
    yield connection
    await connection.close()


# --- the gpu_worker role -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "SET ROLE postgres",
        "SELECT pg_read_file('/etc/hostname')",
        "SELECT rolpassword FROM pg_authid",
        "SELECT lo_import('/etc/hostname')",
        "COPY tasks TO STDOUT",
        "COPY (SELECT 1) TO '/tmp/gpu-reactor-escape'",
        "TRUNCATE tasks",
        "BEGIN; LOCK TABLE tasks; ROLLBACK",
        "CREATE TABLE gpu_reactor_shadow (a int)",
        "CREATE FUNCTION now_shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE SCHEMA escape",
        "ALTER ROLE CURRENT_USER CREATEROLE",
        "ALTER FUNCTION gpu_reactor.func_claim_available_task(text, text[]) SECURITY INVOKER",
        "CREATE ROLE intruder LOGIN SUPERUSER",
        "GRANT EXECUTE ON FUNCTION gpu_reactor.func_reset_orphaned_tasks(text[]) TO gpu_worker",
    ],
)
async def test_the_pod_role_cannot_escape_its_functions(pod: asyncpg.Connection, sql: str) -> None:
    with pytest.raises(DENIED):
        await pod.execute(sql)


async def test_the_pod_role_cannot_see_what_other_sessions_run(
    pod: asyncpg.Connection, conn: asyncpg.Connection
) -> None:
    await conn.execute("SELECT 'reactor-session-marker'")
    queries = await pod.fetch("SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
    assert queries and all("marker" not in (r["query"] or "") for r in queries)


async def test_a_stale_attempt_cannot_complete_a_reclaimed_task(
    conn: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    await add_worker(conn, "w1")
    task = await add_task(conn)
    first = await pod.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('w1')")
    assert first is not None and first["attempts"] == 1
    await conn.fetch("SELECT * FROM gpu_reactor.func_requeue_task($1, 'w1', 1, 'stuck')", task)
    again = await pod.fetchrow("SELECT * FROM gpu_reactor.func_claim_available_task('w1')")
    assert again is not None and again["attempts"] == 2
    before = await task_row(conn, task)
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 1)", task)
        is False
    )
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'x', 'w1', 1)", task)
        is False
    )
    assert await task_row(conn, task) == before
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1', 2)", task)
        is True
    )
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'x', 'w1', 2)", task)
        is False
    )


async def test_a_task_nobody_holds_cannot_be_completed_or_failed(
    conn: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    await add_worker(conn, "w1")
    queued = await add_task(conn)
    for worker in ("w1", "", "' OR true --"):
        assert (
            await pod.fetchval(
                "SELECT gpu_reactor.func_mark_task_complete($1, '{}', $2)", queued, worker
            )
            is False
        )
        assert (
            await pod.fetchval(
                "SELECT gpu_reactor.func_mark_task_failed($1, 'x', $2)", queued, worker
            )
            is False
        )
    assert (await task_row(conn, queued))["status"] == "Queued"
    assert (
        await pod.fetchval(
            "SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'w1')", uuid.uuid4()
        )
        is False
    )


async def _holding(pod: asyncpg.Connection, token: str) -> None:
    await pod.execute("SELECT set_config('gpu_reactor.worker_token', $1, false)", token)


@pytest.mark.parametrize(
    "token",
    [None, "", "a-token-of-another-pod", "t0ken"],
    ids=["no token", "empty token", "another pod's token", "a prefix"],
)
async def test_a_pod_cannot_act_in_another_workers_name(
    conn: asyncpg.Connection, pod: asyncpg.Connection, token: str | None
) -> None:
    """Worker ids are no secret (pod names, broadcast on the channel): the reactor gives each
    pod a token and keeps its hash; a session without it changes nothing of that worker."""
    victim_token = "t0ken-of-the-victim-" + secrets.token_hex(8)
    await add_worker(
        conn,
        "victim",
        last_heartbeat=None,
        token_hash=hashlib.sha256(victim_token.encode()).digest(),
    )
    held = await add_task(conn)
    await conn.execute(
        "UPDATE tasks SET status = 'In Progress', worker_id = 'victim', attempts = 1 WHERE id = $1",
        held,
    )
    queued = await add_task(conn)
    if token is not None:
        await _holding(pod, token)
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat('victim', '{}')")
        is None
    )
    assert await pod.fetch("SELECT * FROM gpu_reactor.func_claim_available_task('victim')") == []
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'victim')", held)
        is False
    )
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_failed($1, 'x', 'victim')", held)
        is False
    )
    assert await pod.fetchval("SELECT gpu_reactor.func_report_worker_drained('victim')") is False
    assert await pod.fetchval("SELECT gpu_reactor.func_release_worker_tasks('victim')") == 0
    row = await conn.fetchrow("SELECT last_heartbeat, metadata FROM workers WHERE id = 'victim'")
    assert row["last_heartbeat"] is None and "drained_at" not in row["metadata"]
    assert (await task_row(conn, held))["status"] == "In Progress"
    assert (await task_row(conn, queued))["status"] == "Queued"

    # The pod that holds the token is the worker.
    await _holding(pod, victim_token)
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat('victim', '{}')")
        == "active"
    )
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_mark_task_complete($1, '{}', 'victim')", held)
        is True
    )
    assert [
        r["id"]
        for r in await pod.fetch("SELECT * FROM gpu_reactor.func_claim_available_task('victim')")
    ] == [queued]


async def test_a_worker_that_registers_itself_binds_its_row_to_its_token(
    conn: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    await _holding(pod, "self-registered-" + secrets.token_hex(8))
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat('own', '{}')")
        == "active"
    )
    await _holding(pod, "someone-else-" + secrets.token_hex(8))
    assert (
        await pod.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat('own', '{}')") is None
    )


async def test_a_pod_cannot_drain_another_worker_through_notify(
    db_dsn: str, conn: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    async with (
        run_fake_runpod() as runpod,
        running(runpod_settings(db_dsn, runpod, MAX_ACTIVE_GPUS=1)) as reactor,
    ):
        await conn.execute("INSERT INTO tasks (task_type) VALUES ('echo')")
        await runpod.wait_for_create(timeout=5)
        victim = await wait_until(
            lambda: conn.fetchval("SELECT id FROM workers WHERE pod_id IS NOT NULL"),
            what="a spawned worker",
        )
        await conn.execute(
            "UPDATE workers SET status = 'active', last_heartbeat = now() WHERE id = $1", victim
        )  # as its own heartbeat would
        await pod.execute(
            "SELECT pg_notify('gpu_reactor', json_build_object("
            "'event', 'drain', 'worker_id', $1::text)::text)",
            victim,
        )
        await wait_until(
            lambda: metric_value(reactor.metrics, "gpu_reactor_events_total", event="drain") == 1,
            what="the drain request received",
        )
        await conn.execute("""SELECT pg_notify('gpu_reactor', '{"event":"sweep"}')""")
        reconciles = reactor.state.reconciles
        await wait_until(lambda: reactor.state.reconciles > reconciles, what="a reconcile")
        assert await conn.fetchval("SELECT status FROM workers WHERE id = $1", victim) == "active"

        def refused() -> float:
            return metric_value(
                reactor.metrics, "gpu_reactor_refused_drains_total", reason="worker login"
            )

        assert refused() == 1
        # The same request from the operator's session is honoured.
        await conn.execute(
            "SELECT pg_notify('gpu_reactor', json_build_object("
            "'event', 'drain', 'worker_id', $1::text)::text)",
            victim,
        )
        await wait_until(
            lambda: conn.fetchval(
                "SELECT status = 'terminating' FROM workers WHERE id = $1", victim
            ),
            what="the operator's drain",
        )
        assert refused() == 1


async def test_the_sql_drain_is_the_operators_not_a_pods(
    conn: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    await add_worker(conn, "w1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pod.fetchval("SELECT gpu_reactor.drain('w1')")
    assert await conn.fetchval("SELECT status FROM workers WHERE id = 'w1'") == "active"
    assert await conn.fetchval("SELECT gpu_reactor.drain('w1')") == "terminating"
    row = await conn.fetchrow("SELECT draining_since, drain_reason FROM workers WHERE id = 'w1'")
    assert row["draining_since"] is not None and "operator" in row["drain_reason"]
    assert await conn.fetchval("SELECT gpu_reactor.drain('w1')") == "terminating"  # no-op
    assert await conn.fetchval("SELECT gpu_reactor.drain('nobody')") is None


# --- /status and the HTTP server ---------------------------------------------------------------
WRONG_CREDENTIALS = {
    "no header": {},
    "scheme only": {"Authorization": "Bearer"},
    "empty token": {"Authorization": "Bearer "},
    "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "token plus a character": {"Authorization": f"Bearer {TOKEN}x"},
    "token twice": {"Authorization": f"Bearer {TOKEN}{TOKEN}"},
    "basic auth": {"Authorization": "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode()},
    "bare token": {"Authorization": TOKEN},
    "other header": {"X-Api-Key": TOKEN},
    "cookie": {"Cookie": f"token={TOKEN}"},
}


async def test_status_refuses_every_wrong_credential_and_accepts_the_token(db_dsn: str) -> None:
    settings = reactor_settings(db_dsn)
    url = base_url(settings)
    async with serving(settings), aiohttp.ClientSession() as http:
        for what, headers in WRONG_CREDENTIALS.items():
            async with http.get(f"{url}/status", headers=headers) as resp:
                assert resp.status == 401, what
                assert TOKEN not in await resp.text()
        async with http.get(f"{url}/status", params={"token": TOKEN}) as resp:
            assert resp.status == 401, "token in the query string"
        async with http.get(f"{url}/status", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200


def _listening(pid: int, port: int) -> list[str]:
    return [
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]


async def test_the_http_server_binds_loopback_unless_told_otherwise(rig: FaultRig) -> None:
    assert Settings.model_fields["reactor_http_host"].default == "127.0.0.1"
    port = free_port()
    reactor = rig.start_reactor(REACTOR_HTTP_PORT=port)  # no REACTOR_HTTP_HOST
    try:
        await reactor.wait_for("http_listening")
        addresses = _listening(reactor.popen.pid, port)
        assert addresses == ["127.0.0.1"], addresses
    finally:
        assert await reactor.stop() == 0
