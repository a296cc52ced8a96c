from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from reactor.providers.runpod import RunpodProvider
from reactor.settings import Settings
from tests.fakes import FakeRunpod, run_fake_runpod

GPU_A = "NVIDIA GeForce RTX 4090"
GPU_B = "NVIDIA RTX A6000"
GPU_C = "NVIDIA L4"


class FakeClock:
    """Monotonic time that moves only when a test says so, or when the provider sleeps
    on it (``sleep``: the waits between its lookups after an uncertain create)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


def runpod_settings(server: FakeRunpod, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "RUNPOD_API_URL": server.url,
        "RUNPOD_API_KEY": server.api_key,
        "RUNPOD_GPU_TYPES": f"{GPU_A},{GPU_B},{GPU_C}",
        "RUNPOD_DATA_CENTERS": "",
        "RUNPOD_NETWORK_VOLUME_ID": None,
        "SPAWN_FAILURE_BACKOFF_SEC": 30,
        "GPU_HOURLY_PRICE_USD": 0,
        "RUNPOD_CLOUD": "SECURE",
        "RUNPOD_REQUEST_TIMEOUT_SEC": 5,
        "RUNPOD_CREATE_TIMEOUT_SEC": 5,
        "REACTOR_PROVIDER": "runpod",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunpod]:
    async with run_fake_runpod() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outcomes() -> list[tuple[str, str]]:
    """(operation, outcome) of every HTTP request the provider reported."""
    return []


@pytest.fixture
async def make_runpod_provider(
    runpod: FakeRunpod, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> AsyncIterator[Callable[..., RunpodProvider]]:
    made: list[RunpodProvider] = []

    def make(server: FakeRunpod | None = None, **overrides: Any) -> RunpodProvider:
        provider = RunpodProvider(
            settings=runpod_settings(server or runpod, **overrides),
            on_request=lambda op, outcome: outcomes.append((op, outcome)),
            clock=clock,
            sleep=clock.sleep,
            retry_base_sec=0.01,
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_runpod_provider: Callable[..., RunpodProvider]) -> RunpodProvider:
    return make_runpod_provider()


async def eventually(
    predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition"
) -> Any:
    """Wait until ``predicate()`` (maybe a coroutine) is truthy, checked every 10 ms, and
    return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.01)
