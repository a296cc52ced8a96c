"""LocalProvider: pods as real processes, with a stand-in worker command."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from reactor.errors import PermanentProviderError
from reactor.providers.base import PodSpec
from reactor.providers.local import LocalProvider
from reactor.providers.runpod import RunpodProvider
from reactor.settings import Settings
from tests.fakes import LocalWorkersBehindPods, run_fake_runpod
from tests.providers.conftest import eventually, runpod_settings

# Prints what a worker would read, then waits to be stopped.
WORKER = (
    "import os, sys, time; "
    "print('worker', os.environ.get('WORKER_ID'), os.environ.get('RUNPOD_API_KEY'), "
    "flush=True); time.sleep(60)"
)
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def local_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "REACTOR_PROVIDER": "local",
        "GPU_HOURLY_PRICE_USD": 0.5,
        "LOCAL_WORKER_COMMAND": "",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture
async def make_local(tmp_path: Path) -> AsyncIterator[Callable[..., LocalProvider]]:
    made: list[LocalProvider] = []

    def make(code: str = WORKER, **kwargs: Any) -> LocalProvider:
        kwargs.setdefault("command", [sys.executable, "-c", code])
        provider = LocalProvider(settings=local_settings(), workdir=tmp_path, **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        pids = provider.pids()
        await provider.close()
        assert not [pid for pid in pids if alive(pid)], "a local worker outlived close()"


def spec(name: str) -> PodSpec:
    return PodSpec(name=name, env={"WORKER_ID": name, "GPU_REACTOR_FLEET": "gpu-reactor"})


async def test_create_list_terminate(
    make_local: Callable[..., LocalProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "not-for-workers")
    provider = make_local()

    pod = await provider.create(spec("gpu-reactor-aaaa"))
    pid = int(pod.id.removeprefix("local-"))
    assert (pod.name, pod.status, pod.cost_per_hr) == ("gpu-reactor-aaaa", "RUNNING", 0.5)
    assert pod.belongs_to("gpu-reactor")
    log_path = provider.log_path(pod.id)
    assert log_path is not None
    line = await eventually(lambda: log_path.read_text().strip(), what="worker output")
    assert line == "worker gpu-reactor-aaaa None"  # spec env in, reactor settings out
    assert [p.id for p in await provider.list_pods()] == [pod.id]

    await provider.terminate(pod.id)
    assert not alive(pid)
    assert await provider.list_pods() == []
    assert await provider.get(pod.id) is None
    await provider.terminate(pod.id)  # idempotent
    await provider.terminate("local-1")  # never ours: nothing to do


async def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(
    make_local: Callable[..., LocalProvider],
) -> None:
    provider = make_local(STUBBORN, grace_sec=0.2)
    pod = await provider.create(spec("gpu-reactor-bbbb"))
    log_path = provider.log_path(pod.id)
    assert log_path is not None
    await eventually(lambda: "ready" in log_path.read_text(), what="SIGTERM ignored")

    await provider.terminate(pod.id)

    assert not alive(int(pod.id.removeprefix("local-")))


async def test_an_exited_worker_is_listed_as_exited_and_costs_nothing(
    make_local: Callable[..., LocalProvider],
) -> None:
    provider = make_local("raise SystemExit(3)")
    pod = await provider.create(spec("gpu-reactor-cccc"))

    async def exited() -> list[Any]:
        return [p for p in await provider.list_pods() if p.status == "EXITED"]

    pods = await eventually(exited, what="an EXITED pod")
    assert [(p.id, p.cost_per_hr, p.live) for p in pods] == [(pod.id, 0.0, False)]
    assert await provider.get(pod.id) == pods[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_close_leaves_no_process_behind(make_local: Callable[..., LocalProvider]) -> None:
    provider = make_local(command=["sh", "-c", "sleep 60 & sleep 60 & wait"])
    pods = [await provider.create(spec(f"gpu-reactor-{i}")) for i in range(3)]
    groups = [int(p.id.removeprefix("local-")) for p in pods]
    await eventually(lambda: all(len(live_members(g)) == 3 for g in groups), what="workers")

    await provider.close()

    # Orphaned grandchildren are reaped by init; only a running one would be a leak.
    await eventually(lambda: not any(live_members(g) for g in groups), what="an empty group")
    assert await provider.list_pods() == []


async def test_the_command_comes_from_the_setting(tmp_path: Path) -> None:
    settings = local_settings(LOCAL_WORKER_COMMAND=f"{sys.executable} -c 'print(42)'")
    provider = LocalProvider(settings=settings, workdir=tmp_path)
    assert provider.command == [sys.executable, "-c", "print(42)"]
    assert LocalProvider(settings=local_settings(), workdir=tmp_path).command == [
        sys.executable,
        "-m",
        "worker",
    ]
    assert await provider.estimated_price() == 0.5


async def test_a_missing_command_is_a_permanent_error(
    make_local: Callable[..., LocalProvider], tmp_path: Path
) -> None:
    provider = make_local(command=[str(tmp_path / "no-such-worker")])
    with pytest.raises(PermanentProviderError, match="no-such-worker"):
        await provider.create(spec("gpu-reactor-dddd"))


async def test_local_workers_run_behind_fake_runpod_pods(
    make_local: Callable[..., LocalProvider],
) -> None:
    local = make_local()
    behind = LocalWorkersBehindPods(local)
    async with run_fake_runpod(
        on_create=behind.on_create, on_terminate=behind.on_terminate
    ) as runpod:
        provider = RunpodProvider(settings=runpod_settings(runpod))
        try:
            pod = await provider.create(spec("gpu-reactor-eeee"))
            pid = behind.pid(pod.id)
            assert pid is not None and alive(pid)
            log_path = local.log_path(f"local-{pid}")
            assert log_path is not None
            await eventually(
                lambda: "gpu-reactor-eeee" in log_path.read_text(), what="the worker behind the pod"
            )

            await provider.terminate(pod.id)
            assert not alive(pid)
        finally:
            await provider.close()
