"""`gpu-reactor run` as a process: real Postgres, the fake Runpod, its HTTP surface."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from reactor.db.embedded import free_port
from reactor.ops.status import StatusView
from tests.fakes import run_fake_runpod
from tests.pg import WORKER_PASSWORD
from tests.util import wait_until

TOKEN = "run-token-2c8e11"


async def _get(http: aiohttp.ClientSession, url: str, **kwargs: object) -> tuple[int, str]:
    try:
        async with http.get(url, **kwargs) as resp:  # type: ignore[arg-type]
            return resp.status, await resp.text()
    except aiohttp.ClientError:
        return 0, ""


async def test_gpu_reactor_run_serves_and_stops_on_sigterm(
    db_dsn: str, worker_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "reactor.log"
    async with run_fake_runpod() as runpod, aiohttp.ClientSession() as http:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": db_dsn,
            "WORKER_DATABASE_URL": worker_dsn,
            "REACTOR_PROVIDER": "runpod",
            "RUNPOD_API_URL": runpod.url,
            "RUNPOD_API_KEY": runpod.api_key,
            "RUNPOD_GPU_TYPES": "NVIDIA GeForce RTX 4090",
            "REACTOR_HTTP_PORT": str(port),
            "REACTOR_HTTP_TOKEN": TOKEN,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "LISTENER_CHECK_INTERVAL_SEC": "1",
        }
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "reactor",
                "run",
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:

            async def ready() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"gpu-reactor run exited: {log_path.read_text()[-2000:]}")
                return (await _get(http, f"{base}/readyz"))[0] == 200

            await wait_until(ready, timeout=20, what="/readyz to answer 200")

            await conn.execute("INSERT INTO tasks (task_type) VALUES ('echo')")
            await runpod.wait_for_create(timeout=10)
            auth = {"Authorization": f"Bearer {TOKEN}"}

            async def status_with_pod() -> StatusView | None:
                code, body = await _get(http, f"{base}/status", headers=auth)
                view = StatusView.model_validate_json(body) if code == 200 else None
                return view if view and any(w.pod_id for w in view.workers) else None

            view = await wait_until(
                status_with_pod, timeout=10, what="a worker with a pod in /status"
            )
            assert view.role == "leader" and view.provider == "runpod"
            assert {w.pod_id for w in view.workers} == set(runpod.pods)

            code, text = await _get(http, f"{base}/metrics")
            assert code == 200
            found = {
                (s.name, s.labels.get("outcome"))
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.value
            }
            assert ("gpu_reactor_spawns_total", "ok") in found
            assert ("gpu_reactor_provider_requests_total", "ok") in found
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(proc.wait(), 30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        assert code == 0, log_path.read_text()[-2000:]
    logs = log_path.read_text()
    assert '"event":"http_listening"' in logs and '"event":"stopped"' in logs
    for secret in (runpod.api_key, WORKER_PASSWORD, TOKEN):
        assert secret not in logs
