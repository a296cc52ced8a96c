"""What RunpodProvider.create does with Runpod's refusals, over real HTTP to the fake: a
400 that is not the no-capacity text, a pod placed outside its network volume's data
center, a rejected key. The pure decisions: test_runpod_answers.py."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from reactor.errors import CapacityError, PermanentProviderError, RequestRejected, Unauthorized
from reactor.providers.base import PodSpec
from reactor.providers.runpod import RunpodProvider
from reactor.providers.runpod_create import REJECTED_HOLD_SEC
from tests.fakes import FakeRunpod, run_fake_runpod
from tests.providers.conftest import GPU_A, GPU_B, GPU_C, FakeClock

SPEC = PodSpec(name="gpu-reactor-0a1b2c3d", env={"GPU_REACTOR_FLEET": "gpu-reactor"})
UNKNOWN_GPU = "NVIDIA B300"  # the fake answers 400 "Unknown GPU type": a request problem


def gpus_asked(runpod: FakeRunpod) -> list[str]:
    return [call.body["gpu"]["id"] for call in runpod.create_calls]


def rejected_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "runpod_create_rejected"]


async def test_a_400_that_is_not_no_capacity_holds_that_candidate_for_long(
    runpod: FakeRunpod,
    make_runpod_provider: Callable[..., RunpodProvider],
    clock: FakeClock,
    outcomes: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    provider = make_runpod_provider(RUNPOD_GPU_TYPES=f"{UNKNOWN_GPU},{GPU_B}")

    pod = await provider.create(SPEC)

    assert pod.gpu_type == GPU_B
    assert outcomes == [("create", "rejected"), ("create", "ok")]
    [line] = rejected_lines(caplog)
    assert vars(line)["candidate"] == f"{UNKNOWN_GPU} in any data center"
    assert vars(line)["detail"] == f"Unknown GPU type {UNKNOWN_GPU!r}."
    assert vars(line)["wait_sec"] == REJECTED_HOLD_SEC
    # Not the 30 s capacity backoff: the rejected candidate waits ten minutes.
    clock.advance(31)
    await provider.create(PodSpec(name="gpu-reactor-2", env={}))
    clock.advance(REJECTED_HOLD_SEC - 31)
    await provider.create(PodSpec(name="gpu-reactor-3", env={}))
    assert gpus_asked(runpod) == [UNKNOWN_GPU, GPU_B, GPU_B, UNKNOWN_GPU, GPU_B]


async def test_every_candidate_rejecting_the_request_raises_request_rejected(
    runpod: FakeRunpod, make_runpod_provider: Callable[..., RunpodProvider], clock: FakeClock
) -> None:
    async with run_fake_runpod(network_volumes={"vol-1": "EU-RO-1"}) as server:
        provider = make_runpod_provider(
            server,
            RUNPOD_GPU_TYPES=f"{GPU_A},{GPU_B}",
            RUNPOD_DATA_CENTERS="US-TX-3",
            RUNPOD_NETWORK_VOLUME_ID="vol-1",
        )
        with pytest.raises(RequestRejected) as caught:
            await provider.create(SPEC)

        error = caught.value
        assert "as a request problem, not for capacity" in str(error)
        assert "Network volume vol-1 is in EU-RO-1" in str(error)
        assert f"last, {GPU_B} in US-TX-3" in str(error)
        assert error.status == 400 and error.request_id == server.create_calls[-1].request_id
        assert error.retry_after == pytest.approx(REJECTED_HOLD_SEC)
        assert len(server.create_calls) == 2

        clock.advance(60)
        with pytest.raises(RequestRejected) as again:  # no request while every one is held
            await provider.create(SPEC)
        assert again.value.retry_after == pytest.approx(REJECTED_HOLD_SEC - 60)
        assert len(server.create_calls) == 2


async def test_a_candidate_without_capacity_keeps_the_error_a_capacity_error(
    runpod: FakeRunpod, make_runpod_provider: Callable[..., RunpodProvider]
) -> None:
    runpod.faults.no_capacity_gpus.add(GPU_A)
    provider = make_runpod_provider(RUNPOD_GPU_TYPES=f"{GPU_A},{UNKNOWN_GPU}")

    with pytest.raises(CapacityError) as caught:
        await provider.create(SPEC)

    assert not isinstance(caught.value, RequestRejected)
    assert "1 rejected the request itself" in str(caught.value)


async def test_any_400_body_without_the_no_capacity_text_is_a_request_problem(
    runpod: FakeRunpod, make_runpod_provider: Callable[..., RunpodProvider]
) -> None:
    provider = make_runpod_provider(RUNPOD_GPU_TYPES=GPU_C)
    runpod.faults.fail_next(1, status=400, method="POST", path="/pods")
    runpod.faults.corrupt_next(1, kind=b"<html>Bad Request</html>", method="POST", path="/pods")

    with pytest.raises(RequestRejected, match="Bad Request"):
        await provider.create(SPEC)


# --- dataCenterIds is a preference ------------------------------------------------------
async def test_a_pod_outside_its_volumes_data_center_is_terminated_at_once(
    make_runpod_provider: Callable[..., RunpodProvider],
    outcomes: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with run_fake_runpod(network_volumes={"vol-1": "EU-RO-1"}) as server:
        provider = make_runpod_provider(
            server,
            RUNPOD_GPU_TYPES=f"{GPU_A},{GPU_B}",
            RUNPOD_DATA_CENTERS="EU-RO-1",
            RUNPOD_NETWORK_VOLUME_ID="vol-1",
        )
        server.faults.misplace_next("US-TX-3")

        pod = await provider.create(SPEC)
        await provider.create(PodSpec(name="gpu-reactor-2", env={}))

        misplaced, placed = server.created[:2]
        assert misplaced.data_center_id == "US-TX-3" and misplaced.id in server.terminated
        assert placed.id == pod.id and server.pods[pod.id].data_center_id == "EU-RO-1"
        assert pod.gpu_type == GPU_B  # the candidate that misplaced is held like a rejection
        assert gpus_asked(server) == [GPU_A, GPU_B, GPU_B]
        assert outcomes[:4] == [
            ("volume", "ok"),
            ("create", "misplaced"),
            ("terminate", "ok"),
            ("create", "ok"),
        ]
        assert len(server.calls("GET", "/network-volumes/vol-1")) == 1  # read once
        [line] = rejected_lines(caplog)
        assert (
            "placed in US-TX-3, outside the network volume's data center EU-RO-1"
            in (vars(line)["detail"])
        )


async def test_while_the_volume_cannot_be_read_the_data_center_asked_for_is_required(
    make_runpod_provider: Callable[..., RunpodProvider],
) -> None:
    async with run_fake_runpod(network_volumes={"vol-1": "EU-RO-1"}) as server:
        server.faults.fail_next(None, status=503, method="GET", path="/network-volumes/*")
        server.faults.misplace_next("US-TX-3")
        provider = make_runpod_provider(
            server,
            RUNPOD_GPU_TYPES=f"{GPU_A},{GPU_B}",
            RUNPOD_DATA_CENTERS="EU-RO-1",
            RUNPOD_NETWORK_VOLUME_ID="vol-1",
        )

        pod = await provider.create(SPEC)

        assert server.created[0].id in server.terminated
        assert server.pods[pod.id].data_center_id == "EU-RO-1"


async def test_without_a_volume_a_pod_elsewhere_is_kept(
    runpod: FakeRunpod, make_runpod_provider: Callable[..., RunpodProvider]
) -> None:
    provider = make_runpod_provider(RUNPOD_DATA_CENTERS="EU-RO-1")
    runpod.faults.misplace_next("US-TX-3")

    pod = await provider.create(SPEC)

    assert runpod.pods[pod.id].data_center_id == "US-TX-3"
    assert not runpod.terminated and len(runpod.create_calls) == 1


# --- the key ---------------------------------------------------------------------------------
async def test_a_rejected_key_on_create_stops_at_once(
    make_runpod_provider: Callable[..., RunpodProvider], runpod: FakeRunpod
) -> None:
    provider = make_runpod_provider(RUNPOD_API_KEY="rpa_not_the_key")
    with pytest.raises(Unauthorized, match="^API key rejected.*RUNPOD_API_KEY") as caught:
        await provider.create(SPEC)
    assert caught.value.status == 401
    assert len(runpod.create_calls) == 1  # no other candidate can help


async def test_a_key_without_access_to_one_pool_skips_that_candidate(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    runpod.faults.forbidden_gpus.add(GPU_A)
    assert (await provider.create(SPEC)).gpu_type == GPU_B
    runpod.faults.deny(method="POST", path="/pods")
    with pytest.raises(PermanentProviderError) as caught:
        await provider.create(PodSpec(name="gpu-reactor-2", env={}))
    # 403 on a create is per candidate (the pool), not the key: skipped, never Forbidden
    assert type(caught.value) is PermanentProviderError
    assert "no access to any candidate (2 tried, HTTP 403)" in str(caught.value)


# --- gpu.count -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"RUNPOD_DATA_CENTERS": "US-TX-3,EU-RO-1"},
        {"RUNPOD_CLOUD": "COMMUNITY", "RUNPOD_NETWORK_VOLUME_ID": "vol-1"},
    ],
)
async def test_gpu_count_is_always_sent(
    make_runpod_provider: Callable[..., RunpodProvider], overrides: dict[str, str]
) -> None:
    # Without it Runpod answers a misleading 400 "no instances available".
    provider = make_runpod_provider(**overrides)
    for candidate in provider.candidates():
        assert provider.create_body(SPEC, candidate)["gpu"] == {
            "id": candidate.gpu_type,
            "count": 1,
        }
