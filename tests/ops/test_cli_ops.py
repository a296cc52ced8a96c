"""Every operator subcommand end to end against real Postgres (and the fake Runpod)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest

from reactor.ops.status import StatusView
from tests.fakes import FakeRunpod, run_fake_runpod
from tests.ops.conftest import Cli, dsn_with_secret
from tests.pg import WORKER_PASSWORD

API_KEY = "rpa_cli_secret_0b7d55"
HELP = [
    [],
    ["status"],
    ["check"],
    ["workers"],
    ["workers", "list"],
    ["workers", "spawn"],
    ["workers", "drain"],
    ["workers", "terminate"],
    ["tasks"],
    ["tasks", "create"],
    ["tasks", "list"],
    ["dashboard"],
    ["run"],
    ["once"],
    ["migrate"],
]


def one_line_error(result: object, fragment: str) -> None:
    code, out, err = result.code, result.out, result.err  # type: ignore[attr-defined]
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in out + err


async def active_worker(
    conn: asyncpg.Connection, worker_id: str, *, claim: bool = False
) -> str | None:
    """Play a worker: a heartbeat registers it active; optionally claim a task."""
    assert (
        await conn.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat($1)", worker_id)
        == "active"
    )
    if claim:
        return str(
            await conn.fetchval(
                "SELECT id FROM gpu_reactor.func_claim_available_task($1)", worker_id
            )
        )
    return None


@pytest.mark.parametrize("argv", HELP, ids=lambda a: " ".join(a) or "top")
def test_every_subcommand_has_help_without_secrets(cli: Cli, argv: list[str]) -> None:
    result = cli(
        *argv, "--help", DATABASE_URL="postgresql://u:help-pass-91@db/x", RUNPOD_API_KEY=API_KEY
    )
    assert result.code == 0
    assert result.out.startswith("usage: gpu-reactor")
    assert "help-pass-91" not in result.text and API_KEY not in result.text


def test_tasks_create_and_list(cli: Cli, db_dsn: str) -> None:
    made = cli(
        "tasks",
        "create",
        "--type",
        "echo",
        "--params",
        '{"n": 1}',
        "--count",
        "3",
        "--priority",
        "5",
        DATABASE_URL=db_dsn,
    )
    assert made.code == 0 and "queued 3 task(s) of type echo" in made.out
    listed = cli("tasks", "list", "--status", "queued", "--json", DATABASE_URL=db_dsn)
    rows = orjson.loads(listed.out)
    assert [(r["task_type"], r["status"], r["priority"]) for r in rows] == [
        ("echo", "Queued", 5)
    ] * 3
    table = cli("tasks", "list", "--limit", "2", DATABASE_URL=db_dsn)
    assert table.code == 0 and table.out.count("Queued") == 2
    assert sum(r["id"] in table.out for r in rows) == 2  # full ids, not cut by the table

    one_line_error(
        cli("tasks", "create", "--type", "echo", "--params", "{nope", DATABASE_URL=db_dsn),
        "--params is not valid JSON",
    )
    one_line_error(
        cli("tasks", "create", "--type", "echo", "--params", "[1, 2]", DATABASE_URL=db_dsn),
        "--params must be a JSON object",
    )
    again = cli("tasks", "list", "--json", DATABASE_URL=db_dsn)
    assert len(orjson.loads(again.out)) == 3  # nothing inserted by the bad ones
    bad_status = cli("tasks", "list", "--status", "bogus", DATABASE_URL=db_dsn)
    assert bad_status.code == 2 and "unknown task status" in bad_status.err


async def test_status_json_and_table(cli: Cli, db_dsn: str, conn: asyncpg.Connection) -> None:
    dsn, secret = dsn_with_secret(db_dsn)
    await conn.execute("INSERT INTO tasks (task_type) SELECT 'echo' FROM generate_series(1, 4)")
    task_id = await active_worker(conn, "gpu-reactor-cafe0001", claim=True)
    result = await asyncio.to_thread(
        cli, "status", "--json", DATABASE_URL=dsn, RUNPOD_API_KEY=API_KEY
    )
    assert result.code == 0, result.err
    view = StatusView.model_validate_json(result.out)
    assert view.role == "cli" and view.leader_present is False
    assert view.queue is not None and (view.queue.queued, view.queue.in_progress) == (3, 1)
    assert view.queue.desired_workers == 2
    [worker] = view.workers
    assert (worker.id, worker.health, worker.current_task_id) == (
        "gpu-reactor-cafe0001",
        "busy",
        task_id,
    )
    assert any(a.kind == "spawn" and a.worker_id == worker.id for a in view.actions)
    table = await asyncio.to_thread(cli, "status", DATABASE_URL=dsn, RUNPOD_API_KEY=API_KEY)
    assert table.code == 0
    assert "gpu-reactor-cafe0001" in table.out and "3 queued" in table.out
    assert "NO reactor holds the leader lock" in table.out
    for text in (result.text, table.text):
        assert secret not in text and API_KEY not in text


async def test_workers_list_drain_terminate(
    cli: Cli, db_dsn: str, conn: asyncpg.Connection
) -> None:
    env = {"DATABASE_URL": db_dsn, "REACTOR_PROVIDER": "local"}
    await conn.execute("INSERT INTO tasks (task_type) VALUES ('echo')")
    task_id = await active_worker(conn, "gpu-reactor-aaaa0001", claim=True)
    await active_worker(conn, "gpu-reactor-bbbb0002")

    listed = await asyncio.to_thread(cli, "workers", "list", **env)
    assert listed.code == 0
    assert "gpu-reactor-aaaa0001" in listed.out and "gpu-reactor-bbbb0002" in listed.out
    assert "busy" in listed.out and "idle" in listed.out

    drained = await asyncio.to_thread(cli, "workers", "drain", "gpu-reactor-bbbb0002", **env)
    assert drained.code == 0 and "drain ok: gpu-reactor-bbbb0002" in drained.out
    row = await conn.fetchrow(
        "SELECT status, drain_reason FROM workers WHERE id = 'gpu-reactor-bbbb0002'"
    )
    assert row["status"] == "terminating" and "operator" in row["drain_reason"]
    one_line_error(
        await asyncio.to_thread(cli, "workers", "drain", "gpu-reactor-bbbb0002", **env),
        "already draining",
    )
    one_line_error(
        await asyncio.to_thread(cli, "workers", "drain", "no-such-worker", **env),
        "no worker with id 'no-such-worker'",
    )

    # Not a terminal and no --yes: refuse, change nothing.
    one_line_error(
        await asyncio.to_thread(cli, "workers", "terminate", "gpu-reactor-aaaa0001", **env),
        "pass --yes",
    )
    assert (
        await conn.fetchval("SELECT status FROM workers WHERE id = 'gpu-reactor-aaaa0001'")
        == "active"
    )
    ended = await asyncio.to_thread(
        cli, "workers", "terminate", "gpu-reactor-aaaa0001", "--yes", **env
    )
    assert ended.code == 0 and "retire ok: gpu-reactor-aaaa0001" in ended.out
    assert "1 task(s) requeued" in ended.out
    assert (
        await conn.fetchval("SELECT status FROM workers WHERE id = 'gpu-reactor-aaaa0001'")
        == "terminated"
    )
    assert (
        await conn.fetchval("SELECT status::text FROM tasks WHERE id = $1::uuid", task_id)
        == "Queued"
    )
    one_line_error(
        await asyncio.to_thread(cli, "workers", "terminate", "gpu-reactor-aaaa0001", "-y", **env),
        "has already ended (terminated)",
    )
    one_line_error(
        await asyncio.to_thread(cli, "workers", "terminate", "nobody", "--yes", **env),
        "no worker with id 'nobody'",
    )

    with_ended = await asyncio.to_thread(cli, "workers", "list", "--ended", "5", "--json", **env)
    data = orjson.loads(with_ended.out)
    assert [w["worker_id"] for w in data["ended"]] == ["gpu-reactor-aaaa0001"]
    one_line_error(
        await asyncio.to_thread(cli, "workers", "spawn", **env), "REACTOR_PROVIDER=local"
    )


def runpod_env(
    server: FakeRunpod, db_dsn: str, worker_dsn: str, **extra: object
) -> dict[str, object]:
    return {
        "DATABASE_URL": db_dsn,
        "WORKER_DATABASE_URL": worker_dsn,
        "REACTOR_PROVIDER": "runpod",
        "RUNPOD_API_URL": server.url,
        "RUNPOD_API_KEY": server.api_key,
        "RUNPOD_GPU_TYPES": "NVIDIA GeForce RTX 4090",
        "RUNPOD_REQUEST_TIMEOUT_SEC": 5,
        "MAX_ACTIVE_GPUS": 2,
        **extra,
    }


async def test_spawn_check_and_terminate_through_the_runpod_provider(
    cli: Cli, db_dsn: str, worker_dsn: str, conn: asyncpg.Connection
) -> None:
    async with run_fake_runpod() as runpod:
        env = runpod_env(runpod, db_dsn, worker_dsn)
        spawned = await asyncio.to_thread(cli, "workers", "spawn", "--count", "2", **env)
        assert spawned.code == 0, spawned.text
        assert spawned.out.count("spawn ok: gpu-reactor-") == 2
        assert len(runpod.create_calls) == 2
        rows = await conn.fetch(
            "SELECT id, pod_id, status, metadata->>'spawn_reason' AS why FROM workers ORDER BY id"
        )
        assert {r["pod_id"] for r in rows} == set(runpod.pods)
        assert all(r["status"] == "spawning" and "operator" in r["why"] for r in rows)

        one_line_error(
            await asyncio.to_thread(cli, "workers", "spawn", **env),
            "MAX_ACTIVE_GPUS=2 leave room for 0",
        )

        checked = await asyncio.to_thread(cli, "check", **env)
        assert checked.code == 0, checked.text
        for name in ("database", "schema", "listen", "leader", "worker-database", "provider"):
            assert f"PASS {name}" in " ".join(checked.out.split()), checked.out
        assert "2 of fleet 'gpu-reactor'" in checked.out
        assert "all checks passed" in checked.out
        assert WORKER_PASSWORD not in checked.text and runpod.api_key not in checked.text

        victim = rows[0]["id"]
        ended = await asyncio.to_thread(cli, "workers", "terminate", victim, "--yes", **env)
        assert ended.code == 0, ended.text
        assert rows[0]["pod_id"] in runpod.terminated
        assert (
            await conn.fetchval("SELECT status FROM workers WHERE id = $1", victim) == "terminated"
        )

        wrong_key = await asyncio.to_thread(
            cli, "check", "--json", **{**env, "RUNPOD_API_KEY": "rpa_wrong"}
        )
        assert wrong_key.code == 1
        verdicts = {r["name"]: r for r in orjson.loads(wrong_key.out)}
        assert verdicts["provider"]["verdict"] == "FAIL"
        assert verdicts["database"]["verdict"] == "PASS"
        assert verdicts["provider"]["detail"].startswith("API key rejected")  # 401
        assert "RUNPOD_API_KEY" in verdicts["provider"]["detail"]

        runpod.faults.deny(method="GET", path="/pods")  # a valid key without that access
        denied = await asyncio.to_thread(cli, "check", "--json", **env)
        assert denied.code == 1
        [provider] = [r for r in orjson.loads(denied.out) if r["name"] == "provider"]
        assert provider["verdict"] == "FAIL"
        assert "no access to the pod list (GET /v2/pods)" in provider["detail"]
        assert "API key rejected" not in provider["detail"]


def test_check_with_the_local_provider(cli: Cli, db_dsn: str) -> None:
    result = cli("check", DATABASE_URL=db_dsn, REACTOR_PROVIDER="local")
    assert result.code == 0, result.text
    assert "PASS listen" in " ".join(result.out.split())


def test_check_says_what_fails_and_exits_non_zero(cli: Cli) -> None:
    result = cli(
        "check", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", REACTOR_PROVIDER="runpod"
    )
    assert result.code == 1
    words = " ".join(result.out.split())
    assert "FAIL database cannot reach the database" in words
    assert "SKIP listen" in words
    assert "FAIL provider RUNPOD_API_KEY is not set" in words
    assert "verdict: FAIL (database, worker-database, provider)" in words


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (
            ["status"],
            {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
            "cannot reach the database",
        ),
        (["workers", "list"], {"DATABASE_URL": "mysql://x"}, "DATABASE_URL is not a valid DSN"),
        (["tasks", "list"], {}, "DATABASE_URL is not set"),
        (
            ["dashboard", "--export"],
            {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
            "cannot reach the database",
        ),
    ],
)
def test_mistakes_are_one_line(
    cli: Cli, argv: list[str], env: dict[str, str], fragment: str
) -> None:
    one_line_error(cli(*argv, **env), fragment)


def test_missing_api_key_is_one_line(cli: Cli, db_dsn: str, worker_dsn: str) -> None:
    one_line_error(
        cli(
            "workers",
            "spawn",
            DATABASE_URL=db_dsn,
            WORKER_DATABASE_URL=worker_dsn,
            REACTOR_PROVIDER="runpod",
        ),
        "RUNPOD_API_KEY is not set",
    )


def test_a_missing_schema_says_migrate(cli: Cli, pg_server: object) -> None:
    name = asyncio.run(pg_server.create_empty_database())  # type: ignore[attr-defined]
    try:
        one_line_error(
            cli("workers", "list", DATABASE_URL=pg_server.dsn(name)),  # type: ignore[attr-defined]
            "run 'gpu-reactor migrate'",
        )
    finally:
        asyncio.run(pg_server.drop_database(name))  # type: ignore[attr-defined]


def test_the_real_entry_point_prints_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reactor", "workers", "drain", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://u:pw-77ab@127.0.0.1:1/x"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("gpu-reactor: cannot reach the database")
    assert "Traceback" not in proc.stderr and "pw-77ab" not in proc.stderr


def test_dashboard_export_and_frames(cli: Cli, db_dsn: str) -> None:
    cli("tasks", "create", "--type", "echo", "--count", "2", DATABASE_URL=db_dsn)
    exported = cli("dashboard", "--export", DATABASE_URL=db_dsn, MAX_HOURLY_SPEND_USD=5)
    assert exported.code == 0, exported.err
    data = orjson.loads(exported.out)
    assert data["overview"]["queued_tasks"] == 2 and data["cost"]["hourly_burn_usd"] == 0
    assert {a["name"] for a in data["alerts"]} == {"no_leader"}  # the queue is only seconds old
    frames = cli("dashboard", "--iterations", "2", "--interval", "0.05", DATABASE_URL=db_dsn)
    assert frames.code == 0, frames.err
    assert "queue" in frames.out and "no_leader" in frames.out and "echo" in frames.out


async def test_spawn_in_a_pool_uses_its_gpu_type_and_its_caps(
    cli: Cli, db_dsn: str, worker_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    pools = tmp_path / "pools.toml"
    pools.write_text(
        '[pools.big]\ntask_types = ["video_*"]\nrunpod_gpu_types = ["NVIDIA H100 80GB HBM3"]\n'
        'max_active_gpus = 1\n\n[pools.small]\ntask_types = ["*"]\n'
    )
    async with run_fake_runpod() as runpod:
        env = runpod_env(runpod, db_dsn, worker_dsn, POOLS_FILE=str(pools), MAX_ACTIVE_GPUS=3)
        spawned = await asyncio.to_thread(cli, "workers", "spawn", "--pool", "big", **env)
        assert spawned.code == 0, spawned.text
        [call] = runpod.create_calls
        assert call.body["gpu"]["id"] == "NVIDIA H100 80GB HBM3"
        assert call.body["env"]["GPU_REACTOR_POOL"] == "big"
        assert await conn.fetchval("SELECT pool FROM workers") == "big"
        one_line_error(
            await asyncio.to_thread(cli, "workers", "spawn", "--pool", "big", **env),
            "leave room for 0",
        )
        one_line_error(
            await asyncio.to_thread(cli, "workers", "spawn", "--pool", "huge", **env),
            "no pool named 'huge' (POOLS_FILE has big, small)",
        )
        # Unnamed, the first pool: big is full, so that is refused too.
        one_line_error(await asyncio.to_thread(cli, "workers", "spawn", **env), "leave room for 0")
        spawned = await asyncio.to_thread(cli, "workers", "spawn", "--pool", "small", **env)
        assert spawned.code == 0, spawned.text
        assert runpod.create_calls[-1].body["gpu"]["id"] == "NVIDIA GeForce RTX 4090"
