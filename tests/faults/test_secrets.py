"""Secrets never leave the process in a readable form: not in the reactor's or the
workers' logs (JSON, DEBUG), not in /status or /metrics, not in error messages, not in
any ``--help``. Every output is grepped for every secret value.

The secrets: RUNPOD_API_KEY, the reactor's and the pods' database passwords (and whole
DSNs), REACTOR_HTTP_TOKEN, and a token passed to the pods through WORKER_EXTRA_ENV. The
provider is made to echo what it was sent (a truncated pod list, a refusal quoting the
create body), as real APIs do in error messages.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from reactor.db.embedded import free_port
from reactor.logs import WORKER_TOKEN_PREFIX
from tests.fakes.runpod_v2_wire import NO_CAPACITY
from tests.faults.reactors import clean_environ
from tests.faults.rig import FaultRig
from tests.pg import WORKER_PASSWORD

EXTRA_SECRET = "hf_" + secrets.token_hex(12)
HTTP_TOKEN = "tok-" + secrets.token_hex(12)
COMMANDS = [
    ["reactor", "--help"],
    *(
        ["reactor", c, "--help"]
        for c in (
            "run",
            "once",
            "migrate",
            "status",
            "check",
            "workers",
            "tasks",
            "dashboard",
            "demo",
        )
    ),
    ["worker", "--help"],
    ["reactor", "once"],
    ["reactor", "status", "--json"],
    ["reactor", "check"],
    ["reactor", "workers", "list"],
    ["reactor", "migrate"],
    ["worker"],
]
_found: dict[str, list[str]] = {}


def with_password(dsn: str, password: str) -> str:
    """``dsn`` with a password (the test server trusts local logins, so any will do)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    user, host = parts.netloc.rsplit("@", 1) if "@" in parts.netloc else ("postgres", parts.netloc)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _secrets(reactor_dsn: str, worker_dsn: str, api_key: str) -> dict[str, str]:
    return {
        "RUNPOD_API_KEY": api_key,
        "reactor DSN": reactor_dsn,
        "reactor password": urlsplit(reactor_dsn).password or "",
        "worker DSN": worker_dsn,
        "worker password": WORKER_PASSWORD,
        "REACTOR_HTTP_TOKEN": HTTP_TOKEN,
        "WORKER_EXTRA_ENV value": EXTRA_SECRET,
    }


def _leaks(values: dict[str, str], outputs: dict[str, str]) -> dict[str, list[str]]:
    return {
        name: [where for where, text in outputs.items() if value in text]
        for name, value in values.items()
        if value
    }


async def _get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> str:
    async with http.get(url, **kwargs) as resp:
        assert resp.status == 200, url
        return await resp.text()


async def _run_fleet(rig: FaultRig, reactor_dsn: str) -> dict[str, str]:
    """A reactor process (DEBUG, JSON) with pods, a provider echoing what it is sent, and
    its HTTP surface; return every output by name."""
    port = free_port()
    rig.values["WORKER_EXTRA_ENV"] = {"HF_TOKEN": EXTRA_SECRET, **rig.values["WORKER_EXTRA_ENV"]}
    rig.configure(
        DATABASE_URL=reactor_dsn,
        REACTOR_HTTP_PORT=port,
        REACTOR_HTTP_TOKEN=HTTP_TOKEN,
        LOG_LEVEL="DEBUG",
        MAX_ACTIVE_GPUS=2,
    )
    reactor = rig.start_reactor()
    try:
        await reactor.wait_for("leader_elected")
        await rig.insert(3, seconds=0.5)
        await rig.until(lambda: rig.pods.alive(), timeout=10, what="a pod")
        # The provider quotes back what it was sent: a truncated list (pods carry their
        # env), then a no-capacity refusal that repeats the create body.
        faults = rig.runpod.faults
        faults.corrupt_next(1, kind="truncated", method="GET", path="/pods")
        await rig.until(
            lambda: not faults.corruptions[0][0].remaining,
            timeout=10,
            what="the truncated list read",
        )
        await rig.wait_done()
        await rig.drain_to_zero()
        body = json.dumps(rig.runpod.created[0].body)
        faults.fail_next(1, status=400, method="POST", path="/pods")
        faults.corrupt_next(
            1,
            method="POST",
            path="/pods",
            kind=json.dumps({"status": 400, "detail": f"{NO_CAPACITY} ({body})"}).encode(),
        )
        await rig.insert(3, seconds=0.5)
        await rig.until(
            lambda: [r for r in rig.runpod.create_calls if r.status == 400],
            timeout=10,
            what="the refused create",
        )
        await rig.settle(timeout=30)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            status = await _get(
                http, f"{base}/status", headers={"Authorization": f"Bearer {HTTP_TOKEN}"}
            )
            metrics = await _get(http, f"{base}/metrics")
        await rig.drain_to_zero()
    finally:
        assert await reactor.stop() == 0
    outputs = {"reactor log": reactor.log_text(), "/status": status, "/metrics": metrics}
    for proc in rig.pods.procs.procs:
        outputs[f"log of {proc.worker_id}"] = proc.stderr()
    return outputs


async def test_no_secret_in_logs_status_or_metrics(
    rig: FaultRig, db_dsn: str, worker_dsn: str
) -> None:
    reactor_dsn = with_password(db_dsn, "pw-" + secrets.token_hex(8))
    outputs = await _run_fleet(rig, reactor_dsn)
    assert "runpod_unreadable_answer" in outputs["reactor log"]  # the echo was read
    assert (
        '"outcome":"no_capacity"' in outputs["reactor log"] or "no_capacity" in outputs["/status"]
    )
    tokens = {
        f"WORKER_TOKEN of {c.body['name']}": c.body["env"]["WORKER_TOKEN"]
        for c in rig.runpod.create_calls
        if isinstance(c.body, dict) and "env" in c.body
    }
    assert tokens, "no create call carried a WORKER_TOKEN"
    assert all(t.startswith(WORKER_TOKEN_PREFIX) for t in tokens.values())  # scrubbed by shape
    leaks = _leaks({**_secrets(reactor_dsn, worker_dsn, rig.runpod.api_key), **tokens}, outputs)
    _found.update(leaks)
    core = {k: v for k, v in leaks.items() if v and k != "WORKER_EXTRA_ENV value"}
    assert not core, f"secrets found: {core}"
    await rig.verify()


async def test_no_worker_extra_env_value_in_logs_or_status(
    rig: FaultRig, db_dsn: str, worker_dsn: str
) -> None:
    if not _found:  # run alone: produce the outputs here
        reactor_dsn = with_password(db_dsn, "pw-" + secrets.token_hex(8))
        _found.update(
            _leaks(
                _secrets(reactor_dsn, worker_dsn, rig.runpod.api_key),
                await _run_fleet(rig, reactor_dsn),
            )
        )
    assert not _found["WORKER_EXTRA_ENV value"], _found["WORKER_EXTRA_ENV value"]


async def _output(command: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *command,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return out.decode(errors="replace")


@pytest.mark.parametrize("database", ["closed port", "unknown database", "bad port"])
async def test_no_secret_in_help_or_command_errors(
    db_dsn: str, tmp_path: Path, database: str
) -> None:
    password = "pw-" + secrets.token_hex(8)
    reactor_dsn = {
        "closed port": f"postgresql://postgres:{password}@127.0.0.1:1/gpu",
        "unknown database": with_password(db_dsn, password).rsplit("/", 1)[0] + "/no_such_db",
        "bad port": f"postgresql://postgres:{password}@127.0.0.1:notaport/gpu",
    }[database]
    worker_dsn = f"postgresql://gpu_worker_test:{WORKER_PASSWORD}@127.0.0.1:1/gpu"
    api_key = "rpa_" + secrets.token_hex(16)
    env = {
        **clean_environ(),
        "DATABASE_URL": reactor_dsn,
        "WORKER_DATABASE_URL": worker_dsn,
        "RUNPOD_API_KEY": api_key,
        "REACTOR_HTTP_TOKEN": HTTP_TOKEN,
        "WORKER_EXTRA_ENV": json.dumps({"HF_TOKEN": EXTRA_SECRET}),
        "WORKER_ID": "w-secret",
        "WORKER_CONNECT_RETRIES": "1",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
    }
    texts = await asyncio.gather(*(_output(c, env, tmp_path) for c in COMMANDS))
    outputs = {" ".join(c): t for c, t in zip(COMMANDS, texts, strict=True)}
    assert "usage:" in outputs["reactor --help"] and "usage:" in outputs["worker --help"]
    leaks = _leaks(
        {**_secrets(reactor_dsn, worker_dsn, api_key), "worker DSN": worker_dsn}, outputs
    )
    assert not {k: v for k, v in leaks.items() if v}, leaks
