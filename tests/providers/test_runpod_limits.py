"""Rate limits, and the API key kept out of every exception and log line."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
import pytest

from reactor.errors import (
    InsufficientBalance,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    Unauthorized,
)
from reactor.providers.base import PodSpec
from reactor.providers.runpod import RunpodProvider
from tests.fakes import FakeRunpod, run_fake_runpod
from tests.providers.conftest import runpod_settings

SPEC = PodSpec(name="gpu-reactor-0a1b2c3d", env={"WORKER_ID": "gpu-reactor-0a1b2c3d"})


async def test_429_on_create_waits_retry_after_then_creates_once(
    runpod: FakeRunpod, provider: RunpodProvider, outcomes: list[tuple[str, str]]
) -> None:
    runpod.faults.rate_limit_next(1, retry_after=1, method="POST", path="/pods")

    pod = await provider.create(SPEC)

    first, second = runpod.create_calls
    assert (first.status, second.status) == (429, 201)
    assert second.time - first.time >= 0.95
    assert [p.id for p in runpod.created] == [pod.id]
    assert outcomes == [("create", "rate_limited"), ("create", "ok")]


async def test_429_is_retried_at_most_twice(runpod: FakeRunpod, provider: RunpodProvider) -> None:
    runpod.faults.rate_limit_next(None, retry_after=0.05)

    with pytest.raises(RateLimited) as caught:
        await provider.list_pods()

    assert caught.value.retry_after == pytest.approx(0.05)
    assert caught.value.status == 429
    assert len(runpod.requests) == 3


async def test_a_long_retry_after_is_raised_at_once_and_later_calls_hold_back(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    runpod.faults.rate_limit_next(1, retry_after=120)

    with pytest.raises(RateLimited) as caught:
        await provider.create(SPEC)
    assert caught.value.retry_after == 120
    assert len(runpod.requests) == 1

    with pytest.raises(RateLimited) as later:  # the RateLimit header said r=0 for 120 s
        await provider.list_pods()
    assert later.value.retry_after > 100
    assert len(runpod.requests) == 1  # nothing sent


async def test_an_exhausted_rate_limit_window_slows_requests_down(
    make_runpod_provider: Callable[..., RunpodProvider],
) -> None:
    async with run_fake_runpod(rate_limit_quota=2, rate_limit_window_sec=1) as server:
        provider = make_runpod_provider(server)
        for _ in range(3):
            await provider.list_pods()

        first, second, third = server.requests
        assert [r.status for r in server.requests] == [200, 200, 200]  # never a 429
        assert third.time - second.time >= 0.5


async def test_a_failing_metrics_hook_does_not_break_calls(runpod: FakeRunpod) -> None:
    def broken(operation: str, outcome: str) -> None:
        raise RuntimeError("metrics down")

    provider = RunpodProvider(settings=runpod_settings(runpod), on_request=broken)
    try:
        assert await provider.list_pods() == []
    finally:
        await provider.close()


# --- the API key never leaks -------------------------------------------------------------------
def assert_not_leaked(secret: str, exc: BaseException, records: list[logging.LogRecord]) -> None:
    chain: BaseException | None = exc
    while chain is not None:
        assert secret not in str(chain) and secret not in repr(chain.args)
        chain = chain.__cause__ or chain.__context__
    for record in records:
        assert secret not in record.getMessage()
        assert secret not in repr(vars(record))


async def test_a_rejected_key_is_not_in_the_error_or_the_logs(
    runpod: FakeRunpod,
    make_runpod_provider: Callable[..., RunpodProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "rpa_WRONGKEY_0123456789abcdef"
    provider = make_runpod_provider(RUNPOD_API_KEY=wrong)

    with pytest.raises(Unauthorized, match="^API key rejected") as caught:
        await provider.list_pods()

    assert caught.value.status == 401
    assert_not_leaked(wrong, caught.value, caplog.records)


async def test_a_key_echoed_by_the_server_is_scrubbed(
    runpod: FakeRunpod,
    provider: RunpodProvider,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = runpod.api_key
    echo = orjson.dumps(
        {
            "title": "Payment Required",
            "status": 402,
            "detail": f"key {key} has no funds",
            "errors": [f"key={key}"],
        }
    )
    runpod.faults.insufficient_balance = True
    runpod.faults.corrupt_next(2, kind=echo, method="POST")

    with pytest.raises(InsufficientBalance) as balance:
        await provider.create(SPEC)
    assert "**********" in str(balance.value)
    assert_not_leaked(key, balance.value, caplog.records)

    build = provider.create_body
    monkeypatch.setattr(provider, "create_body", lambda spec, cand: {**build(spec, cand), "bid": 1})
    runpod.faults.insufficient_balance = False
    with pytest.raises(PermanentProviderError) as invalid:
        await provider.create(SPEC)
    assert invalid.value.status == 422
    assert_not_leaked(key, invalid.value, caplog.records)


@pytest.mark.parametrize("trouble", ["timeout", "cut", "refused"])
async def test_network_failures_do_not_leak_the_key(
    make_runpod_provider: Callable[..., RunpodProvider],
    caplog: pytest.LogCaptureFixture,
    trouble: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with run_fake_runpod() as server:
        provider = make_runpod_provider(server, RUNPOD_REQUEST_TIMEOUT_SEC=0.1)
        if trouble == "timeout":
            server.faults.delay(0.5)
        elif trouble == "cut":
            server.faults.corrupt_next(None, kind="cut")
        if trouble != "refused":
            with pytest.raises(ProviderError) as caught:
                await provider.list_pods()
    if trouble == "refused":  # the server is gone
        with pytest.raises(ProviderError) as caught:
            await provider.list_pods()
    assert_not_leaked(server.api_key, caught.value, caplog.records)
