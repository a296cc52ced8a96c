"""RunpodProvider.create against the fake v2 server over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reactor.errors import (
    CapacityError,
    InsufficientBalance,
    PermanentProviderError,
    TransientProviderError,
)
from reactor.providers.base import PodSpec
from reactor.providers.runpod import RunpodProvider
from tests.fakes import FakeRunpod, run_fake_runpod
from tests.fakes.runpod_v2_wire import NO_CAPACITY
from tests.providers.conftest import GPU_A, GPU_B, GPU_C, FakeClock

SPEC = PodSpec(
    name="gpu-reactor-0a1b2c3d",
    env={
        "WORKER_ID": "gpu-reactor-0a1b2c3d",
        "DATABASE_URL": "postgresql://w@db/x",
        "GPU_REACTOR_FLEET": "gpu-reactor",
    },
)


def gpus_asked(runpod: FakeRunpod) -> list[str]:
    return [call.body["gpu"]["id"] for call in runpod.create_calls]


async def test_create_sends_exactly_the_documented_body(
    runpod: FakeRunpod, provider: RunpodProvider, outcomes: list[tuple[str, str]]
) -> None:
    pod = await provider.create(SPEC)

    [call] = runpod.create_calls
    assert call.body == {
        "name": SPEC.name,
        "image": "ghcr.io/gpu-reactor/gpu-worker:latest",
        "gpu": {"id": GPU_A, "count": 1},
        "cloud": "SECURE",
        "disk": 50,
        "env": SPEC.env,
    }
    assert call.status == 201
    made = runpod.pod_by_name(SPEC.name)
    assert made is not None
    assert (pod.id, pod.name, pod.status, pod.gpu_type) == (
        made.id,
        SPEC.name,
        "PROVISIONING",
        GPU_A,
    )
    assert pod.cost_per_hr == pytest.approx(0.69)
    assert pod.env == SPEC.env
    assert pod.belongs_to("gpu-reactor")
    assert outcomes == [("create", "ok")]


async def test_data_center_and_network_volume_are_sent_per_candidate(
    make_runpod_provider: Callable[..., RunpodProvider],
) -> None:
    async with run_fake_runpod(network_volumes={"vol-1": "EU-RO-1"}) as server:
        provider = make_runpod_provider(
            server,
            RUNPOD_GPU_TYPES=GPU_A,
            RUNPOD_DATA_CENTERS="US-TX-3,EU-RO-1",
            RUNPOD_NETWORK_VOLUME_ID="vol-1",
            RUNPOD_CLOUD="COMMUNITY",
        )
        pod = await provider.create(SPEC)

        first, second = server.create_calls
        assert first.body["dataCenterIds"] == ["US-TX-3"]
        assert first.status == 400  # the volume lives elsewhere: a cross-field refusal
        assert second.body["dataCenterIds"] == ["EU-RO-1"]
        assert second.body["mounts"] == {"network": [{"volumeId": "vol-1", "path": "/workspace"}]}
        assert second.body["cloud"] == "COMMUNITY"
        assert server.pods[pod.id].data_center_id == "EU-RO-1"
        assert pod.cost_per_hr == pytest.approx(0.34)


HEADLESS_ARGS = (
    "bash -c 'cd /workspace/Headless-Wan2GP && exec python worker.py "
    '--supabase-url "$SUPABASE_URL" --worker "$WORKER_ID"\''
)


async def test_container_args_are_sent_as_the_documented_args_field(
    make_runpod_provider: Callable[..., RunpodProvider],
) -> None:
    async with run_fake_runpod() as server:
        provider = make_runpod_provider(
            server, RUNPOD_GPU_TYPES=GPU_A, RUNPOD_CONTAINER_ARGS=HEADLESS_ARGS
        )
        await provider.create(SPEC)

        [call] = server.create_calls
        assert call.status == 201  # the fake validates the body against the contract
        assert call.body["args"] == HEADLESS_ARGS
        assert call.body["env"]["WORKER_ID"] == SPEC.name


async def test_a_body_with_a_field_v2_rejects_is_a_permanent_error(
    runpod: FakeRunpod, provider: RunpodProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = provider.create_body

    def with_spot_bid(spec: PodSpec, candidate: Any) -> dict[str, Any]:
        return {**build(spec, candidate), "bidPerGpu": 0.2, "countryCodes": ["RO"]}

    monkeypatch.setattr(provider, "create_body", with_spot_bid)
    with pytest.raises(PermanentProviderError) as caught:
        await provider.create(SPEC)

    assert caught.value.status == 422
    assert "Unevaluated properties are not allowed" in str(caught.value)
    assert "'bidPerGpu'" in str(caught.value) and "'countryCodes'" in str(caught.value)
    assert len(runpod.create_calls) == 1  # never retried, no other candidate tried
    assert not runpod.pods


async def test_no_capacity_falls_back_to_the_next_gpu_type(
    runpod: FakeRunpod, provider: RunpodProvider, outcomes: list[tuple[str, str]]
) -> None:
    runpod.faults.no_capacity_gpus |= {GPU_A, GPU_B}

    pod = await provider.create(SPEC)

    assert gpus_asked(runpod) == [GPU_A, GPU_B, GPU_C]
    assert pod.gpu_type == GPU_C
    assert len(runpod.pods) == 1
    assert outcomes == [("create", "capacity"), ("create", "capacity"), ("create", "ok")]


async def test_a_candidate_without_capacity_is_backed_off_then_retried(
    runpod: FakeRunpod, provider: RunpodProvider, clock: FakeClock
) -> None:
    runpod.faults.no_capacity_gpus.add(GPU_A)
    await provider.create(SPEC)
    await provider.create(PodSpec(name="gpu-reactor-2", env={}))
    assert gpus_asked(runpod) == [GPU_A, GPU_B, GPU_B]  # A skipped while backing off

    runpod.faults.clear()
    clock.advance(29)
    await provider.create(PodSpec(name="gpu-reactor-3", env={}))
    clock.advance(2)  # SPAWN_FAILURE_BACKOFF_SEC = 30 has passed
    await provider.create(PodSpec(name="gpu-reactor-4", env={}))
    assert gpus_asked(runpod)[3:] == [GPU_B, GPU_A]
    assert provider.book.ready(clock())[0] == provider.candidates()[0]  # success reset it


async def test_every_candidate_refused_raises_capacity_error_with_the_last_detail(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    runpod.faults.no_capacity_gpus |= {GPU_A, GPU_B, GPU_C}

    with pytest.raises(CapacityError) as caught:
        await provider.create(SPEC)

    assert NO_CAPACITY in str(caught.value)
    assert GPU_C in str(caught.value)
    assert caught.value.status == 400
    assert caught.value.request_id == runpod.create_calls[-1].request_id
    assert len(runpod.create_calls) == 3

    with pytest.raises(CapacityError, match="backing off"):
        await provider.create(SPEC)
    assert len(runpod.create_calls) == 3  # no request while every candidate waits


async def test_insufficient_balance_stops_at_once(
    runpod: FakeRunpod, provider: RunpodProvider, outcomes: list[tuple[str, str]]
) -> None:
    runpod.faults.insufficient_balance = True

    with pytest.raises(InsufficientBalance) as caught:
        await provider.create(SPEC)

    assert caught.value.status == 402
    assert "balance" in str(caught.value)
    assert len(runpod.create_calls) == 1
    assert outcomes == [("create", "insufficient_balance")]


async def test_forbidden_candidates_are_skipped(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    runpod.faults.forbidden_gpus.add(GPU_A)
    pod = await provider.create(SPEC)
    assert pod.gpu_type == GPU_B

    runpod.faults.forbidden_gpus |= {GPU_B, GPU_C}
    with pytest.raises(PermanentProviderError, match="no access") as caught:
        await provider.create(PodSpec(name="gpu-reactor-2", env={}))
    assert caught.value.status == 403


# --- a create whose answer is lost: look up by name, never create twice -------------------------
async def test_create_answered_500_after_making_the_pod_returns_that_pod(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    runpod.faults.create_fails_after_pod = 1

    pod = await provider.create(SPEC)

    assert len(runpod.create_calls) == 1
    assert [p.id for p in runpod.created] == [pod.id]
    assert pod.name == SPEC.name
    assert runpod.calls("GET", "/pods")  # it looked the pod up by name


@pytest.mark.parametrize("spoil", ["truncated", "garbage", "cut", "wrong_shape"])
async def test_create_with_an_unreadable_answer_returns_the_pod_it_made(
    runpod: FakeRunpod, provider: RunpodProvider, spoil: str
) -> None:
    runpod.faults.corrupt_next(1, kind=spoil, method="POST", path="/pods")

    pod = await provider.create(SPEC)

    assert len(runpod.create_calls) == 1
    assert [p.id for p in runpod.created] == [pod.id]


async def test_a_create_has_its_own_longer_timeout(
    make_runpod_provider: Callable[..., RunpodProvider],
    runpod: FakeRunpod,
    outcomes: list[tuple[str, str]],
) -> None:
    # Slower than a read may be, well within RUNPOD_CREATE_TIMEOUT_SEC: no uncertainty.
    provider = make_runpod_provider(RUNPOD_REQUEST_TIMEOUT_SEC=0.1, RUNPOD_CREATE_TIMEOUT_SEC=5)
    runpod.faults.delay(0.4, 1, method="POST", path="/pods")

    pod = await provider.create(SPEC)

    assert [p.id for p in runpod.created] == [pod.id]
    assert outcomes == [("create", "ok")]
    assert not runpod.calls("GET", "/pods")  # no lookup by name was needed


async def test_create_that_times_out_returns_the_pod_it_made(
    make_runpod_provider: Callable[..., RunpodProvider],
    runpod: FakeRunpod,
    outcomes: list[tuple[str, str]],
) -> None:
    provider = make_runpod_provider(RUNPOD_CREATE_TIMEOUT_SEC=0.2)
    runpod.faults.delay(1.0, 1, method="POST", path="/pods")

    pod = await provider.create(SPEC)

    assert len(runpod.create_calls) == 1
    assert [p.id for p in runpod.created] == [pod.id]
    assert ("create", "timeout") in outcomes


async def test_create_answered_500_without_a_pod_is_not_repeated(
    runpod: FakeRunpod, provider: RunpodProvider, clock: FakeClock
) -> None:
    runpod.faults.fail_next(1, status=503, method="POST", path="/pods")

    with pytest.raises(TransientProviderError, match="no pod of that name exists") as caught:
        await provider.create(SPEC)

    assert caught.value.status == 503
    assert "4 lookups over 10s" in str(caught.value)
    assert len(runpod.create_calls) == 1
    assert len(runpod.calls("GET", "/pods")) == 4
    assert clock.slept == [1.0, 3.0, 6.0]  # on the test's clock: no wall-clock wait
    assert not runpod.pods


@pytest.mark.parametrize(("lag", "lookups"), [(0.5, 2), (3.5, 3), (9.5, 4)])
async def test_the_lookup_after_a_lost_create_absorbs_listing_lag(
    make_runpod_provider: Callable[..., RunpodProvider],
    clock: FakeClock,
    lag: float,
    lookups: int,
) -> None:
    async with run_fake_runpod(clock=clock) as server:
        server.faults.list_lag_sec = lag
        server.faults.create_fails_after_pod = 1
        provider = make_runpod_provider(server)

        pod = await provider.create(SPEC)

        assert [p.id for p in server.created] == [pod.id]
        assert len(server.create_calls) == 1
        assert len(server.calls("GET", "/pods")) == lookups


async def test_a_pod_the_list_shows_only_after_the_lookups_is_left_to_the_sweep(
    make_runpod_provider: Callable[..., RunpodProvider], clock: FakeClock
) -> None:
    async with run_fake_runpod(clock=clock) as server:
        server.faults.list_lag_sec = 15
        server.faults.create_fails_after_pod = 1
        provider = make_runpod_provider(server)

        with pytest.raises(TransientProviderError, match="no pod of that name exists"):
            await provider.create(SPEC)

        assert len(server.create_calls) == 1  # never created again
        assert sum(clock.slept) == pytest.approx(10.0)
        clock.advance(5)
        found = await provider.find_by_name(SPEC.name)  # what the sweep's list will show
        assert found is not None and found.id == server.created[0].id


async def test_create_lookup_failing_too_is_a_transient_error(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    runpod.faults.fail_next(1, method="POST", path="/pods")
    runpod.faults.fail_next(None, method="GET", path="/pods")

    with pytest.raises(TransientProviderError, match="lookup by name failed"):
        await provider.create(SPEC)
    assert len(runpod.create_calls) == 1
    assert len(runpod.calls("GET", "/pods")) == 4 * 4  # four lookups, each retried thrice
