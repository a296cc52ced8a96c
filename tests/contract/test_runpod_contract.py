"""The client and the fake held to Runpod's published contract (runpod-v2-openapi.json).

Every request body the client sends is validated against the document's request schema,
every query parameter against the operation's declared ones; every answer the fake gives
(pods, lists, error bodies, and the statuses per operation) against the response schemas.
The fake checks its own answers in every test (run_fake_runpod fails on a breach); here
each operation is driven through each status it answers, so that check is not vacuous.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from reactor.errors import ProviderError
from reactor.providers.base import PodSpec
from reactor.providers.runpod import RunpodProvider
from tests.contract.openapi import DOCUMENT, runpod_v2
from tests.fakes import FakeRunpod, run_fake_runpod
from tests.fakes.runpod_v2_pods import FakePod
from tests.providers.conftest import GPU_A, GPU_B, FakeClock, runpod_settings

README = Path(__file__).with_name("README.md").read_text()
SPEC = PodSpec(
    name="gpu-reactor-0a1b2c3d",
    env={"WORKER_ID": "gpu-reactor-0a1b2c3d", "GPU_REACTOR_FLEET": "gpu-reactor"},
)
VOLUMES = {"vol-1": "EU-RO-1"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_the_vendored_document_is_the_one_its_readme_names() -> None:
    doc = runpod_v2().document
    assert (doc["openapi"], doc["info"]["version"]) == ("3.1.0", "2.0.0")
    digest = hashlib.sha256(DOCUMENT.read_bytes()).hexdigest()
    assert digest in README, "update tests/contract/README.md when the document changes"
    assert "a900806e" in README


def test_what_the_client_relies_on_is_what_the_document_says() -> None:
    doc = runpod_v2()
    listing = doc.operation("GET", "/pods")
    assert listing is not None and listing.query_parameters == {"includeClusterPods"}
    create = doc.operation("POST", "/pods")
    assert create is not None
    text = create.spec["description"]
    assert "only a human-readable `detail`" in text  # no machine-readable no-capacity code
    data_centers = doc.document["components"]["schemas"]["CreatePodRequest"]["allOf"][1]
    assert "Preferred data centers" in data_centers["properties"]["dataCenterIds"]["description"]
    assert doc.declares_status(create, 402) and not doc.declares_status(create, 405)
    action = doc.document["components"]["schemas"]["PodAction"]["enum"]
    assert action == ["start", "stop", "restart", "terminate"]


@pytest.mark.parametrize("operation_id", ["getPod", "listPods", "createPod"])
def test_the_documents_own_examples_pass_and_a_broken_one_does_not(operation_id: str) -> None:
    doc = runpod_v2()
    method, path = {
        "getPod": ("GET", "/pods/abc"),
        "listPods": ("GET", "/pods"),
        "createPod": ("POST", "/pods"),
    }[operation_id]
    operation = doc.operation(method, path)
    assert operation is not None and operation.id == operation_id
    status = "201" if method == "POST" else "200"
    media = operation.spec["responses"][status]["content"]["application/json"]
    example = next(iter(media["examples"].values()))["value"]
    assert doc.response_errors(method, path, int(status), "application/json", example) == []
    broken = copy.deepcopy(example)
    pod = broken["pods"][0] if "pods" in broken else broken
    pod["status"], pod["dataCenterId"], pod["runtime"] = "BOOTING", None, None  # nullable ok
    del pod["locked"]
    errors = doc.response_errors(method, path, int(status), "application/json", broken)
    assert any("'BOOTING' is not one of" in e for e in errors), errors
    assert any("'locked' is a required property" in e for e in errors), errors
    assert not any("dataCenterId" in e or "runtime" in e for e in errors), errors


# --- the client's requests -------------------------------------------------------------------
async def drive_the_client(server: FakeRunpod, clock: FakeClock) -> None:
    """Every call the provider makes, through its ordinary and its refused paths."""

    def provider(**overrides: Any) -> RunpodProvider:
        settings = runpod_settings(server, **overrides)
        return RunpodProvider(settings=settings, clock=clock, sleep=clock.sleep)

    plain = provider(RUNPOD_GPU_TYPES=f"{GPU_A},{GPU_B}")
    placed = provider(
        RUNPOD_GPU_TYPES=f"{GPU_A},{GPU_B}",
        RUNPOD_DATA_CENTERS="US-TX-3,EU-RO-1",
        RUNPOD_NETWORK_VOLUME_ID="vol-1",
        RUNPOD_CLOUD="COMMUNITY",
        RUNPOD_VOLUME_MOUNT_PATH="/runpod-volume",
    )
    try:
        pod = await plain.create(SPEC)
        server.faults.no_capacity_gpus.add(GPU_A)
        await plain.create(PodSpec(name="gpu-reactor-2", env={}))
        server.faults.clear()
        server.faults.create_fails_after_pod = 1
        await plain.create(PodSpec(name="gpu-reactor-3", env={}))
        await placed.create(PodSpec(name="gpu-reactor-4", env={"A": "1"}))
        server.faults.misplace_next("CA-MTL-1")
        await placed.create(PodSpec(name="gpu-reactor-5", env={}))
        await plain.list_pods()
        await plain.get(pod.id)
        await plain.get("nosuchpod")
        await plain.terminate(pod.id)
        await plain.terminate(pod.id)
        await plain.estimated_price()
    finally:
        await plain.close()
        await placed.close()


async def test_every_request_the_client_sends_is_one_the_document_declares(
    clock: FakeClock,
) -> None:
    async with run_fake_runpod(network_volumes=VOLUMES) as server:
        await drive_the_client(server, clock)
    doc = runpod_v2()
    used = set()
    for request in server.requests:
        operation = doc.operation(request.method, request.path)
        assert operation is not None, f"{request.method} {request.path} is not documented"
        used.add(operation.id)
        assert (
            doc.request_errors(request.method, request.path, query=request.query, body=request.body)
            == []
        ), f"{request.method} {request.path} {request.body}"
    assert used == {
        "createPod",
        "listPods",
        "getPod",
        "deletePod",
        "listGpuTypes",
        "getNetworkVolume",
    }
    bodies = [r.body for r in server.create_calls]
    assert len(bodies) >= 6 and all(b["gpu"]["count"] == 1 for b in bodies)
    assert any("mounts" in b and "dataCenterIds" in b for b in bodies)


@pytest.mark.parametrize("action", ["start", "stop", "restart", "terminate"])
def test_an_action_body_is_one_the_document_declares(action: str) -> None:
    # The client ends pods with DELETE (deletePod); an action body, as tests and operators
    # send it, is checked the same way, and the fake refuses one that is not.
    doc = runpod_v2()
    assert doc.body_errors("POST", "/pods/abc/action", {"action": action}) == []
    assert doc.body_errors("POST", "/pods/abc/action", {"action": action, "force": True})
    assert doc.body_errors("POST", "/pods/abc/action", {"action": action.upper()})


# --- the fake's answers ------------------------------------------------------------------------
@pytest.fixture
async def fake() -> AsyncIterator[FakeRunpod]:
    async with run_fake_runpod(network_volumes=VOLUMES) as server:
        yield server


async def send(
    server: FakeRunpod, method: str, path: str, *, key: str | None = None, **kwargs: Any
) -> int:
    headers = {"Authorization": f"Bearer {server.api_key if key is None else key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.request(method, server.url + path, **kwargs) as resp,
    ):
        await resp.read()
        return resp.status


BODY = {"name": "gpu-reactor-1", "image": "img:1", "gpu": {"id": GPU_A, "count": 1}}


async def test_every_status_the_fake_answers_is_documented_with_its_schema(
    fake: FakeRunpod,
) -> None:
    pod = fake.add_pod("someone")
    seen: set[tuple[str, int]] = set()

    async def expect(status: int, method: str, path: str, **kwargs: Any) -> None:
        assert await send(fake, method, path, **kwargs) == status, (method, path)
        operation = runpod_v2().operation(method, path)
        assert operation is not None
        seen.add((operation.id, status))

    await expect(201, "POST", "/pods", json=BODY)
    await expect(200, "GET", "/pods")
    await expect(200, "GET", f"/pods/{pod.id}")
    await expect(404, "GET", "/pods/nosuchpod")
    await expect(401, "GET", "/pods", key="rpa_wrong")
    await expect(401, "POST", "/pods", key="", json=BODY)
    await expect(422, "POST", "/pods", json={**BODY, "bidPerGpu": 1})
    await expect(400, "POST", "/pods", json={**BODY, "gpu": {"id": "NVIDIA B300", "count": 1}})
    fake.faults.no_capacity_gpus.add(GPU_A)
    await expect(400, "POST", "/pods", json=BODY)
    fake.faults.clear()
    fake.faults.forbidden_gpus.add(GPU_A)
    await expect(403, "POST", "/pods", json=BODY)
    fake.faults.clear()
    fake.faults.insufficient_balance = True
    await expect(402, "POST", "/pods", json=BODY)
    fake.faults.clear()
    fake.faults.deny(1, method="GET", path="/pods")
    await expect(403, "GET", "/pods")
    fake.rate_limit_quota = 0
    await expect(429, "GET", "/pods")
    fake.rate_limit_quota = 600
    await expect(200, "POST", f"/pods/{pod.id}/action", json={"action": "stop"})
    await expect(409, "POST", f"/pods/{pod.id}/action", json={"action": "restart"})
    await expect(422, "POST", f"/pods/{pod.id}/action", json={"action": "explode"})
    await expect(204, "POST", f"/pods/{pod.id}/action", json={"action": "terminate"})
    await expect(404, "DELETE", f"/pods/{pod.id}")
    other = fake.add_pod("other")
    await expect(204, "DELETE", f"/pods/{other.id}")
    await expect(200, "GET", "/catalog/gpus", params={"include": "AVAILABILITY", "product": "POD"})
    await expect(200, "GET", "/catalog/datacenters")
    await expect(200, "GET", "/network-volumes/vol-1")
    await expect(404, "GET", "/network-volumes/nope")

    assert fake.contract_violations == []
    assert {s for op, s in seen if op == "createPod"} == {201, 400, 401, 402, 403, 422}
    assert {s for op, s in seen if op == "podAction"} == {200, 204, 409, 422}


@pytest.mark.parametrize("status", ["PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR"])
async def test_a_pod_in_every_status_matches_the_pod_schema(fake: FakeRunpod, status: str) -> None:
    pod = fake.add_fleet_pod(status=status)
    assert await send(fake, "GET", f"/pods/{pod.id}") == 200
    assert fake.contract_violations == []


async def test_the_contract_check_catches_a_fake_that_drifts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    honest = FakePod.to_json

    def drifted(self: FakePod, now: float) -> dict[str, Any]:
        body = honest(self, now)
        body.pop("locked")
        body["actions"] = ["terminate", "reboot"]
        return body

    monkeypatch.setattr(FakePod, "to_json", drifted)
    with pytest.raises(AssertionError, match="does not allow") as caught:
        async with run_fake_runpod() as server:
            server.add_pod("someone")
            assert await send(server, "GET", "/pods") == 200
    text = str(caught.value)
    assert "'locked' is a required property" in text
    assert re.search(r"'reboot' is not one of", text)


async def test_the_client_handles_every_documented_error_body(clock: FakeClock) -> None:
    # The document's example error bodies, as Runpod writes them, read as one line each.
    doc = runpod_v2()
    async with run_fake_runpod() as server:
        provider = RunpodProvider(settings=runpod_settings(server), clock=clock, sleep=clock.sleep)
        try:
            for name in ("UnauthorizedError", "ForbiddenError", "NotFoundError"):
                response = doc.document["components"]["responses"][name]
                examples = response["content"]["application/problem+json"]["examples"]
                body = next(iter(examples.values()))["value"]
                server.faults.fail_next(1, status=body["status"], method="GET", path="/pods")
                server.faults.corrupt_next(1, kind=_json(body), method="GET", path="/pods")
                with pytest.raises(ProviderError) as caught:
                    await provider.list_pods()
                assert body["detail"] in str(caught.value)
                assert caught.value.status == body["status"]
        finally:
            await provider.close()


def _json(value: Any) -> bytes:
    return orjson.dumps(value)
