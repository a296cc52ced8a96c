"""The fake Runpod v2 server keeps the documented contract (tested with a plain client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakePod, FakeRunpod, run_fake_runpod

BODY = {
    "name": "gpu-reactor-1",
    "image": "img:1",
    "gpu": {"id": "NVIDIA L4", "count": 1},
    "env": {"A": "1"},
}


@pytest.fixture
async def http(runpod: FakeRunpod) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {runpod.api_key}"}
    async with aiohttp.ClientSession(base_url=runpod.url + "/", headers=headers) as session:
        yield session


async def call(
    session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, Any]:
    async with session.request(method, path.lstrip("/"), **kwargs) as resp:
        body = await resp.json(content_type=None) if await resp.read() else None
        return resp.status, body, resp.headers


async def test_auth_is_a_bearer_header(runpod: FakeRunpod) -> None:
    async with aiohttp.ClientSession(base_url=runpod.url + "/") as anon:
        status, body, headers = await call(anon, "GET", "pods")
        assert status == 401 and body["status"] == 401
        assert headers["Content-Type"] == "application/problem+json"
        assert headers["x-request-id"]
        status, _, _ = await call(
            anon, "GET", "pods", headers={"Authorization": "Bearer someone-else"}
        )
        assert status == 403


async def test_every_answer_has_request_id_and_rate_limit_headers(
    http: aiohttp.ClientSession,
) -> None:
    _, body, headers = await call(http, "GET", "pods")
    assert body == {"pods": []}
    assert headers["x-request-id"].startswith("req_")
    assert headers["RateLimit"].startswith('"minute";r=599;t=')
    assert headers["RateLimit-Policy"] == '"minute";q=600;w=60'


@pytest.mark.parametrize(
    ("change", "violation"),
    [
        ({"bidPerGpu": 0.3}, "bidPerGpu: unknown field"),
        ({"gpuTypeIds": ["x"]}, "gpuTypeIds: unknown field"),
        ({"name": ""}, "name: required"),
        ({"image": None}, "image: must be"),
        ({"env": [{"key": "A", "value": "1"}]}, "env: must be an object"),
        ({"cloud": "ALL"}, "cloud: must be one of"),
        ({"gpu": {"id": "NVIDIA L4", "count": 0}}, "gpu.count"),
        (
            {"gpu": {"id": "x", "allowedCudaVersions": ["12.4"], "minCudaVersion": "12.4"}},
            "exclusive",
        ),
        (
            {
                "mounts": {
                    "network": [{"volumeId": "v", "path": "/w"}],
                    "persistent": {"size": 10, "path": "/p"},
                }
            },
            "at most one kind",
        ),
    ],
)
async def test_create_rejects_a_broken_body_with_422(
    http: aiohttp.ClientSession, runpod: FakeRunpod, change: dict[str, Any], violation: str
) -> None:
    status, body, _ = await call(http, "POST", "pods", json={**BODY, **change})
    assert status == 422
    assert any(violation in error for error in body["errors"])
    assert not runpod.pods


async def test_pods_walk_the_lifecycle_and_cost_stops_when_exited(
    http: aiohttp.ClientSession, runpod: FakeRunpod
) -> None:
    status, pod, _ = await call(http, "POST", "pods", json=BODY)
    assert status == 201 and pod["status"] == "PROVISIONING" and pod["runtime"] is None
    assert pod["cost"] == pytest.approx(0.43)

    await runpod.wait_until(lambda: runpod.status_of(pod["id"]) == "RUNNING", 5, "RUNNING")
    _, running, _ = await call(http, "GET", f"pods/{pod['id']}")
    assert running["status"] == "RUNNING" and running["runtime"]["gpus"]
    assert running["actions"] == ["stop", "restart", "terminate"]

    status, stopped, _ = await call(
        http, "POST", f"pods/{pod['id']}/action", json={"action": "stop"}
    )
    assert (status, stopped["status"], stopped["cost"]) == (200, "EXITED", 0.0)
    status, problem, _ = await call(
        http, "POST", f"pods/{pod['id']}/action", json={"action": "restart"}
    )
    assert status == 409 and "EXITED" in problem["detail"]
    status, _, _ = await call(
        http, "POST", f"pods/{pod['id']}/action", json={"action": "terminate"}
    )
    assert status == 204
    assert (await call(http, "DELETE", f"pods/{pod['id']}"))[0] == 404
    assert (await call(http, "GET", f"pods/{pod['id']}"))[0] == 404


async def test_hooks_run_for_created_and_terminated_pods() -> None:
    seen: list[tuple[str, str]] = []

    async def created(pod: FakePod) -> None:
        seen.append(("created", pod.name))

    async with run_fake_runpod(
        on_create=created, on_terminate=lambda p: seen.append(("gone", p.name))
    ) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(base_url=server.url + "/", headers=headers) as http:
            _, pod, _ = await call(http, "POST", "pods", json=BODY)
            await call(http, "DELETE", f"pods/{pod['id']}")
        assert seen == [("created", "gpu-reactor-1"), ("gone", "gpu-reactor-1")]
        assert server.hook_errors == []


async def test_paged_list_and_its_limit() -> None:
    async with run_fake_runpod(paged=True, page_size=3) as server:
        for i in range(4):
            server.add_pod(f"p{i}")
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(base_url=server.url + "/", headers=headers) as http:
            _, first, _ = await call(http, "GET", "pods", params={"limit": "2"})
            assert [p["name"] for p in first["pods"]] == ["p0", "p1"]
            assert first["pagination"]["hasNextPage"] is True
            cursor = first["pagination"]["nextCursor"]
            _, rest, _ = await call(http, "GET", "pods", params={"cursor": cursor})
            assert [p["name"] for p in rest["pods"]] == ["p2", "p3"]
            assert rest["pagination"] == {"nextCursor": None, "hasNextPage": False}
            assert (await call(http, "GET", "pods", params={"limit": "0"}))[0] == 422


async def test_faults_and_waiting_helpers(http: aiohttp.ClientSession, runpod: FakeRunpod) -> None:
    runpod.faults.capacity_errors = 1
    runpod.faults.fail_next(1, status=502, method="GET", path="/catalog/*")
    runpod.faults.rate_limit_next(1, retry_after=7, method="GET", path="/pods")

    status, problem, _ = await call(http, "POST", "pods", json=BODY)
    assert status == 400 and "no longer any instances" in problem["detail"]
    assert (await call(http, "GET", "catalog/gpus"))[0] == 502
    status, _, headers = await call(http, "GET", "pods")
    assert status == 429 and headers["Retry-After"] == "7"
    assert (await call(http, "POST", "pods", json=BODY))[0] == 201

    created = await runpod.wait_for_create(timeout=1, count=2)
    assert created.status == 201 and created.body == BODY
    with pytest.raises(TimeoutError):
        await runpod.wait_for_create(timeout=0.05, count=3)
    _, catalog, _ = await call(
        http, "GET", "catalog/gpus", params={"include": "AVAILABILITY", "product": "POD"}
    )
    l4 = next(g for g in catalog["gpus"] if g["id"] == "NVIDIA L4")
    assert l4["price"] == {"secure": 0.43, "community": 0.24}
    assert l4["availability"] == "HIGH" and l4["dataCenters"]
