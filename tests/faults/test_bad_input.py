"""Bad input: arbitrary NOTIFY payloads, malformed provider answers, odd task params and
types. (Out-of-range settings: test_bad_settings.py.)

Each must be taken in stride: the reactor's loop never dies and counts what it could not
read; a provider call fails with a clean ProviderError and never makes a second pod; a
task's type and params are stored exactly as given, with nothing executed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor.domain.events import parse_event
from reactor.engine.service import Reactor
from reactor.errors import ProviderError
from reactor.providers.base import PodSpec
from reactor.providers.runpod import RunpodProvider
from tests.engine.harness import insert_tasks, running, runpod_settings
from tests.fakes.runpod_v2 import FakeRunpod, run_fake_runpod
from tests.faults.reactors import clean_environ
from tests.metrics import metric_value
from tests.util import wait_until

# Text PostgreSQL can carry: no NUL, no lone surrogate.
pg_text = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(pg_text, max_size=20)
)
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(pg_text, max_size=10), inner, max_size=4)
    ),
    max_leaves=16,
)
EVENTS = ["task_queued", "task_finished", "worker_status", "worker_drained", "sweep", "drain"]
event_like = st.dictionaries(
    st.sampled_from(["event", "worker_id", "status", "x"]),
    st.sampled_from(EVENTS) | json_values,
    max_size=4,
)
payloads = (
    st.text(pg_text, max_size=400)
    | event_like.map(json.dumps)
    | json_values.map(json.dumps)
    | st.integers(7000, 7900).map(lambda n: json.dumps({"event": "sweep", "pad": "x" * n}))
)


# --- NOTIFY payloads ------------------------------------------------------------------------
@pytest.fixture
async def live_reactor(
    db_dsn: str, conn: asyncpg.Connection
) -> AsyncIterator[tuple[Reactor, FakeRunpod, asyncpg.Connection]]:
    async with run_fake_runpod() as runpod, running(runpod_settings(db_dsn, runpod)) as reactor:
        yield reactor, runpod, conn


def _malformed(payload: str) -> bool:
    try:
        parse_event(payload)
    except ValueError:
        return True
    return False


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(payloads, min_size=1, max_size=5))
async def test_any_notify_payload_is_counted_and_never_kills_the_loop(
    live_reactor: tuple[Reactor, FakeRunpod, asyncpg.Connection], batch: list[str]
) -> None:
    reactor, _, conn = live_reactor

    def malformed() -> float:
        return metric_value(reactor.metrics, "gpu_reactor_malformed_events_total")

    bad_before = malformed()
    seen_before = _event_total(reactor)
    for payload in batch:
        await conn.execute("SELECT pg_notify('gpu_reactor', $1)", payload)
    expected_bad = sum(_malformed(p) for p in batch)

    await wait_until(
        lambda: (malformed() - bad_before) + (_event_total(reactor) - seen_before) >= len(batch),
        timeout=5,
        interval=0.01,
        what="every payload counted",
    )
    assert malformed() - bad_before == expected_bad
    assert _event_total(reactor) - seen_before == len(batch) - expected_bad
    assert not reactor.task.done()  # type: ignore[attr-defined]


def _event_total(reactor: Reactor) -> float:
    return sum(
        s.value
        for metric in reactor.metrics.events.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    )


async def test_after_a_storm_of_bad_payloads_the_reactor_still_acts(
    live_reactor: tuple[Reactor, FakeRunpod, asyncpg.Connection],
) -> None:
    reactor, runpod, conn = live_reactor
    for i in range(200):
        await conn.execute("SELECT pg_notify('gpu_reactor', $1)", "{" * (i % 50) + "\u202e")
    await insert_tasks(conn, 1)
    await runpod.wait_for_create(timeout=5)
    assert metric_value(reactor.metrics, "gpu_reactor_malformed_events_total") >= 200
    assert not reactor.task.done()  # type: ignore[attr-defined]


# --- provider answers --------------------------------------------------------------------------
OPERATIONS = ["create", "list", "get", "terminate", "price"]
STATUSES = [200, 201, 204, 301, 400, 401, 402, 403, 404, 409, 418, 422, 500, 503]
spoilt_bodies = (
    st.sampled_from(["truncated", "garbage", "cut", "wrong_shape"])
    | st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(
        st.sampled_from(["id", "name", "status", "pods", "gpus", "detail", "errors", "pagination"]),
        json_values,
        max_size=4,
    ).map(lambda v: json.dumps(v).encode())
)


async def _call(operation: str, provider: RunpodProvider, runpod: FakeRunpod) -> Any:
    spec = PodSpec(name="gpu-reactor-badinput", env={"GPU_REACTOR_FLEET": "gpu-reactor"})
    if operation == "create":
        return await provider.create(spec)
    if operation == "list":
        return await provider.list_pods()
    if operation == "price":
        return await provider.estimated_price()
    pod = runpod.add_fleet_pod()
    if operation == "get":
        return await provider.get(pod.id)
    return await provider.terminate(pod.id)


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


async def _one_bad_answer(operation: str, status: int | None, body: str | bytes | None) -> None:
    async with run_fake_runpod() as runpod:
        settings_ = runpod_settings(
            "postgresql://unused@127.0.0.1:1/x",
            runpod,
            RUNPOD_REQUEST_TIMEOUT_SEC=1,
            SPAWN_FAILURE_BACKOFF_SEC=1,
        )
        provider = RunpodProvider(
            settings=settings_,
            retry_base_sec=0.001,
            max_rate_limit_wait_sec=0.5,
            sleep=_no_wait,  # between the lookups after a lost create
        )
        method, path = {
            "create": ("POST", "/pods"),
            "list": ("GET", "/pods"),
            "get": ("GET", "/pods/*"),
            "terminate": ("DELETE", "/pods/*"),
            "price": ("GET", "/catalog/gpus"),
        }[operation]
        if status is not None:
            runpod.faults.fail_next(1, status=status, method=method, path=path)
        if body is not None:
            runpod.faults.corrupt_next(1, kind=body, method=method, path=path)
        try:
            await _call(operation, provider, runpod)
        except ProviderError as exc:
            assert str(exc) and runpod.api_key not in str(exc)
        finally:
            await provider.close()
        assert len(runpod.create_calls) <= 1, "a create was sent twice"
        assert len(runpod.created) <= 1, "a second pod was made"


@settings(max_examples=80, deadline=None)
@given(
    operation=st.sampled_from(OPERATIONS),
    status=st.none() | st.sampled_from(STATUSES),
    body=st.none() | spoilt_bodies,
)
def test_any_provider_answer_is_a_clean_provider_error_never_a_crash_or_a_second_pod(
    operation: str, status: int | None, body: str | bytes | None
) -> None:
    asyncio.run(_one_bad_answer(operation, status, body))


@pytest.mark.parametrize(
    "body",
    [
        b"<html>\n<head><title>403 Forbidden</title></head>\n<body>cloudflare</body>\n</html>\n",
        b"no capacity\x00\r\n",
    ],
    ids=["html page", "nul and crlf"],
)
async def test_a_provider_error_is_one_printable_line(body: bytes) -> None:
    async with run_fake_runpod() as runpod:
        provider = RunpodProvider(
            settings=runpod_settings("postgresql://x@127.0.0.1:1/x", runpod), retry_base_sec=0.001
        )
        runpod.faults.fail_next(1, status=403, method="POST")
        runpod.faults.corrupt_next(1, kind=body, method="POST")
        try:
            with pytest.raises(ProviderError) as caught:
                await provider.create(PodSpec(name="gpu-reactor-x", env={}))
        finally:
            await provider.close()
    assert str(caught.value).isprintable(), repr(str(caught.value))


# --- task params and types -------------------------------------------------------------------
QUOTED = [
    ("render'; DROP TABLE tasks; --", {"prompt": "'); DELETE FROM workers; --", "q": '"\\"'}),
    ('type "with" quotes\\', {"$1": "$2", "%s": "%(x)s", "{}": "{0}", "nested": {"'": '"'}}),
    (
        "\u202eRTL\u200b zero-width \ufeff",
        {
            "emoji": "\U0001f680\U0001f9ea",
            "comb": "e\u0301",
            "rtl": "\u05e9\u05dc\u05d5\u05dd",
            "max": "\U0010ffff",
        },
    ),
    ("x" * 10_000, {"big": "y" * 100_000, "list": list(range(1000))}),
]


def _cli_env(db_dsn: str) -> dict[str, str]:
    return {**clean_environ(), "DATABASE_URL": db_dsn, "LOG_FORMAT": "json"}


async def _cli(db_dsn: str, cwd: Any, *args: str) -> tuple[int, bytes, bytes]:
    """``gpu-reactor tasks create ...`` as a process; never left running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reactor",
        "tasks",
        "create",
        *args,
        "--json",
        env=_cli_env(db_dsn),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out, err


@pytest.mark.parametrize(("task_type", "params"), QUOTED, ids=["sql", "quotes", "unicode", "huge"])
async def test_tasks_create_stores_types_and_params_verbatim(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Any, task_type: str, params: dict[str, Any]
) -> None:
    code, out, err = await _cli(
        db_dsn,
        tmp_path,
        "--type",
        task_type,
        "--params",
        json.dumps(params, ensure_ascii=False),
        "--count",
        "2",
    )
    assert code == 0, err.decode()[-2000:]
    ids = json.loads(out)
    rows = await conn.fetch(
        "SELECT task_type, params::text AS params FROM tasks WHERE id = ANY($1::uuid[])", ids
    )
    assert len(rows) == 2
    for row in rows:
        assert row["task_type"] == task_type
        assert json.loads(row["params"]) == params
    assert await conn.fetchval("SELECT count(*) FROM tasks") == 2
    assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'tasks'") == 1


async def test_tasks_create_keeps_a_big_integer_exactly(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Any
) -> None:
    text = '{"seed": 123456789012345678901234567890}'
    code, _, err = await _cli(db_dsn, tmp_path, "--type", "t", "--params", text)
    assert code == 0, err.decode()
    stored = await conn.fetchval("SELECT params->>'seed' FROM tasks")
    assert stored == "123456789012345678901234567890"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    task_type=st.text(pg_text, min_size=1, max_size=300),
    params=st.dictionaries(st.text(pg_text, max_size=30), json_values, max_size=6),
)
async def test_sql_stores_any_type_and_params_verbatim(
    conn: asyncpg.Connection, task_type: str, params: dict[str, Any]
) -> None:
    task_id = await conn.fetchval(
        "INSERT INTO tasks (task_type, params) VALUES ($1, $2::jsonb) RETURNING id",
        task_type,
        json.dumps(params),
    )
    row = await conn.fetchrow(
        "SELECT task_type, params::text AS params FROM tasks WHERE id = $1", task_id
    )
    assert row["task_type"] == task_type
    assert _numbers_as_floats(json.loads(row["params"])) == _numbers_as_floats(params)


def _numbers_as_floats(value: Any) -> Any:
    """jsonb keeps numbers as decimals (3.8e+16 reads back as 38000000000000000)."""
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


async def test_a_huge_params_document_is_stored_and_claimed_intact(
    conn: asyncpg.Connection, worker_dsn: str
) -> None:
    params = {"blob": os.urandom(4 * 1024 * 1024).hex(), "quote": "'\"\\"}  # 8 MB of text
    task_id = await conn.fetchval(
        "INSERT INTO tasks (task_type, params) VALUES ('huge', $1::jsonb) RETURNING id",
        json.dumps(params),
    )
    pod = await asyncpg.connect(worker_dsn)
    try:
        assert (
            await pod.fetchval("SELECT gpu_reactor.func_update_worker_heartbeat('w-huge')")
            == "active"
        )
        claimed = await pod.fetchrow(
            "SELECT * FROM gpu_reactor.func_claim_available_task('w-huge')"
        )
    finally:
        await pod.close()
    assert claimed["id"] == task_id
    assert json.loads(claimed["params"]) == params
