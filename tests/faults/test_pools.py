"""Scenario 9: two GPU pools, end to end (issue 16).

Pods are real worker processes behind the fake Runpod; each pool has its own GPU type.
Each task must run on a pod of its pool's GPU type, each pool's max and the fleet's cap
and budget must hold at every create, spill-over must move demand to the second pool
while the first has no capacity and back once it has, a task type no pool runs must
spawn nothing, and a reload must add, change and remove pools without losing a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.runpod_v2_pods import FakePod
from tests.faults.invariants import fleet_pods
from tests.faults.rig import GPU_A, GPU_B, PROCESSORS, FaultRig
from tests.metrics import metric_value

GPU_C = "NVIDIA L4"  # 0.43 USD/h in the fake's price table
VIDEO = "video_wan_14b"  # run by "big" first


def write_pools(path: Path, pools: dict[str, dict[str, Any]]) -> Path:
    """A POOLS_FILE (TOML) from plain values: strings, numbers, lists, tables of strings."""
    lines: list[str] = []
    for name, keys in pools.items():
        lines.append(f"[pools.{name}]")
        for key, value in keys.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def pools_rig(rig: FaultRig, tmp_path: Path, pools: dict[str, dict[str, Any]], **env: Any) -> Path:
    """Point the rig's reactor at a POOLS_FILE; every worker can run both kinds of task."""
    worker_env = dict(rig.values["WORKER_EXTRA_ENV"])
    worker_env["WORKER_PROCESSORS"] = f"{PROCESSORS},{VIDEO}=tests.faults.processors:record"
    path = write_pools(tmp_path / "pools.toml", pools)
    rig.configure(POOLS_FILE=str(path), WORKER_EXTRA_ENV=worker_env, **env)
    return path


def watch_pool_caps(rig: FaultRig, caps: dict[str, int]) -> list[str]:
    """At every create: the live pods of each GPU type within its pool's max."""
    breaches: list[str] = []

    def check(pod: FakePod) -> None:
        live = Counter(p.gpu_id for p in fleet_pods(rig.runpod))
        for gpu, cap in caps.items():
            if live[gpu] > cap:
                breaches.append(f"{live[gpu]} live {gpu} pods at the create of {pod.name}")

    rig.create_watchers.append(check)
    return breaches


async def gpu_of_each_task(rig: FaultRig) -> dict[str, set[str]]:
    """Task type -> the GPU types of the workers that completed its tasks."""
    rows = await rig.fetch(
        "SELECT t.task_type, w.gpu_type FROM tasks t JOIN workers w ON w.id = t.worker_id "
        "WHERE t.status = 'Complete'"
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["task_type"], set()).add(r["gpu_type"])
    return out


BIG_SMALL = {
    "big": {"task_types": ["video_*"], "runpod_gpu_types": [GPU_B], "max_active_gpus": 2},
    "small": {"task_types": ["fault"], "runpod_gpu_types": [GPU_A], "max_active_gpus": 2},
}


async def test_each_task_runs_on_its_pools_gpu_and_every_cap_holds(
    rig: FaultRig, tmp_path: Path, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    # Fleet: 3 pods and 1.7 USD/h across pools (two A6000 at 0.49 and two 4090 at 0.69
    # would be 2.36): neither pool can have its max at once.
    pools_rig(rig, tmp_path, BIG_SMALL, MAX_ACTIVE_GPUS=3, MAX_HOURLY_SPEND_USD=1.7)
    breaches = watch_pool_caps(rig, {GPU_B: 2, GPU_A: 2})
    async with rig.running():
        await rig.insert(8, kind=VIDEO, seconds=0.5)
        await rig.insert(8, kind="fault", seconds=0.5)
        await rig.settle(timeout=90)
        await rig.drain_to_zero()
    assert breaches == []
    assert await gpu_of_each_task(rig) == {VIDEO: {GPU_B}, "fault": {GPU_A}}
    figures = await rig.verify()  # fleet cap, budget, nothing lost, no duplicate pod
    record_figures(figures)


async def test_spill_over_while_the_first_pool_has_no_capacity_and_back_after(
    rig: FaultRig, tmp_path: Path, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    pools = {
        "big": {"task_types": [VIDEO], "runpod_gpu_types": [GPU_B], "max_active_gpus": 2},
        "small": {"task_types": ["*"], "runpod_gpu_types": [GPU_A]},  # and what big cannot
    }
    pools_rig(rig, tmp_path, pools, MAX_ACTIVE_GPUS=3)
    rig.runpod.faults.no_capacity_gpus.add(GPU_B)
    async with rig.running() as reactor:
        await rig.insert(4, kind=VIDEO, seconds=0.3)
        await rig.wait_done(timeout=60)
        assert await gpu_of_each_task(rig) == {VIDEO: {GPU_A}}, "spilled to small"
        refused = [c for c in rig.runpod.create_calls if c.body["gpu"]["id"] == GPU_B]
        assert refused and all(c.status == 400 for c in refused), "big was tried first"
        await rig.drain_to_zero(timeout=60)

        rig.runpod.faults.no_capacity_gpus.discard(GPU_B)

        # Video keeps arriving; big tries again when its pause (and the provider's
        # backoff of the GPU type) ends, finds capacity, and the demand is its own again.
        async def big_ran_video() -> bool:
            return GPU_B in (await gpu_of_each_task(rig)).get(VIDEO, set())

        deadline = asyncio.get_running_loop().time() + 60
        while not await big_ran_video():
            assert asyncio.get_running_loop().time() < deadline, await rig.describe()
            await rig.insert(1, kind=VIDEO, seconds=0.3)
            with contextlib.suppress(AssertionError):
                await rig.until(big_ran_video, timeout=1.0, what="a video task on an A6000")
        routing = reactor.state.routing
        assert routing is not None and routing.part("big") is not None
        await rig.settle(timeout=60)
        await rig.drain_to_zero(timeout=60)
    record_figures(await rig.verify())


async def test_a_task_type_no_pool_runs_spawns_nothing_and_is_reported(
    rig: FaultRig, tmp_path: Path
) -> None:
    pools_rig(rig, tmp_path, BIG_SMALL)
    async with rig.running() as reactor:
        before = reactor.state.reconciles
        await rig.fetch(
            "INSERT INTO tasks (task_type, params) "
            "SELECT 'upscale', '{}' FROM generate_series(1, 3)"
        )

        def reported() -> bool:
            routing = reactor.state.routing
            return (
                reactor.state.reconciles > before
                and routing is not None
                and dict(routing.unrouted) == {"upscale": 3}
            )

        await rig.until(reported, timeout=15, what="the upscale tasks reported as no pool's")
        assert metric_value(reactor.metrics, "gpu_reactor_unrouted_tasks", task_type="upscale") == 3
        assert rig.runpod.create_calls == []
        assert reactor.state.desired_workers == 0


async def test_a_reload_adds_changes_and_removes_pools_without_losing_a_task(
    rig: FaultRig, tmp_path: Path, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    path = pools_rig(
        rig,
        tmp_path,
        BIG_SMALL,
        MAX_ACTIVE_GPUS=4,
        SCALE_DOWN_IDLE_SEC=5,
        TASKS_PER_GPU_THRESHOLD=1,
    )
    async with rig.running() as reactor:
        # big's workers are busy with long tasks when big leaves the file.
        await rig.insert(2, kind=VIDEO, seconds=4.0)
        await rig.until(
            lambda: len(rig.ledger.running()) == 2, timeout=30, what="two video tasks running"
        )
        write_pools(
            path,
            {
                "small": {**BIG_SMALL["small"], "max_active_gpus": 1},  # changed
                "fresh": {"task_types": [VIDEO], "runpod_gpu_types": [GPU_C]},  # added
            },
        )
        await rig.fetch("SELECT pg_notify('gpu_reactor', '{\"event\":\"reload\"}')")
        await rig.until(
            lambda: reactor.pools.names == ("small", "fresh"), timeout=15, what="the reload"
        )
        # The running video tasks finish on big's workers, which then go: drained, not
        # killed mid-task (each ran once).
        await rig.insert(2, kind=VIDEO, seconds=0.3)
        await rig.insert(3, kind="fault", seconds=0.3)
        await rig.settle(timeout=90)
        await rig.drain_to_zero(timeout=60)
    runs = rig.ledger.executions()
    assert all(len(runs[t]) == 1 for t in rig.expected), "no task ran twice: none was cut"
    ran = await gpu_of_each_task(rig)
    assert ran[VIDEO] == {GPU_B, GPU_C} and ran["fault"] == {GPU_A}
    fault_pods = [c for c in rig.runpod.create_calls if c.body["gpu"]["id"] == GPU_A]
    assert len(fault_pods) == 1, "small's new max of 1 held"
    ended = await rig.fetch(
        "SELECT status FROM workers WHERE gpu_type = $1 AND status <> 'terminated'", GPU_B
    )
    assert ended == [], "big's workers ended cleanly"
    record_figures(await rig.verify())


async def test_a_pools_file_that_does_not_validate_is_refused_and_the_old_pools_stay(
    rig: FaultRig, tmp_path: Path
) -> None:
    path = pools_rig(rig, tmp_path, BIG_SMALL)
    async with rig.running() as reactor:
        path.write_text('[pools.big]\nmax_active_gpus = "two"\n')
        assert not reactor.reload()
        path.write_text("[pools.big\n")
        await rig.fetch("SELECT pg_notify('gpu_reactor', '{\"event\":\"reload\"}')")
        await rig.until(
            lambda: (
                metric_value(reactor.metrics, "gpu_reactor_pool_reloads_total", outcome="refused")
                == 2
            ),
            timeout=15,
            what="the second refusal",
        )
        assert reactor.pools.names == ("big", "small")
        assert "POOLS_FILE" in (reactor.state.last_error or "")
        await rig.insert(1, kind=VIDEO, seconds=0.2)
        await rig.settle(timeout=60)
        await rig.drain_to_zero(timeout=60)
    assert await gpu_of_each_task(rig) == {VIDEO: {GPU_B}}
    await rig.verify()


async def test_sighup_reloads_the_pools_of_a_running_reactor_process(
    rig: FaultRig, tmp_path: Path, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    path = pools_rig(rig, tmp_path, BIG_SMALL)
    proc = rig.start_reactor()
    await proc.wait_for("leader_elected", timeout=30)
    await proc.wait_for("pools", timeout=30)
    fresh = {"task_types": ["video_*"], "runpod_gpu_types": [GPU_C], "max_active_gpus": 1}
    write_pools(path, {"fresh": fresh, "small": BIG_SMALL["small"]})
    proc.popen.send_signal(signal.SIGHUP)
    reloaded = await proc.wait_for("pools_reloaded", timeout=15)
    assert reloaded["pools"] == ["fresh", "small"] and reloaded["removed"] == ["big"]
    await rig.insert(2, kind=VIDEO, seconds=0.2)
    await rig.settle(timeout=60)
    assert await gpu_of_each_task(rig) == {VIDEO: {GPU_C}}, "the reloaded pools ran video"
    path.write_text("[pools.fresh\n")  # a bad file: refused, the process lives on
    proc.popen.send_signal(signal.SIGHUP)
    refused = await proc.wait_for("pools_reload_refused", timeout=15)
    assert "not valid TOML" in refused["error"] and proc.alive
    await rig.drain_to_zero(timeout=60)
    assert await proc.stop() == 0
    record_figures(await rig.verify())
