"""A fake Runpod REST v2 server: real HTTP on 127.0.0.1, following Runpod's OpenAPI
document (tests/contract/runpod-v2-openapi.json).

    async with run_fake_runpod() as runpod:
        settings = Settings(RUNPOD_API_URL=runpod.url, RUNPOD_API_KEY=runpod.api_key, ...)
        runpod.faults.no_capacity_gpus.add("NVIDIA GeForce RTX 4090")
        ...
        call = await runpod.wait_for_create(timeout=5)

Auth (401 for a missing or wrong key; 403 is a valid key without access, see
``faults.deny``), pods walking PROVISIONING -> STARTING -> RUNNING, ``cost`` from a price
table, problem+json errors with ``x-request-id`` and ``RateLimit`` / ``RateLimit-Policy``
headers. A body the document's request schema refuses is a 422; a cross-field rule, an
unknown GPU id, a network volume outside the pod's data center or no capacity is a 400.
The list is never paged (listPods declares no paging). Every answer the fake gives of
itself is checked against the document's response schemas and statuses: a breach is
recorded in ``server.contract_violations`` and fails the ``run_fake_runpod`` block.
Faults: ``server.faults`` (see runpod_v2_faults; what they answer is exempt). Every
request is recorded in ``server.requests``; ``on_create`` / ``on_terminate`` hooks (sync
or async) let a test run real processes behind fake pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.contract.openapi import runpod_v2
from tests.fakes.runpod_v2_contract import VALIDATION_FAILED, body_violations, create_rule_broken
from tests.fakes.runpod_v2_faults import Faults
from tests.fakes.runpod_v2_pods import (
    DEFAULT_DATA_CENTERS,
    DEFAULT_GPU_TYPES,
    FakePod,
    catalog,
    data_center,
    network_volume,
    new_pod_id,
)
from tests.fakes.runpod_v2_wire import NO_CAPACITY, Answer, parse_json, problem, render

log = logging.getLogger("tests.fakes.runpod_v2")

Hook = Callable[[FakePod], Awaitable[Any] | Any]
_ROUTES = [
    (method, re.compile("^" + path.replace("{id}", "([^/]+)") + "$"), handler)
    for method, path, handler in [
        ("GET", "/pods", "_list"),
        ("POST", "/pods", "_create"),
        ("GET", "/pods/{id}", "_get"),
        ("DELETE", "/pods/{id}", "_delete"),
        ("POST", "/pods/{id}/action", "_action"),
        ("GET", "/catalog/gpus", "_catalog_gpus"),
        ("GET", "/catalog/datacenters", "_catalog_data_centers"),
        ("GET", "/network-volumes/{id}", "_network_volume"),
    ]
]


@dataclass
class RecordedRequest:
    method: str
    path: str  # relative to /v2, e.g. "/pods"
    query: dict[str, str]
    body: Any  # parsed JSON, None when absent or not JSON
    time: float  # monotonic, when it arrived
    request_id: str
    authorized: bool = False
    status: int | None = None  # filled in once answered


class FakeRunpod:
    """State and behaviour of the fake; ``run_fake_runpod`` serves it over HTTP."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        provisioning_sec: float = 0.1,
        starting_sec: float = 0.1,
        prices: dict[str, Any] | None = None,
        data_centers: list[str] | None = None,
        network_volumes: dict[str, str] | None = None,
        rate_limit_quota: int = 600,
        rate_limit_window_sec: float = 60.0,
        list_terminated: bool = False,
        on_create: Hook | None = None,
        on_terminate: Hook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        :param prices: GPU type id -> USD/h (both clouds) or (secure, community); merged
            over DEFAULT_GPU_TYPES. Unknown GPU ids are refused with 400.
        :param network_volumes: volume id -> data center id.
        :param list_terminated: keep terminated pods listed (status TERMINATED, cost 0).
        """
        self.api_key = api_key or "rpa_fake_" + secrets.token_hex(12)
        self.provisioning_sec, self.starting_sec = provisioning_sec, starting_sec
        self.gpu_types = dict(DEFAULT_GPU_TYPES)
        for gpu_id, price in (prices or {}).items():
            secure, community = price if isinstance(price, tuple) else (price, price)
            name, memory = self.gpu_types.get(gpu_id, (gpu_id, 24, 0, 0))[:2]
            self.gpu_types[gpu_id] = (name, memory, secure, community)
        self.data_centers = list(data_centers or DEFAULT_DATA_CENTERS)
        self.network_volumes = dict(network_volumes or {})
        self.rate_limit_quota, self.rate_limit_window_sec = rate_limit_quota, rate_limit_window_sec
        self.list_terminated = list_terminated
        self.on_create, self.on_terminate = on_create, on_terminate
        self.clock = clock
        self.faults = Faults()
        self.pods: dict[str, FakePod] = {}  # every pod not terminated
        self.terminated: dict[str, FakePod] = {}
        self.created: list[FakePod] = []  # pods made through POST /pods
        self.requests: list[RecordedRequest] = []
        self.hook_errors: list[BaseException] = []
        self.contract_violations: list[str] = []  # answers of its own the document refutes
        self.url = ""
        self._window_start, self._window_used = clock(), 0
        self._tick = asyncio.Event()
        self._stopping = asyncio.Event()

    # --- what tests read ---------------------------------------------------------------------
    @property
    def create_calls(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/pods"]

    def calls(self, method: str, path: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.method == method.upper() and (path is None or r.path == path)
        ]

    def pod_by_name(self, name: str) -> FakePod | None:
        return next((p for p in self.pods.values() if p.name == name), None)

    def status_of(self, pod_id: str) -> str | None:
        pod = self.pods.get(pod_id) or self.terminated.get(pod_id)
        return pod.status_at(self.clock()) if pod else None

    def hourly_cost(self) -> float:
        now = self.clock()
        return sum(p.cost_at(now) for p in self.pods.values())

    async def wait_until(
        self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition"
    ) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked at every request and every
        20 ms, since pod statuses change with time); return its value."""
        deadline = time.monotonic() + timeout
        while True:
            tick = self._tick
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"fake Runpod: no {what} within {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tick.wait(), min(left, 0.02))

    async def wait_for_create(self, timeout: float = 5.0, count: int = 1) -> RecordedRequest:
        """The ``count``-th POST /pods, once it has been answered."""

        def answered() -> RecordedRequest | None:
            calls = [c for c in self.create_calls if c.status is not None]
            return calls[count - 1] if len(calls) >= count else None

        return await self.wait_until(answered, timeout, f"create call #{count}")

    async def wait_for_request(
        self, method: str, path: str, timeout: float = 5.0, count: int = 1
    ) -> RecordedRequest:
        def seen() -> RecordedRequest | None:
            calls = [c for c in self.calls(method, path) if c.status is not None]
            return calls[count - 1] if len(calls) >= count else None

        return await self.wait_until(seen, timeout, f"{method} {path} #{count}")

    # --- what tests change ---------------------------------------------------------------------
    def add_pod(
        self,
        name: str,
        *,
        env: dict[str, str] | None = None,
        gpu_id: str | None = None,
        cloud: str = "SECURE",
        data_center: str | None = None,
        image: str = "runpod/pytorch:2.4.0",
        status: str | None = None,
    ) -> FakePod:
        """A pod made outside the reactor (someone's notebook, or a fleet pod created behind
        its back). ``status`` pins a status; by default it walks the lifecycle. No hook runs."""
        gpu_id = gpu_id or next(iter(self.gpu_types))
        pod = self._new_pod(
            name=name,
            image=image,
            env=env or {},
            gpu_id=gpu_id,
            count=1,
            cloud=cloud,
            data_center=data_center or self.data_centers[0],
        )
        pod.forced_status = status
        self.pods[pod.id] = pod
        return pod

    def add_fleet_pod(
        self,
        fleet: str = "gpu-reactor",
        name: str | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> FakePod:
        """A pod carrying both fleet marks (name prefix and GPU_REACTOR_FLEET)."""
        name = name or f"{fleet}-{secrets.token_hex(4)}"
        marks = {"GPU_REACTOR_FLEET": fleet, "WORKER_ID": name}
        return self.add_pod(name, env={**marks, **(env or {})}, **kwargs)

    def set_status(self, pod_id: str, status: str | None) -> None:
        """Pin a pod's status (EXITED, ERROR, ...); None resumes the lifecycle."""
        self.pods[pod_id].forced_status = status

    def vanish(self, pod_id: str) -> FakePod:
        """The pod disappears without a terminate (no hook runs)."""
        return self.pods.pop(pod_id)

    # --- HTTP ------------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        path = request.path[3:] if request.path.startswith("/v2/") else None
        record = RecordedRequest(
            request.method,
            path or request.path,
            dict(request.query),
            parse_json(raw),
            self.clock(),
            "req_" + secrets.token_hex(8),
        )
        self.requests.append(record)
        self._notify()
        answer = await self._answer(request, record, path, raw)
        if path is not None and not answer.injected:
            self._check_contract(record, answer)
        delay = self.faults.delay_for(record.method, record.path) if path else None
        if delay:  # a slow server; cut short when the server stops
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        record.status = answer.status
        headers = {"x-request-id": record.request_id}
        if record.authorized:
            headers.update(self._ratelimit_headers())
        spoil = self.faults.corruption_for(record.method, record.path) if path else None
        try:
            return await render(request, answer, headers, spoil)
        finally:
            self._notify()

    async def _answer(
        self, request: web.Request, record: RecordedRequest, path: str | None, raw: bytes
    ) -> Answer:
        if path is None:
            return problem(404, f"no route {request.path}")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return problem(401, "missing bearer token")
        if not secrets.compare_digest(auth[7:].strip(), self.api_key):
            return problem(401, "invalid bearer token")
        record.authorized = True
        limited = self._rate_limit(record)
        if limited is not None:
            return limited
        status = self.faults.server_error_for(record.method, path)
        if status is not None:
            failed = problem(status, "Something went wrong. Please try again later.")
            failed.injected = True
            return failed
        if self.faults.denied(record.method, path):
            return problem(403, "access denied")
        if raw.strip() and record.body is None and record.method in ("POST", "PATCH"):
            return problem(422, VALIDATION_FAILED, errors=["$: the body is not JSON"])
        if record.method in ("POST", "PATCH") and runpod_v2().operation(record.method, path):
            errors = body_violations(record.method, path, record.body)
            if errors:
                return problem(422, VALIDATION_FAILED, errors=errors)
        return await self._route(record, path)

    def _check_contract(self, record: RecordedRequest, answer: Answer) -> None:
        """Hold an answer of the fake's own against the document (an operation it does
        not document, such as a 405, is not checked)."""
        doc = runpod_v2()
        if doc.operation(record.method, record.path) is None:
            return
        for breach in doc.response_errors(
            record.method, record.path, answer.status, answer.content_type, answer.body
        ):
            self.contract_violations.append(f"{record.method} {record.path}: {breach}")

    async def _route(self, record: RecordedRequest, path: str) -> Answer:
        allowed = False
        for method, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if method == record.method:
                return await getattr(self, handler)(record, *match.groups())
            allowed = True
        if allowed:
            return problem(405, f"{record.method} is not allowed on {path}")
        return problem(404, f"no route {path}")

    async def _catalog_gpus(self, record: RecordedRequest) -> Answer:
        wanted = record.query.get("include", "").upper() == "AVAILABILITY"
        return Answer(
            200, catalog(self.gpu_types, self.data_centers, self.faults.no_capacity_gpus, wanted)
        )

    async def _catalog_data_centers(self, record: RecordedRequest) -> Answer:
        return Answer(200, {"dataCenters": [data_center(dc) for dc in self.data_centers]})

    async def _network_volume(self, record: RecordedRequest, volume_id: str) -> Answer:
        home = self.network_volumes.get(volume_id)
        if home is None:
            return problem(404, "network volume not found")
        return Answer(200, network_volume(volume_id, home))

    def _rate_limit(self, record: RecordedRequest) -> Answer | None:
        retry_after = self.faults.rate_limit_for(record.method, record.path)
        if retry_after is not None:
            return problem(
                429,
                "rate limit exceeded for the minute window",
                headers={
                    "Retry-After": f"{retry_after:g}",
                    "RateLimit": f'"minute";r=0;t={retry_after:g}',
                },
            )
        now = self.clock()
        if now - self._window_start >= self.rate_limit_window_sec:
            self._window_start, self._window_used = now, 0
        if self._window_used >= self.rate_limit_quota:
            reset = self._window_reset(now)
            return problem(
                429,
                "rate limit exceeded for the minute window",
                headers={"Retry-After": str(reset)},
            )
        self._window_used += 1
        return None

    def _window_reset(self, now: float) -> int:
        return max(1, math.ceil(self.rate_limit_window_sec - (now - self._window_start)))

    def _ratelimit_headers(self) -> dict[str, str]:
        window = self.rate_limit_window_sec
        name = {60.0: "minute", 3600.0: "hour", 86400.0: "day"}.get(window, "window")
        remaining = max(0, self.rate_limit_quota - self._window_used)
        return {
            "RateLimit": f'"{name}";r={remaining};t={self._window_reset(self.clock())}',
            "RateLimit-Policy": f'"{name}";q={self.rate_limit_quota};w={window:g}',
        }

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    # --- pods ---------------------------------------------------------------------------
    async def _create(self, record: RecordedRequest) -> Answer:
        body = record.body
        broken = create_rule_broken(body)
        if broken:
            return problem(400, broken)
        if self.faults.insufficient_balance:
            return problem(402, "Your balance is too low to create this pod. Add funds.")
        if "gpu" not in body:
            return problem(400, "This fake offers GPU pods only.")
        gpu_id = body["gpu"]["id"]
        if gpu_id in self.faults.forbidden_gpus:
            return problem(403, f"You do not have access to {gpu_id} pods.")
        if gpu_id not in self.gpu_types:
            return problem(400, f"Unknown GPU type {gpu_id!r}.")
        placed = self._place(body)
        if isinstance(placed, Answer):
            return placed
        if self.faults.take_capacity_error() or gpu_id in self.faults.no_capacity_gpus:
            return problem(400, NO_CAPACITY)
        pod = self._new_pod(
            name=body["name"],
            image=body.get("image", "template"),
            env=dict(body.get("env", {})),
            gpu_id=gpu_id,
            count=body["gpu"].get("count", 1),
            cloud=body.get("cloud", "SECURE"),
            data_center=self.faults.take_misplacement() or placed,
        )
        pod.disk, pod.ports = body.get("disk", 20), body.get("ports", [])
        pod.mounts, pod.body = body.get("mounts") or {}, body
        pod.listed_from = self.clock() + self.faults.list_lag_sec
        self.pods[pod.id] = pod
        self.created.append(pod)
        await self._run_hook(self.on_create, pod)
        if self.faults.take_create_failure():
            failed = problem(500, "Something went wrong. Please try again later.")
            failed.injected = True
            return failed
        return Answer(201, pod.to_json(self.clock()))

    def _place(self, body: dict[str, Any]) -> str | Answer:
        wanted = body.get("dataCenterIds") or list(self.data_centers)
        unknown = [dc for dc in wanted if dc not in self.data_centers]
        if unknown:
            return problem(400, f"Unknown data center(s): {', '.join(unknown)}.")
        volume = next(iter((body.get("mounts") or {}).get("network") or []), None)
        if volume is not None:
            home = self.network_volumes.get(volume["volumeId"])
            if home is None:
                return problem(400, f"Network volume {volume['volumeId']} does not exist.")
            if home not in wanted:
                return problem(
                    400,
                    f"Network volume {volume['volumeId']} is in {home}; the "
                    "pod must be placed in the same data center.",
                )
            wanted = [home]
        open_ = [dc for dc in wanted if dc not in self.faults.no_capacity_data_centers]
        return open_[0] if open_ else problem(400, NO_CAPACITY)

    def _new_pod(
        self,
        *,
        name: str,
        image: str,
        env: dict[str, str],
        gpu_id: str,
        count: int,
        cloud: str,
        data_center: str | None,
    ) -> FakePod:
        secure, community = self.gpu_types.get(gpu_id, ("", 0, 0.0, 0.0))[2:]
        return FakePod(
            id=new_pod_id(),
            name=name,
            image=image,
            env=env,
            gpu_id=gpu_id,
            gpu_count=count,
            cloud=cloud,
            data_center_id=data_center,
            price_per_gpu=secure if cloud == "SECURE" else community,
            phase_start=self.clock(),
            provisioning_sec=self.provisioning_sec,
            starting_sec=self.starting_sec,
        )

    async def _list(self, record: RecordedRequest) -> Answer:
        now = self.clock()
        pods = [p for p in self.pods.values() if p.listed_from <= now]
        if self.list_terminated:
            pods += self.terminated.values()
        items = [p.to_json(now) for p in sorted(pods, key=lambda p: p.created_at)]
        return Answer(200, {"pods": items})

    async def _get(self, record: RecordedRequest, pod_id: str) -> Answer:
        pod = self.pods.get(pod_id) or (
            self.terminated.get(pod_id) if self.list_terminated else None
        )
        return Answer(200, pod.to_json(self.clock())) if pod else problem(404, "Pod not found.")

    async def _delete(self, record: RecordedRequest, pod_id: str) -> Answer:
        pod = self.pods.get(pod_id)
        if pod is None:
            return problem(404, "Pod not found.")
        await self._terminate(pod)
        return Answer(204)

    async def _action(self, record: RecordedRequest, pod_id: str) -> Answer:
        pod = self.pods.get(pod_id)
        if pod is None:
            return problem(404, "Pod not found.")
        now, action = self.clock(), record.body["action"]
        if action not in pod.actions_at(now):
            return problem(409, f"Cannot {action} a pod that is {pod.status_at(now)}.")
        if action == "terminate":
            await self._terminate(pod)
            return Answer(204)
        if action == "stop":
            pod.forced_status = "EXITED"
        else:  # start walks the lifecycle again; restart skips provisioning
            pod.forced_status = None
            pod.phase_start = now - (pod.provisioning_sec if action == "restart" else 0.0)
        return Answer(200, pod.to_json(now))

    async def _terminate(self, pod: FakePod) -> None:
        self.pods.pop(pod.id, None)
        pod.forced_status = "TERMINATED"
        self.terminated[pod.id] = pod
        await self._run_hook(self.on_terminate, pod)

    async def _run_hook(self, hook: Hook | None, pod: FakePod) -> None:
        if hook is None:
            return
        try:
            result = hook(pod)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.exception("fake_runpod_hook_failed", extra={"pod_id": pod.id})
            self.hook_errors.append(exc)


@contextlib.asynccontextmanager
async def run_fake_runpod(**options: Any) -> AsyncIterator[FakeRunpod]:
    """Serve a FakeRunpod(**options) on 127.0.0.1 (ephemeral port) for the block."""
    server = FakeRunpod(**options)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/v2"
    try:
        yield server
    finally:
        server._stopping.set()
        await runner.cleanup()
    assert not server.contract_violations, (
        "the fake answered what Runpod's OpenAPI document does not allow:\n"
        + "\n".join(dict.fromkeys(server.contract_violations))
    )
