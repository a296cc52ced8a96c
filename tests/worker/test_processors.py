"""Processors in-process: resolution order, built-ins, Python callables, entry points."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.db import ClaimedTask
from worker.errors import ConfigError, ProcessorError
from worker.processors import (
    CallableProcessor,
    EchoProcessor,
    SleepProcessor,
    build_registry,
    describe_exception,
    load_callable,
)
from worker.settings import load_settings

BASE = {"WORKER_ID": "w", "DATABASE_URL": "postgresql://u@h/d"}


def claimed(params: Any, task_type: str = "t") -> ClaimedTask:
    return ClaimedTask(
        id=uuid.uuid4(), task_type=task_type, params=params, attempt=1, max_attempts=3
    )


async def test_echo_and_sleep() -> None:
    assert await EchoProcessor()(claimed({"a": [1, 2]})) == {"a": [1, 2]}
    assert await SleepProcessor()(claimed({"seconds": 0.01})) == {"slept": 0.01}
    for bad in (
        {},
        {"seconds": -1},
        {"seconds": "1"},
        {"seconds": True},
        [1],
        {"seconds": float("inf")},
    ):
        with pytest.raises(ProcessorError, match="sleep needs params"):
            await SleepProcessor()(claimed(bad))


async def test_a_sync_callable_runs_off_the_event_loop_thread() -> None:
    seen: list[str] = []

    def fn(params: dict[str, int]) -> int:
        seen.append(threading.current_thread().name)
        return params["x"] + 1

    task = claimed({"x": 1})
    assert await CallableProcessor("fn", fn)(task) == 2
    assert seen == [f"task-{task.id}"]


async def test_a_hung_sync_callable_is_abandoned_not_waited_for() -> None:
    release = threading.Event()

    def stuck(_params: object) -> None:
        release.wait(10)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(CallableProcessor("stuck", stuck)(claimed({})), 0.1)
    assert time.monotonic() - started < 2
    release.set()


async def test_an_async_callable_and_its_exception() -> None:
    async def fails(_params: object) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError) as caught:
        await CallableProcessor("fails", fails)(claimed({}))
    text = describe_exception(caught.value)
    assert text.startswith("KeyError: 'missing'\n\nTraceback")
    assert "in fails" in text
    assert describe_exception(ProcessorError("plain words")) == "plain words"


async def test_async_callable_objects_and_partials_are_awaited() -> None:
    class Model:
        async def __call__(self, params: dict[str, int]) -> int:
            return params["x"] * 10

    async def scale(factor: int, params: dict[str, int]) -> int:
        return params["x"] * factor

    for fn in (Model(), functools.partial(scale, 10)):
        processor = CallableProcessor("p", fn)
        assert processor.is_async
        assert await processor(claimed({"x": 4})) == 40


def test_load_callable() -> None:
    assert load_callable("os.path:join") is __import__("os").path.join
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        load_callable("no_such_module:fn")
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        load_callable("os:nope")
    with pytest.raises(ConfigError, match="is not callable"):
        load_callable("os:sep")


@pytest.fixture
def entry_points(tmp_path: Path) -> Iterator[None]:
    """An installed distribution (a dist-info on sys.path) declaring two processors."""
    (tmp_path / "plugin_mod.py").write_text(
        "def upscale(params):\n    return {'upscaled': params}\n"
        "def echo(params):\n    return 'plugin echo'\n"
    )
    dist = tmp_path / "gpu_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gpu-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[gpu_reactor.processors]\nupscale = plugin_mod:upscale\necho = plugin_mod:echo\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("plugin_mod", None)


async def test_resolution_order(entry_points: None) -> None:
    registry = build_registry(
        load_settings(
            {**BASE, "WORKER_PROCESSORS": "sleep=echo,*=tests.worker.sample_processors:double"}
        )
    )
    # 1. WORKER_PROCESSORS beats the built-in sleep.
    assert await registry.get("sleep")(claimed({"seconds": 5})) == {"seconds": 5}  # type: ignore[misc]
    # 2. An entry point beats the built-in echo and adds its own type.
    assert await registry.get("echo")(claimed({})) == "plugin echo"  # type: ignore[misc]
    assert await registry.get("upscale")(claimed(3)) == {"upscaled": 3}  # type: ignore[misc]
    # 4. The wildcard covers the rest.
    assert await registry.get("anything")(claimed({"x": 2})) == {"double": 4}  # type: ignore[misc]
    assert registry.describe()["*"] == "tests.worker.sample_processors:double"


def test_without_a_wildcard_an_unknown_type_has_no_processor(entry_points: None) -> None:
    registry = build_registry(load_settings({**BASE, "WORKER_TASK_TYPES": "echo,render"}))
    assert registry.get("render") is None
    assert registry.get("upscale") is None  # not one of this worker's task types
    assert isinstance(registry.get("sleep"), SleepProcessor)


def test_a_broken_entry_point_fails_start_up(tmp_path: Path, entry_points: None) -> None:
    dist = next(p for p in sys.path if p and (Path(p) / "plugin_mod.py").exists())
    ep = Path(dist) / "gpu_plugin-1.0.dist-info" / "entry_points.txt"
    ep.write_text("[gpu_reactor.processors]\nbroken = plugin_mod:missing\n")
    with pytest.raises(ConfigError, match="entry point broken = plugin_mod:missing"):
        build_registry(load_settings(BASE))
