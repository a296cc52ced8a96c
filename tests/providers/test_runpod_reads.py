"""RunpodProvider list / get / terminate / estimated_price against the fake over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from reactor.errors import Forbidden, PermanentProviderError, TransientProviderError
from reactor.providers.runpod import RunpodProvider
from tests.fakes import FakeRunpod, run_fake_runpod
from tests.providers.conftest import GPU_A, GPU_B, FakeClock


async def test_the_list_returns_every_pod(runpod: FakeRunpod, provider: RunpodProvider) -> None:
    notebook = runpod.add_pod("alice-notebook", env={"JUPYTER_TOKEN": "x"})
    stray = runpod.add_fleet_pod("gpu-reactor")
    exited = runpod.add_pod("old-job", status="EXITED")

    pods = {p.id: p for p in await provider.list_pods()}

    assert set(pods) == {notebook.id, stray.id, exited.id}
    assert pods[stray.id].belongs_to("gpu-reactor")
    assert not pods[notebook.id].belongs_to("gpu-reactor")
    assert pods[exited.id].status == "EXITED" and not pods[exited.id].live
    assert pods[exited.id].cost_per_hr == 0.0
    assert pods[notebook.id].cost_per_hr == pytest.approx(0.69)
    assert pods[notebook.id].created_at is not None


async def test_the_list_sends_nothing_the_document_does_not_declare(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    await provider.list_pods()
    [call] = runpod.calls("GET", "/pods")
    assert call.query == {}  # no limit, no cursor: listPods declares neither


async def test_a_pagination_object_is_tolerated_but_its_cursor_never_followed(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    done = {"pods": [{"id": "a"}], "pagination": {"nextCursor": None, "hasNextPage": False}}
    runpod.faults.corrupt_next(1, kind=orjson.dumps(done), method="GET", path="/pods")
    assert [p.id for p in await provider.list_pods()] == ["a"]

    more = {"pods": [{"id": "a"}], "pagination": {"nextCursor": "c2", "hasNextPage": True}}
    runpod.faults.corrupt_next(None, kind=orjson.dumps(more), method="GET", path="/pods")
    with pytest.raises(TransientProviderError, match="refusing to act on part of the pods"):
        await provider.list_pods()
    assert all(call.query == {} for call in runpod.calls("GET", "/pods"))


async def test_lenient_parsing_ignores_unknown_and_missing_fields(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    body = {
        "pods": [
            {"id": "p1", "brandNewField": {"x": 1}},
            {
                "id": "p2",
                "name": "n",
                "status": "running",
                "cost": None,
                "gpu": "odd",
                "env": [{"key": "GPU_REACTOR_FLEET", "value": "f"}],
                "createdAt": "yesterday",
            },
            {
                "id": "p3",
                "name": "m",
                "cost": "0.5",
                "createdAt": "2026-08-18 12:00:00.000 +0000 UTC",
            },
        ],
        "somethingElse": True,
    }
    runpod.faults.corrupt_next(1, kind=orjson.dumps(body), method="GET", path="/pods")

    p1, p2, p3 = await provider.list_pods()

    assert (p1.id, p1.name, p1.status, p1.cost_per_hr, p1.gpu_type, p1.env) == (
        "p1",
        "",
        "UNKNOWN",
        0.0,
        None,
        {},
    )
    assert (p2.status, p2.cost_per_hr, p2.env, p2.created_at) == (
        "RUNNING",
        0.0,
        {"GPU_REACTOR_FLEET": "f"},
        None,
    )
    assert p3.cost_per_hr == 0.5
    assert p3.created_at is not None and p3.created_at.year == 2026


MALFORMED_LISTS = [
    "truncated",
    "garbage",
    "cut",
    "wrong_shape",
    b"[]",
    b"null",
    b'"pods"',
    b'{"pods": "none"}',
    b'{"pods": [1, 2]}',
    b'{"pods": [{"name": "no id"}]}',
    b'{"pods": [{"id": 7}]}',
    b'{"pods": [], "pagination": {"hasNextPage": true}}',
    b'{"pods": [], "pagination": {"hasNextPage": "yes", "nextCursor": "c"}}',
    b'{"pods": [{"id": "a"}], "pagination": {"nextCursor": "same", "hasNextPage": true}}',
]


@pytest.mark.parametrize("spoil", MALFORMED_LISTS, ids=lambda s: str(s)[:40])
async def test_a_malformed_list_is_a_transient_error(
    runpod: FakeRunpod, provider: RunpodProvider, spoil: str | bytes
) -> None:
    runpod.add_pod("someone")
    runpod.faults.corrupt_next(None, kind=spoil, method="GET", path="/pods")

    with pytest.raises(TransientProviderError) as caught:
        await provider.list_pods()

    assert "Runpod" in str(caught.value) or "pod list" in str(caught.value)


@pytest.mark.parametrize("spoil", ["truncated", "garbage", "wrong_shape", b'{"id": ""}'])
async def test_a_malformed_pod_is_a_transient_error(
    runpod: FakeRunpod, provider: RunpodProvider, spoil: str | bytes
) -> None:
    pod = runpod.add_pod("someone")
    runpod.faults.corrupt_next(None, kind=spoil, method="GET", path="/pods/*")

    with pytest.raises(TransientProviderError):
        await provider.get(pod.id)


async def test_reads_are_retried_after_server_errors(
    runpod: FakeRunpod, provider: RunpodProvider, outcomes: list[tuple[str, str]]
) -> None:
    pod = runpod.add_pod("someone")
    runpod.faults.fail_next(2, status=502, method="GET", path="/pods")
    runpod.faults.fail_next(1, status=500, method="GET", path="/pods/*")

    assert [p.id for p in await provider.list_pods()] == [pod.id]
    got = await provider.get(pod.id)

    assert got is not None and got.id == pod.id
    assert len(runpod.calls("GET", "/pods")) == 3
    assert outcomes == [
        ("list", "server_error"),
        ("list", "server_error"),
        ("list", "ok"),
        ("get", "server_error"),
        ("get", "ok"),
    ]


async def test_reads_give_up_after_a_bounded_number_of_retries(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    runpod.faults.fail_next(None, status=503, method="GET")

    with pytest.raises(TransientProviderError) as caught:
        await provider.list_pods()

    assert caught.value.status == 503
    assert caught.value.request_id == runpod.requests[-1].request_id
    assert len(runpod.requests) == 4  # one try and three retries


async def test_get_of_a_missing_pod_is_none(runpod: FakeRunpod, provider: RunpodProvider) -> None:
    assert await provider.get("nosuchpod") is None
    pod = runpod.add_pod("someone")
    got = await provider.get(pod.id)
    assert got is not None and got.name == "someone"


async def test_terminate_deletes_and_a_missing_pod_is_success(
    runpod: FakeRunpod, provider: RunpodProvider, outcomes: list[tuple[str, str]]
) -> None:
    pod = runpod.add_pod("someone")

    await provider.terminate(pod.id)
    await provider.terminate(pod.id)
    await provider.terminate("neverexisted")

    assert pod.id in runpod.terminated and pod.id not in runpod.pods
    assert [c.status for c in runpod.calls("DELETE")] == [204, 404, 404]
    assert outcomes == [("terminate", "ok"), ("terminate", "not_found"), ("terminate", "not_found")]


async def test_terminate_is_retried_after_a_lost_answer(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    pod = runpod.add_pod("someone")
    runpod.faults.corrupt_next(1, kind="cut", method="DELETE")  # the 500 is cut mid-body
    runpod.faults.fail_next(1, status=500, method="DELETE")

    await provider.terminate(pod.id)

    assert pod.id in runpod.terminated
    assert [c.status for c in runpod.calls("DELETE")] == [500, 204]


async def test_a_key_without_access_is_403_naming_the_resource(
    runpod: FakeRunpod, provider: RunpodProvider
) -> None:
    pod = runpod.add_pod("someone")
    runpod.faults.deny(method="GET")
    with pytest.raises(Forbidden) as listing:
        await provider.list_pods()
    assert listing.value.resource == "the pod list (GET /v2/pods)"
    assert str(listing.value).startswith("the API key is valid but has no access to the pod list")
    with pytest.raises(Forbidden, match=f"pod {pod.id}"):
        await provider.get(pod.id)
    runpod.faults.clear()
    runpod.faults.deny(method="DELETE")
    with pytest.raises(Forbidden, match=f"DELETE /v2/pods/{pod.id}"):
        await provider.terminate(pod.id)


async def test_a_wrong_api_url_is_a_permanent_error_naming_the_setting(
    make_runpod_provider: Callable[..., RunpodProvider], runpod: FakeRunpod
) -> None:
    provider = make_runpod_provider(RUNPOD_API_URL=runpod.url.removesuffix("/v2") + "/v1")
    with pytest.raises(PermanentProviderError, match="RUNPOD_API_URL"):
        await provider.list_pods()


# --- price ---------------------------------------------------------------------------------------
async def test_price_comes_from_the_catalog_and_is_cached(
    make_runpod_provider: Callable[..., RunpodProvider], clock: FakeClock
) -> None:
    async with run_fake_runpod(prices={GPU_A: (0.69, 0.34), GPU_B: (0.79, 0.44)}) as server:
        secure = make_runpod_provider(server, RUNPOD_GPU_TYPES=GPU_A)
        community = make_runpod_provider(
            server, RUNPOD_GPU_TYPES=f"{GPU_A},{GPU_B}", RUNPOD_CLOUD="COMMUNITY"
        )

        assert await secure.estimated_price() == pytest.approx(0.69)
        assert await secure.estimated_price() == pytest.approx(0.69)
        assert len(server.calls("GET", "/catalog/gpus")) == 1
        clock.advance(301)
        await secure.estimated_price()
        assert len(server.calls("GET", "/catalog/gpus")) == 2
        # the dearest configured type: a fallback must not break the budget
        assert await community.estimated_price() == pytest.approx(0.44)


async def test_price_falls_back_to_the_setting_then_to_none(
    make_runpod_provider: Callable[..., RunpodProvider], runpod: FakeRunpod
) -> None:
    runpod.faults.fail_next(None, status=500, path="/catalog/gpus")
    assert await make_runpod_provider(GPU_HOURLY_PRICE_USD=1.25).estimated_price() == 1.25
    assert await make_runpod_provider().estimated_price() is None
    unknown = make_runpod_provider(RUNPOD_GPU_TYPES="NVIDIA B200")
    runpod.faults.clear()
    assert await unknown.estimated_price() is None
