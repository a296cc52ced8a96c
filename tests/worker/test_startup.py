"""Start-up: configuration errors, an unreachable or unprepared database, registration."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.pg import PgServer
from tests.worker.helpers import queue, wait_status, wait_until
from tests.worker.procs import REPO, WorkerProcs, base_env


def run_worker(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker"],
        env=base_env(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DATABASE_URL": "postgresql://u@127.0.0.1/db"},
            "gpu-worker: WORKER_ID is required but not set: this worker's id",
        ),
        ({"WORKER_ID": "w1"}, "gpu-worker: DATABASE_URL is required but not set"),
        (
            {"WORKER_ID": "w1", "DATABASE_URL": "mysql://u:hunter22@h/db"},
            "gpu-worker: DATABASE_URL: must be a postgresql:// URL",
        ),
        (
            {
                "WORKER_ID": "w1",
                "DATABASE_URL": "postgresql://u@h/db",
                "HEARTBEAT_INTERVAL_SEC": "0",
            },
            "gpu-worker: HEARTBEAT_INTERVAL_SEC: Input should be greater than 0 (got '0')",
        ),
        (
            {
                "WORKER_ID": "w1",
                "DATABASE_URL": "postgresql://u@h/db",
                "WORKER_PROCESSORS": "video",
            },
            "gpu-worker: WORKER_PROCESSORS: expected 'task_type=processor', got 'video'",
        ),
        (
            {
                "WORKER_ID": "w1",
                "DATABASE_URL": "postgresql://u@h/db",
                "WORKER_PROCESSORS": "video=command",
            },
            "gpu-worker: WORKER_COMMAND must be set: WORKER_PROCESSORS uses 'command'",
        ),
        (
            {
                "WORKER_ID": "w1",
                "DATABASE_URL": "postgresql://u@h/db",
                "WORKER_PROCESSORS": "video=no_such_pkg.mod:run",
            },
            "gpu-worker: WORKER_PROCESSORS: video=no_such_pkg.mod:run: "
            "cannot import 'no_such_pkg.mod'",
        ),
    ],
    ids=["no-id", "no-dsn", "bad-dsn", "bad-interval", "bad-mapping", "no-command", "bad-import"],
)
def test_invalid_configuration_exits_2_with_one_line(env: dict[str, str], expected: str) -> None:
    result = run_worker(env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert "hunter22" not in result.stderr


def test_an_unreachable_database_exits_1_after_bounded_retries() -> None:
    dsn = f"postgresql://someone:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    result = run_worker(
        {
            "WORKER_ID": "w1",
            "DATABASE_URL": dsn,
            "WORKER_CONNECT_RETRIES": "2",
            "WORKER_RECONNECT_MAX_SEC": "0.2",
        }
    )
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        "gpu-worker: cannot reach the database at postgresql://someone:***@127.0.0.1:"
    ), result.stderr
    assert "after 2 attempts" in last
    assert "s3cret-pw" not in result.stderr


def test_a_database_without_the_schema_exits_1_saying_so(pg_server: PgServer) -> None:
    name = asyncio.run(pg_server.create_empty_database())
    try:
        result = run_worker({"WORKER_ID": "w1", "DATABASE_URL": pg_server.dsn(name)})
    finally:
        asyncio.run(pg_server.drop_database(name))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("gpu-worker: the database at ")
    assert "run 'gpu-reactor migrate' first" in result.stderr


def test_help_lists_the_environment_variables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--help"],
        env=base_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    for name in ("WORKER_ID", "DATABASE_URL", "WORKER_PROCESSORS", "TASK_TIMEOUT_SEC"):
        assert name in result.stdout


FAKE_NVIDIA_SMI = """#!/bin/sh
echo "81920, 1024, NVIDIA A100 80GB PCIe"
echo "81920, 2048, NVIDIA A100 80GB PCIe"
"""


async def metadata(conn: asyncpg.Connection, worker_id: str) -> dict[str, object]:
    raw = await conn.fetchval("SELECT metadata::text FROM workers WHERE id = $1", worker_id)
    return orjson.loads(raw) if raw else {}


async def test_first_heartbeat_registers_the_worker_with_gpu_and_task_metadata(
    conn: asyncpg.Connection, worker_procs: WorkerProcs, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_NVIDIA_SMI)
    smi.chmod(0o755)
    (worker,) = worker_procs.start(
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "WORKER_TASK_TYPES": "sleep"}
    )
    await worker.wait_for_event("worker_started")
    row = await conn.fetchrow("SELECT status, managed FROM workers WHERE id = $1", worker.worker_id)
    assert (row["status"], row["managed"]) == ("active", False)
    meta = await metadata(conn, worker.worker_id)
    assert meta["gpu_name"] == "NVIDIA A100 80GB PCIe"
    assert (meta["gpu_count"], meta["vram_total_mib"], meta["vram_used_mib"]) == (2, 163840, 3072)
    assert (meta["state"], meta["current_task_id"], meta["task_types"]) == ("idle", None, ["sleep"])

    task_id = await queue(conn, "sleep", {"seconds": 1.5, "secret": "do-not-log-me"})
    await wait_until(
        lambda: _current_task(conn, worker.worker_id, str(task_id)),
        what="the heartbeat to report the task in hand",
    )
    await wait_status(conn, task_id, "Complete")
    await wait_until(
        lambda: _current_task(conn, worker.worker_id, None),
        what="the heartbeat to report the worker idle again",
    )
    assert worker_procs.stop_all() == {worker.worker_id: 0}
    assert "do-not-log-me" not in worker.stderr()


async def _current_task(conn: asyncpg.Connection, worker_id: str, expected: str | None) -> bool:
    meta = await metadata(conn, worker_id)
    return meta.get("current_task_id") == expected and (
        meta.get("state") == ("busy" if expected else "idle")
    )
