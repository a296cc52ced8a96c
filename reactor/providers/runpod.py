"""The Runpod provider: pods through Runpod's REST API v2 (see runpod_http for transport).

A create places exactly one GPU type in v2 and there is no idempotency key, so this
provider walks its candidates (GPU types in preference order x data centers). A candidate
without capacity is backed off; one whose create Runpod rejects as a request problem (see
runpod_create) is held back for long, and when every candidate stands rejected the create
raises RequestRejected, which stops spawning with Runpod's reason. When a create's answer
is lost (5xx, timeout, unreadable body), the pod is looked up by name a few times, since
Runpod's list may lag a create, instead of creating again.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from reactor.errors import (
    ConfigError,
    InsufficientBalance,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from reactor.providers.base import Pod, PodSpec
from reactor.providers.runpod_create import (
    Candidate,
    CandidateBook,
    Refusal,
    Walk,
    create_outcome,
    misplacement,
    refusal_of,
)
from reactor.providers.runpod_errors import malformed, unexpected
from reactor.providers.runpod_http import OnRequest, Reply, RunpodHttp
from reactor.providers.runpod_lookup import Sleep, find_lost_pod
from reactor.providers.runpod_parse import (
    MalformedBody,
    catalog_price,
    data_center_of,
    parse_pod,
    parse_pods,
    volume_data_center,
)
from reactor.settings import Settings

log = logging.getLogger("reactor.providers.runpod")

__all__ = ["Candidate", "RunpodProvider"]

PRICE_TTL_SEC = 300.0  # a catalog price is trusted this long
PRICE_MISS_TTL_SEC = 60.0  # after a failed or empty catalog read, ask again after this


class RunpodProvider:
    """Pods on Runpod through REST v2; one instance per process, closed on shutdown."""

    name = "runpod"

    def __init__(
        self,
        *,
        settings: Settings,
        on_request: OnRequest | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep | None = None,
        read_retries: int = 3,
        retry_base_sec: float = 0.25,
        max_rate_limit_wait_sec: float = 10.0,
    ) -> None:
        """
        :param settings: RUNPOD_* settings, SPAWN_FAILURE_BACKOFF_SEC, GPU_HOURLY_PRICE_USD.
        :param on_request: called as ``(operation, outcome)`` for every HTTP request;
            operations: create, list, get, terminate, catalog, volume.
        :param clock: monotonic clock of the candidate backoff and the price cache.
        :param sleep: waits between the lookups after an uncertain create (default: an
            interruptible sleep that ends when the provider closes).
        :param read_retries: extra attempts of reads and deletes after 5xx or timeouts.
        :param retry_base_sec: first delay between those attempts.
        :param max_rate_limit_wait_sec: longest one call waits out a rate limit before
            raising RateLimited.
        """
        key = settings.runpod_api_key.get_secret_value() if settings.runpod_api_key else ""
        if not key:
            raise ConfigError("RUNPOD_API_KEY is not set: the runpod provider needs an API key")
        self.settings = settings
        self._clock = clock
        self._http = RunpodHttp(
            base_url=settings.runpod_api_url,
            api_key=key,
            timeout_sec=settings.runpod_request_timeout_sec,
            on_request=on_request,
            read_retries=read_retries,
            retry_base_sec=retry_base_sec,
            max_wait_sec=max_rate_limit_wait_sec,
        )
        self._sleep = sleep or self._http.pause
        centers: list[str | None] = list(settings.runpod_data_centers) or [None]
        self.book = CandidateBook(
            [Candidate(gpu, dc) for gpu in settings.runpod_gpu_types for dc in centers],
            backoff_base_sec=settings.spawn_failure_backoff_sec,
        )
        self._volume_dc: str | None = None  # the network volume's data center, once read
        self._price: tuple[float | None, float] | None = None  # value, valid until
        if settings.runpod_network_volume_id and not settings.runpod_data_centers:
            log.warning(
                "runpod_volume_without_data_center",
                extra={
                    "reason": "RUNPOD_NETWORK_VOLUME_ID is set but RUNPOD_DATA_CENTERS is empty: "
                    "creates are refused unless placed in the volume's data center"
                },
            )

    def for_pool(self, settings: Settings) -> RunpodProvider:
        """A provider for one GPU pool: its GPU types, image, volume and price, on this
        provider's connection and rate limits (one account); only this one is closed."""
        twin = copy.copy(self)
        twin.settings = settings
        centers: list[str | None] = list(settings.runpod_data_centers) or [None]
        twin.book = CandidateBook(
            [Candidate(gpu, dc) for gpu in settings.runpod_gpu_types for dc in centers],
            backoff_base_sec=settings.spawn_failure_backoff_sec,
        )
        twin._volume_dc = None
        twin._price = None
        return twin

    # --- create ----------------------------------------------------------------------------
    def candidates(self) -> list[Candidate]:
        """GPU types in order of preference, each in every configured data center."""
        return list(self.book.candidates)

    def create_body(self, spec: PodSpec, candidate: Candidate) -> dict[str, Any]:
        """The POST /pods body: only fields v2 accepts. ``gpu.count`` is always sent:
        without it Runpod answers a misleading 400 'no instances available'."""
        s = self.settings
        body: dict[str, Any] = {
            "name": spec.name,
            "image": s.runpod_container_image,
            "gpu": {"id": candidate.gpu_type, "count": 1},
            "cloud": s.runpod_cloud,
            "disk": s.runpod_container_disk_size_gb,
            "env": {str(k): str(v) for k, v in spec.env.items()},
        }
        if s.runpod_container_args:
            body["args"] = s.runpod_container_args
        if candidate.data_center:
            body["dataCenterIds"] = [candidate.data_center]
        if s.runpod_network_volume_id:
            body["mounts"] = {
                "network": [
                    {"volumeId": s.runpod_network_volume_id, "path": s.runpod_volume_mount_path}
                ]
            }
        return body

    async def create(self, spec: PodSpec) -> Pod:
        if not self.book.candidates:
            raise PermanentProviderError("RUNPOD_GPU_TYPES is empty: no GPU type to create with")
        ready = self.book.ready(self._clock())
        if not ready:
            raise self.book.none_ready(self._clock())
        volume_dc = await self._volume_data_center()
        walk = Walk()
        for candidate in ready:
            pod = await self._create_on(spec, candidate, walk, volume_dc)
            if pod is not None:
                return pod
        raise self.book.all_refused(spec.name, walk, self._clock())

    async def _create_on(
        self, spec: PodSpec, candidate: Candidate, walk: Walk, volume_dc: str | None
    ) -> Pod | None:
        """The pod, or None when this candidate refused (recorded in ``walk``)."""
        # Where the pod must land to mount the volume: the volume's data center, or, while
        # that is unknown, the one asked for.
        required = None
        if self.settings.runpod_network_volume_id:
            required = volume_dc or candidate.data_center
        try:
            reply = await self._http.request(
                "create",
                "POST",
                "/pods",
                json=self.create_body(spec, candidate),
                repeatable=False,
                timeout_sec=self.settings.runpod_create_timeout_sec,
                judge=lambda answer: create_outcome(answer, required),
            )
        except TransientProviderError as exc:
            return await self._recover_lost_create(spec, exc)
        if not reply.ok:
            self._refused(spec, candidate, reply, walk)
            return None
        try:
            pod = parse_pod(reply.body)
        except MalformedBody as exc:
            lost = TransientProviderError(
                f"unreadable create answer: {exc}", status=reply.status, request_id=reply.request_id
            )
            return await self._recover_lost_create(spec, exc=lost)
        placed = data_center_of(reply.body)
        problem = misplacement(placed, required)
        if problem is not None:
            await self._discard(pod, candidate, problem)
            self._note(spec, candidate, Refusal.REJECTED, problem, reply, walk)
            return None
        self.book.succeeded(candidate)
        log.info(
            "runpod_pod_created",
            extra={
                "pod_id": pod.id,
                "pod_name": pod.name or spec.name,
                "gpu_type": candidate.gpu_type,
                "data_center": placed,
                "preferred": candidate.data_center,
                "request_id": reply.request_id,
            },
        )
        return _completed(pod, spec, candidate)

    def _refused(self, spec: PodSpec, candidate: Candidate, reply: Reply, walk: Walk) -> None:
        """Record a candidate's refusal, or raise when no other candidate can help."""
        detail = self._http.scrub(reply.detail())
        if reply.status == 401:
            raise unexpected(self._http, reply, "create", "pod creation (POST /v2/pods)")
        if reply.status == 402:
            raise self._http.error(
                InsufficientBalance,
                f"Runpod refused to create a pod: insufficient balance ({detail or 'HTTP 402'})",
                reply,
            )
        if reply.status == 422:
            violations = "; ".join(reply.errors()) or detail or "no details"
            raise self._http.error(
                PermanentProviderError,
                f"Runpod rejected the create body (422): {violations}",
                reply,
            )
        refusal = refusal_of(reply)
        if refusal is None:
            raise unexpected(self._http, reply, "create", "pod creation (POST /v2/pods)")
        self._note(spec, candidate, refusal, detail or f"HTTP {reply.status}", reply, walk)

    def _note(
        self,
        spec: PodSpec,
        candidate: Candidate,
        refusal: Refusal,
        detail: str,
        reply: Reply,
        walk: Walk,
    ) -> None:
        """A candidate refused: it waits (held back for long after a rejected request)."""
        wait = self.book.refused(candidate, refusal, detail, self._clock())
        walk.refused(candidate, detail, reply)
        fields = {
            "pod_name": spec.name,
            "candidate": str(candidate),
            "status": reply.status,
            "detail": detail,
            "wait_sec": round(wait, 1),
            "request_id": reply.request_id,
        }
        if refusal is Refusal.REJECTED:
            fields["reason"] = (
                "Runpod refused the request itself, not for capacity: it fails the same way "
                "until a setting changes"
            )
            log.warning("runpod_create_rejected", extra=fields)
        else:
            log.warning("runpod_candidate_refused", extra=fields)

    async def _discard(self, pod: Pod, candidate: Candidate, problem: str) -> None:
        """Terminate a pod that cannot do its work, at once: it bills from now on."""
        try:
            await self.terminate(pod.id)
        except ProviderError as exc:
            # Its name and env carry the fleet's marks: the sweep terminates it as a fleet
            # pod that no live worker explains.
            log.error(
                "runpod_misplaced_pod_not_terminated",
                extra={"pod_id": pod.id, "candidate": str(candidate), "error": str(exc)},
            )
            return
        log.warning(
            "runpod_misplaced_pod_terminated",
            extra={"pod_id": pod.id, "candidate": str(candidate), "reason": problem},
        )

    async def _volume_data_center(self) -> str | None:
        """The network volume's data center (read once: it is immutable), or None without
        a volume or while it cannot be read."""
        volume = self.settings.runpod_network_volume_id
        if not volume or self._volume_dc is not None:
            return self._volume_dc if volume else None
        path = "/network-volumes/" + quote(volume, safe="")
        try:
            reply = await self._http.request("volume", "GET", path, repeatable=True)
            if not reply.ok:
                raise unexpected(
                    self._http, reply, "volume", f"network volume {volume} (GET /v2{path})"
                )
            self._volume_dc = volume_data_center(reply.body)
        except (ProviderError, MalformedBody) as exc:
            log.warning("runpod_volume_lookup_failed", extra={"volume": volume, "error": str(exc)})
        return self._volume_dc

    # --- a create whose answer was lost -----------------------------------------------------
    async def _recover_lost_create(self, spec: PodSpec, exc: TransientProviderError) -> Pod:
        """A create whose answer was lost may have made a pod: find it by name."""
        return await find_lost_pod(spec.name, exc, find=self.find_by_name, sleep=self._sleep)

    async def find_by_name(self, name: str) -> Pod | None:
        """The pod called ``name`` (a live one first), or None."""
        matches = [p for p in await self.list_pods() if p.name == name]
        matches.sort(key=lambda p: not p.live)
        return matches[0] if matches else None

    # --- reads and terminate ------------------------------------------------------------------
    async def list_pods(self) -> list[Pod]:
        # GET /pods declares one query parameter (includeClusterPods, default false: cluster
        # pods are not ours to manage) and no paging: nothing else is sent.
        reply = await self._http.request("list", "GET", "/pods", repeatable=True)
        if not reply.ok:
            raise unexpected(self._http, reply, "list", "the pod list (GET /v2/pods)")
        try:
            return parse_pods(reply.body)
        except MalformedBody as exc:
            raise malformed(self._http, reply, "list", exc) from exc

    async def get(self, pod_id: str) -> Pod | None:
        path = _pod_path(pod_id)
        reply = await self._http.request("get", "GET", path, repeatable=True)
        if reply.status == 404:
            return None
        if not reply.ok:
            raise unexpected(self._http, reply, "get", f"pod {pod_id} (GET /v2{path})")
        try:
            return parse_pod(reply.body)
        except MalformedBody as exc:
            raise malformed(self._http, reply, "get", exc) from exc

    async def terminate(self, pod_id: str) -> None:
        # DELETE is safe to repeat: a pod already gone answers 404, which is success.
        path = _pod_path(pod_id)
        reply = await self._http.request("terminate", "DELETE", path, repeatable=True)
        if reply.ok or reply.status == 404:
            log.debug("runpod_pod_terminated", extra={"pod_id": pod_id, "status": reply.status})
            return
        raise unexpected(self._http, reply, "terminate", f"pod {pod_id} (DELETE /v2{path})")

    # --- price ---------------------------------------------------------------------------------
    async def estimated_price(self) -> float | None:
        """The highest catalog price of the configured GPU types in the configured cloud
        (cached), else GPU_HOURLY_PRICE_USD when set, else None."""
        now = self._clock()
        if self._price is None or now >= self._price[1]:
            price = await self._catalog_price()
            self._price = (price, now + (PRICE_TTL_SEC if price else PRICE_MISS_TTL_SEC))
        price = self._price[0]
        if price is None and self.settings.gpu_hourly_price_usd > 0:
            return self.settings.gpu_hourly_price_usd
        return price

    async def gpu_catalog(self) -> Any:
        """The body of ``GET /v2/catalog/gpus`` (runpod_parse reads it); ProviderError when
        Runpod does not answer it."""
        reply = await self._http.request("catalog", "GET", "/catalog/gpus", repeatable=True)
        if not reply.ok:
            raise unexpected(self._http, reply, "catalog", "the GPU catalog (GET /v2/catalog/gpus)")
        return reply.body

    async def _catalog_price(self) -> float | None:
        try:
            body = await self.gpu_catalog()
            prices = [
                catalog_price(body, gpu, self.settings.runpod_cloud)
                for gpu in self.settings.runpod_gpu_types
            ]
        except (ProviderError, MalformedBody) as exc:
            log.warning("runpod_price_lookup_failed", extra={"error": str(exc)})
            return None
        # The most expensive candidate: a fallback GPU type must not break the budget.
        found = [p for p in prices if p is not None]
        return max(found) if found else None

    async def close(self) -> None:
        await self._http.close()


def _pod_path(pod_id: str) -> str:
    if not pod_id:
        raise PermanentProviderError("empty pod id")
    return "/pods/" + quote(pod_id, safe="")


def _completed(pod: Pod, spec: PodSpec, candidate: Candidate) -> Pod:
    """Fill what a create answer may leave out from what was asked for."""
    return dataclasses.replace(
        pod,
        name=pod.name or spec.name,
        gpu_type=pod.gpu_type or candidate.gpu_type,
        env=pod.env or dict(spec.env),
    )
