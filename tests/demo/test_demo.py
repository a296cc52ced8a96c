"""`gpu-reactor demo --no-dashboard`, run for real as a subprocess.

The demo starts its own embedded Postgres, the reactor and worker processes in two GPU
pools; the test reads its JSON summary and checks the story: every task complete, each on
a worker of the pool that runs its type, the killed worker marked 'error' by its heartbeat
deadline and replaced, and no process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reactor.db.embedded import free_port
from reactor.demo.config import DEMO_POOLS, DEMO_SETTINGS, IMAGE, VIDEO
from reactor.demo.workload import plan

DURATION = 40
TASKS = 15
MAX_WORKERS = 4
RUN_TIMEOUT = DURATION + 90  # the demo waits at most 60 s past --duration for open tasks


def _proc_read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    stat = _proc_read(pid, "stat")
    return bool(stat) and stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def leftovers(data_dir: Path, summary: dict[str, Any] | None) -> list[int]:
    """Processes the demo started that still run: the workers and Postgres of its summary,
    and anything whose command line names its data directory (Postgres children)."""
    found = set()
    for proc in (summary or {}).get("processes", {}).get("started", []):
        marker = f"WORKER_ID={proc['id']}\0".encode()
        if _alive(proc["pid"]) and (
            proc["kind"] != "worker" or marker in _proc_read(proc["pid"], "environ")
        ):
            found.add(proc["pid"])
    needle = str(data_dir).encode()
    for pid in (int(e) for e in os.listdir("/proc") if e.isdigit()):
        if pid != os.getpid() and _alive(pid) and needle in _proc_read(pid, "cmdline"):
            found.add(pid)
    return sorted(found)


def _collect(stream: Any, into: list[str]) -> None:
    for line in iter(stream.readline, ""):
        into.append(line)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
        return response.status, response.read().decode()


def _wait_for_http(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, str]:
    """/status and /metrics as the running demo serves them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            status, body = _get(f"http://127.0.0.1:{port}/status")
            if status == 200 and json.loads(body).get("role") == "leader":
                return {"status": body, "metrics": _get(f"http://127.0.0.1:{port}/metrics")[1]}
        time.sleep(0.5)
    return {}


def run_demo(
    tmp_path: Path, data_dir: Path
) -> tuple[int, str, dict[str, str], dict[str, Any] | None]:
    summary_path, port = tmp_path / "summary.json", free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LOG_FORMAT")}
    env["LOG_FORMAT"] = "text"
    command = [
        sys.executable,
        "-m",
        "reactor",
        "demo",
        "--no-dashboard",
        "--duration",
        str(DURATION),
        "--tasks",
        str(TASKS),
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--json-summary",
        str(summary_path),
    ]
    output: list[str] = []
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    reader = threading.Thread(target=_collect, args=(proc.stdout, output), daemon=True)
    reader.start()
    try:
        http = _wait_for_http(port, proc)
        code = proc.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo's own clean stop
        code = proc.wait(timeout=60)
        http = {}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return code, "".join(output), http, summary


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's basetemp: pytest resets /tmp/pytest-of-<user> to mode 0700 when any
    session starts, which would lock the embedded server's own user out mid-run."""
    path = Path(tempfile.mkdtemp(prefix="gpu-reactor-demo-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_scales_recovers_and_leaves_nothing(tmp_path: Path, data_dir: Path) -> None:
    code, output, http, summary = run_demo(tmp_path, data_dir)
    left = leftovers(data_dir, summary)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    tail = output[-6000:]
    assert not left, f"the demo left processes running: {left}\n{tail}"
    assert code == 0, tail
    assert summary is not None, tail

    # Served while it ran.
    assert json.loads(http["status"])["role"] == "leader", tail
    assert "gpu_reactor_reaction_latency_seconds_bucket" in http["metrics"]

    # Every task complete; exactly one needed a second attempt.
    tasks = summary["tasks"]
    assert tasks["queued"] == TASKS
    assert tasks["complete"] == TASKS, tasks
    assert tasks["failed"] == 0 and tasks["open"] == 0
    assert tasks["retried"] == 1

    # Scaled up for the burst, back down when idle.
    workers = summary["workers"]
    assert 2 <= workers["peak_live"] <= MAX_WORKERS
    rows = {w["id"]: w for w in workers["rows"]}
    assert any(
        w["status"] == "terminated" and (w["reason"] or "").startswith("idle")
        for w in rows.values()
    ), workers["ended_by_reason"]

    # The killed worker: 'error' at its heartbeat deadline, replaced, its task finished.
    killed = summary["killed"]
    assert killed and "skipped" not in killed, killed
    victim = rows[killed["worker_id"]]
    assert victim["status"] == "error"
    assert "heartbeat" in victim["reason"], victim
    assert 0 < killed["detected_after_sec"] < 15
    replacement = rows[killed["replacement"]]
    assert _at(replacement["created_at"]) > _at(killed["at"])
    assert killed["task"]["status"] == "Complete"
    assert killed["task"]["attempts"] == 2
    assert killed["task"]["worker_id"] != killed["worker_id"]

    # Two GPU pools: each task ran on a worker of the pool that runs its type, on that
    # pool's GPU, and each pool's max held.
    check_pools(summary, rows, victim, replacement)
    assert "pools      big    video on 'H100 80GB' at $2.69/h" in output, tail

    # Latency and cost are reported.
    latency = summary["reaction_latency"]["insert_to_spawn"]
    assert latency["n"] >= 1 and latency["p50_ms"] < 2000
    assert summary["cost"]["usd"] > 0
    assert summary["processes"]["left_running"] == []
    assert "summary of" in output


def check_pools(
    summary: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    victim: dict[str, Any],
    replacement: dict[str, Any],
) -> None:
    full = DEMO_SETTINGS["MAX_ACTIVE_GPUS"] * DEMO_SETTINGS["TASKS_PER_GPU_THRESHOLD"]
    video = sum(b.types.count(VIDEO) for b in plan(TASKS, DURATION, full_fleet=full).bursts)
    pools = {p["pool"]: p for p in summary["pools"]}
    assert list(pools) == ["big", "small"]
    big, small = pools["big"], pools["small"]
    assert big["ran"] == {VIDEO: video}, pools
    assert small["ran"] == {IMAGE: TASKS - video}, pools  # act two's tasks are image ones
    assert big["misrouted"] == small["misrouted"] == 0
    assert sum(sum(p["ran"].values()) for p in pools.values()) == TASKS  # nothing lost
    for name, pool in pools.items():
        assert pool["gpu_types_seen"] == DEMO_POOLS[name]["runpod_gpu_types"], pool
        assert 1 <= pool["peak_live"] <= DEMO_POOLS[name]["max_active_gpus"], pool
        assert pool["pods"] == sum(1 for w in rows.values() if w["pool"] == name)
        assert pool["usd"] > 0
    assert {w["pool"] for w in rows.values()} == {"big", "small"}
    assert victim["pool"] == replacement["pool"] == "small"  # a replacement of its own pool
    assert summary["cost"]["usd"] == pytest.approx(big["usd"] + small["usd"], abs=1e-3)
