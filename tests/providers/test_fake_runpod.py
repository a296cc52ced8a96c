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


async def test_auth_is_a_bearer_header_and_a_bad_key_is_401(
    runpod: FakeRunpod, http: aiohttp.ClientSession
) -> None:
    async with aiohttp.ClientSession(base_url=runpod.url + "/") as anon:
        status, body, headers = await call(anon, "GET", "pods")
        assert status == 401 and body == {
            "title": "Unauthorized",
            "status": 401,
            "detail": "missing bearer token",
        }
        assert headers["Content-Type"] == "application/problem+json"
        assert headers["x-request-id"]
        status, body, _ = await call(
            anon, "GET", "pods", headers={"Authorization": "Bearer someone-else"}
        )
        assert (status, body["detail"]) == (401, "invalid bearer token")
    # 403 is a valid key without access to the resource
    runpod.faults.deny(1, method="GET", path="/pods")
    status, body, _ = await call(http, "GET", "pods")
    assert (status, body["detail"]) == (403, "access denied")
    assert (await call(http, "GET", "pods"))[0] == 200


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
        ({"bidPerGpu": 0.3}, "'bidPerGpu' was unexpected"),
        ({"gpuTypeIds": ["x"]}, "'gpuTypeIds' was unexpected"),
        ({"name": ""}, "$.name: '' should be non-empty"),
        ({"image": None}, "$.image: None is not of type 'string'"),
        ({"env": [{"key": "A", "value": "1"}]}, "$.env: [{'key': 'A', 'value': '1'}] is not of"),
        ({"cloud": "ALL"}, "$.cloud: 'ALL' is not one of ['SECURE', 'COMMUNITY']"),
        ({"gpu": {"id": "NVIDIA L4", "count": 0}}, "$.gpu.count: 0 is less than the minimum"),
        ({"gpu": {"id": "NVIDIA L4", "bid": 1}}, "'bid' was unexpected"),
        ({"mounts": {"persistent": {"size": 5, "path": "/p"}}}, "$.mounts.persistent.size"),
    ],
)
async def test_create_answers_422_to_a_body_the_schema_refuses(
    http: aiohttp.ClientSession, runpod: FakeRunpod, change: dict[str, Any], violation: str
) -> None:
    status, body, _ = await call(http, "POST", "pods", json={**BODY, **change})
    assert (status, body["detail"]) == (422, "Request validation failed.")
    assert any(violation in error for error in body["errors"]), body["errors"]
    assert not runpod.pods


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            {"gpu": {"id": "NVIDIA L4", "allowedCudaVersions": ["12.4"], "minCudaVersion": "12.4"}},
            "mutually exclusive",
        ),
        (
            {
                "mounts": {
                    "network": [{"volumeId": "v", "path": "/w"}],
                    "persistent": {"size": 10, "path": "/p"},
                }
            },
            "At most one of mounts.persistent and mounts.network",
        ),
        ({"gpu": {"id": "NVIDIA B300", "count": 1}}, "Unknown GPU type"),
        ({"mounts": {"network": [{"volumeId": "nowhere", "path": "/w"}]}}, "does not exist"),
    ],
)
async def test_create_answers_400_to_a_cross_field_rule(
    http: aiohttp.ClientSession, runpod: FakeRunpod, change: dict[str, Any], detail: str
) -> None:
    status, body, _ = await call(http, "POST", "pods", json={**BODY, **change})
    assert status == 400 and detail in body["detail"] and "errors" not in body
    assert not runpod.pods
    ok = {
        **BODY,
        "gpu": {"id": "NVIDIA L4", "count": 1, "allowedCudaVersions": [], "minCudaVersion": "12.4"},
    }
    assert (await call(http, "POST", "pods", json=ok))[0] == 201  # an empty set is no constraint


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
    runpod.set_status(pod["id"], "ERROR")
    _, failed, _ = await call(http, "GET", f"pods/{pod['id']}")
    assert failed["actions"] == ["start", "terminate"]  # EXITED and ERROR allow start
    status, started, _ = await call(
        http, "POST", f"pods/{pod['id']}/action", json={"action": "start"}
    )
    assert (status, started["status"]) == (200, "PROVISIONING")
    status, problem, _ = await call(
        http, "POST", f"pods/{pod['id']}/action", json={"action": "explode"}
    )
    assert status == 422 and "'explode' is not one of" in problem["errors"][0]
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


async def test_the_list_is_never_paged_and_ignores_undeclared_parameters() -> None:
    async with run_fake_runpod() as server:
        for i in range(4):
            server.add_pod(f"p{i}")
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(base_url=server.url + "/", headers=headers) as http:
            status, body, _ = await call(http, "GET", "pods", params={"limit": "2", "cursor": "x"})
            assert status == 200 and set(body) == {"pods"}
            assert [p["name"] for p in body["pods"]] == ["p0", "p1", "p2", "p3"]


async def test_the_list_may_lag_a_create(http: aiohttp.ClientSession, runpod: FakeRunpod) -> None:
    runpod.faults.list_lag_sec = 3600
    status, made, _ = await call(http, "POST", "pods", json=BODY)
    assert status == 201
    assert (await call(http, "GET", "pods"))[1] == {"pods": []}
    assert (await call(http, "GET", f"pods/{made['id']}"))[0] == 200


async def test_a_create_may_be_placed_outside_the_preferred_data_center(
    http: aiohttp.ClientSession, runpod: FakeRunpod
) -> None:
    runpod.faults.misplace_next("CA-MTL-1")
    _, made, _ = await call(http, "POST", "pods", json={**BODY, "dataCenterIds": ["US-TX-3"]})
    assert made["dataCenterId"] == "CA-MTL-1"
    _, next_one, _ = await call(http, "POST", "pods", json={**BODY, "dataCenterIds": ["US-TX-3"]})
    assert next_one["dataCenterId"] == "US-TX-3"


async def test_a_network_volume_can_be_read() -> None:
    async with run_fake_runpod(network_volumes={"vol-1": "EU-RO-1"}) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(base_url=server.url + "/", headers=headers) as http:
            status, volume, _ = await call(http, "GET", "network-volumes/vol-1")
            assert (status, volume["dataCenter"]) == (200, "EU-RO-1")
            assert (await call(http, "GET", "network-volumes/nope"))[0] == 404


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
