"""The HTTP surface of a running reactor, end to end: real Postgres, local pods."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.db.embedded import free_port
from reactor.engine.service import Reactor
from reactor.errors import ConfigError
from reactor.http.server import start_http
from reactor.ops.status import StatusView
from tests.http.conftest import (
    API_KEY,
    EXTRA_SECRET,
    TOKEN,
    base_url,
    reactor_settings,
    serving,
)
from tests.pg import WORKER_PASSWORD
from tests.util import wait_until

ROOT = Path(__file__).resolve().parents[2]

# What the issue asks /metrics to carry (counter families are named without _total).
FAMILIES = {
    "gpu_reactor_tasks",
    "gpu_reactor_workers",
    "gpu_reactor_queue_oldest_age_seconds",
    "gpu_reactor_reaction_latency_seconds",
    "gpu_reactor_reconcile_duration_seconds",
    "gpu_reactor_provider_requests",
    "gpu_reactor_spawns",
    "gpu_reactor_terminations",
    "gpu_reactor_tasks_requeued",
    "gpu_reactor_events",
    "gpu_reactor_malformed_events",
    "gpu_reactor_leader",
    "gpu_reactor_hourly_burn_usd",
    "gpu_reactor_listener_reconnects",
    "gpu_reactor_last_sweep_timestamp_seconds",
    "gpu_reactor_listener_up",
    "gpu_reactor_stale_workers",
    "gpu_reactor_stuck_tasks",
    "gpu_reactor_info",
    "gpu_reactor_hourly_budget_usd",
    "gpu_reactor_spawn_blocked",
}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _busy_worker(reactor: Reactor, conn: asyncpg.Connection) -> tuple[str, str]:
    """Queue two tasks, let the reactor spawn, then play the worker: heartbeat + claim."""
    await conn.execute(
        "INSERT INTO tasks (task_type, params) VALUES ('echo', '{}'), ('echo', '{}')"
    )
    snap = await wait_until(
        lambda: (
            reactor.state.snapshot
            if reactor.state.snapshot and any(w.pod_id for w in reactor.state.snapshot.workers)
            else None
        ),
        timeout=10,
        what="a spawned worker with a pod",
    )
    worker = next(w for w in snap.workers if w.pod_id)
    # The local stand-in pod runs no gpu-worker: play it without its token.
    await conn.execute("UPDATE workers SET token_hash = NULL WHERE id = $1", worker.id)
    assert (
        await conn.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat($1)", worker.id)
        == "active"
    )
    task_id = str(
        await conn.fetchval("SELECT id FROM gpu_reactor.func_claim_available_task($1)", worker.id)
    )
    await conn.execute("""SELECT pg_notify('gpu_reactor', '{"event":"sweep"}')""")
    await wait_until(
        lambda: (
            reactor.state.snapshot is not None
            and any(t.id == task_id for t in reactor.state.snapshot.running)
        ),
        timeout=10,
        what="the claimed task in the reactor's snapshot",
    )
    return worker.id, task_id


async def test_a_leading_reactor_serves_status_metrics_and_probes(
    db_dsn: str, worker_dsn: str, conn: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    settings = reactor_settings(db_dsn, WORKER_DATABASE_URL=worker_dsn)
    url = base_url(settings)
    async with serving(settings) as reactor:
        worker_id, task_id = await _busy_worker(reactor, conn)

        async with http.get(f"{url}/status") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(f"{url}/status", headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        async with http.get(f"{url}/status", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            body = await resp.text()
        view = StatusView.model_validate_json(body)
        assert view.role == "leader" and view.leader_present is True
        assert view.provider == "local" and view.db_ok
        assert view.queue is not None
        assert (view.queue.queued, view.queue.in_progress) == (1, 1)
        assert view.queue.desired_workers == 1
        [worker] = view.workers
        assert worker.id == worker_id and worker.status == "active" and worker.health == "busy"
        assert worker.pod_id and worker.pod_id.startswith("local-")
        assert worker.current_task_id == task_id and worker.cost_per_hr == 1.5
        assert worker.heartbeat_age_sec is not None and worker.heartbeat_age_sec < 10
        spawn = next(a for a in view.actions if a.kind == "spawn")
        assert (
            spawn.outcome == "ok" and spawn.worker_id == worker_id and "tasks need" in spawn.reason
        )
        assert view.listener.connected
        assert view.budget.max_hourly_spend_usd == 10 and view.budget.hourly_burn_usd == 1.5
        assert view.budget.used_ratio == pytest.approx(0.15)
        assert view.settings["DATABASE_URL"] == "**********"
        assert view.settings["WORKER_EXTRA_ENV"] == {"HF_TOKEN": "**********"}
        assert view.reconcile.count >= 2 and view.reconcile.last_sweep_at is not None

        async with http.get(f"{url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            metrics_text = await resp.text()
        families = {f.name for f in text_string_to_metric_families(metrics_text)}
        assert not FAMILIES - families, FAMILIES - families
        values = samples(metrics_text)
        assert values[("gpu_reactor_leader", frozenset())] == 1
        assert values[("gpu_reactor_tasks", frozenset({("status", "Queued")}))] == 1
        assert values[("gpu_reactor_workers", frozenset({("status", "active")}))] == 1
        assert values[("gpu_reactor_spawns_total", frozenset({("outcome", "ok")}))] == 1
        assert values[("gpu_reactor_stale_workers", frozenset())] == 0
        assert values[("gpu_reactor_hourly_burn_usd", frozenset())] == 1.5
        assert values[("gpu_reactor_listener_up", frozenset())] == 1
        assert not any(task_id in name or task_id in str(labels) for name, labels in values)

        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "alive"
        async with http.get(f"{url}/readyz") as resp:
            assert resp.status == 200
            ready = await resp.json()
            assert ready["ready"] and ready["database"] and ready["listener_connected"]

        for secret in (API_KEY, TOKEN, EXTRA_SECRET, WORKER_PASSWORD, worker_dsn):
            assert secret not in body and secret not in metrics_text

        # The image's HEALTHCHECK command, run as Docker would, against this server.
        command = re.search(r'CMD \["python", "-c", "(.+)"\]', (ROOT / "Dockerfile").read_text())
        assert command is not None
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            command.group(1),
            env={**os.environ, "REACTOR_HTTP_PORT": str(settings.reactor_http_port)},
        )
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_a_standby_is_ready_says_so_and_takes_over(
    db_dsn: str, http: aiohttp.ClientSession
) -> None:
    first = reactor_settings(db_dsn, REACTOR_HTTP_TOKEN=None)
    second = reactor_settings(db_dsn, REACTOR_HTTP_TOKEN=None)
    async with serving(first) as leader, serving(second, lead=False) as standby:
        async with http.get(f"{base_url(second)}/status") as resp:
            view = StatusView.model_validate_json(await resp.read())
        assert view.role == "standby" and view.queue is None and view.workers == []
        async with http.get(f"{base_url(second)}/readyz") as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(f"{base_url(second)}/metrics") as resp:
            assert samples(await resp.text())[("gpu_reactor_leader", frozenset())] == 0

        leader.stop_event.set()
        await wait_until(
            lambda: standby.state.role == "leader" and standby.state.listener.connected,
            timeout=10,
            what="the standby to take over",
        )
        async with http.get(f"{base_url(second)}/status") as resp:
            assert StatusView.model_validate_json(await resp.read()).role == "leader"


async def test_not_ready_before_start_but_alive(http: aiohttp.ClientSession) -> None:
    settings = reactor_settings("postgresql://nobody@127.0.0.1:1/none")
    reactor = Reactor(settings)
    runner = await start_http(reactor)
    try:
        async with http.get(f"{base_url(settings)}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["reason"] == "starting"
        async with http.get(f"{base_url(settings)}/healthz") as resp:
            assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_a_taken_port_is_one_clear_config_error() -> None:
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        reactor = Reactor(
            reactor_settings("postgresql://nobody@127.0.0.1:1/none", REACTOR_HTTP_PORT=port)
        )
        with pytest.raises(ConfigError, match=rf"cannot serve HTTP on 127.0.0.1:{port}"):
            await start_http(reactor)
    finally:
        blocker.close()
        await blocker.wait_closed()


POOL_SECRET = "hf_pool_secret_2c9d81"


async def test_status_and_the_console_by_pool_without_a_pools_secret(
    db_dsn: str, conn: asyncpg.Connection, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    pools = tmp_path / "pools.toml"
    pools.write_text(
        '[pools.render]\ntask_types = ["render_*"]\nmax_active_gpus = 1\n'
        f'worker_extra_env = {{ MODEL_TOKEN = "{POOL_SECRET}" }}\n\n'
        '[pools.misc]\ntask_types = ["caption"]\nmax_active_gpus = 1\n'
    )
    settings = reactor_settings(db_dsn, POOLS_FILE=str(pools))
    url, bearer = base_url(settings), {"Authorization": f"Bearer {TOKEN}"}
    async with serving(settings) as reactor:
        await conn.execute(
            "INSERT INTO tasks (task_type) VALUES ('render_4k'), ('render_4k'), ('odd')"
        )
        routing = await wait_until(
            lambda: (
                reactor.state.routing
                if reactor.state.routing and reactor.state.routing.unrouted
                else None
            ),
            what="a reconcile that routed the new tasks",
        )
        assert routing.unrouted == (("odd", 1),)
        reactor.state.last_error = f"create refused: MODEL_TOKEN={POOL_SECRET} is bad"
        async with http.get(f"{url}/status", headers=bearer) as resp:
            body = await resp.text()
        async with http.get(f"{url}/console/state", headers=bearer) as resp:
            console = await resp.text()
    view = StatusView.model_validate_json(body)
    assert [p.name for p in view.pools] == ["render", "misc"]
    render = view.pools[0]
    assert (render.task_types, render.max_active_gpus, render.queued) == (["render_*"], 1, 2)
    assert view.unrouted.by_type == {"odd": 1}
    assert {w.pool for w in view.workers} <= {"render"}
    assert "create refused" in (view.reconcile.last_error or "")
    for text in (body, console):
        assert POOL_SECRET not in text and EXTRA_SECRET not in text
    assert '"unrouted_tasks"' in console and '"routed":true' in console
