"""The Runpod provider: pods through Runpod's REST API v2 (see runpod_http for transport).

A create places exactly one GPU type in v2 and there is no idempotency key, so this
provider walks its candidates (GPU types in preference order x data centers), backs off
each candidate that had no capacity, and, when a create's answer is lost (5xx, timeout,
unreadable body), looks the pod up by name instead of creating again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from reactor.domain.backoff import CandidateBackoff
from reactor.errors import (
    CapacityError,
    ConfigError,
    InsufficientBalance,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from reactor.providers.base import Pod, PodSpec
from reactor.providers.runpod_http import OnRequest, Reply, RunpodHttp
from reactor.providers.runpod_parse import MalformedBody, catalog_price, parse_page, parse_pod
from reactor.settings import Settings

log = logging.getLogger("reactor.providers.runpod")

PRICE_TTL_SEC = 300.0  # a catalog price is trusted this long
PRICE_MISS_TTL_SEC = 60.0  # after a failed or empty catalog read, ask again after this
PAGE_LIMIT = 500  # pods per page asked for (ignored by an unpaged API)
MAX_PAGES = 200  # a longer pod list is an error, not a silent truncation


@dataclass(frozen=True)
class Candidate:
    """One placement to try: a GPU type, in one data center or anywhere."""

    gpu_type: str
    data_center: str | None

    def __str__(self) -> str:
        return f"{self.gpu_type} in {self.data_center or 'any data center'}"


@dataclass
class _Refusals:
    """What the candidates of one create answered, for the final error."""

    capacity: int = 0
    forbidden: int = 0
    last_detail: str = ""
    last_candidate: Candidate | None = None
    last_reply: Reply | None = None


class RunpodProvider:
    """Pods on Runpod through REST v2; one instance per process, closed on shutdown."""

    name = "runpod"

    def __init__(
        self,
        *,
        settings: Settings,
        on_request: OnRequest | None = None,
        clock: Callable[[], float] = time.monotonic,
        read_retries: int = 3,
        retry_base_sec: float = 0.25,
        max_rate_limit_wait_sec: float = 10.0,
    ) -> None:
        """
        :param settings: RUNPOD_* settings, SPAWN_FAILURE_BACKOFF_SEC, GPU_HOURLY_PRICE_USD.
        :param on_request: called as ``(operation, outcome)`` for every HTTP request;
            operations: create, list, get, terminate, catalog.
        :param clock: monotonic clock of the candidate backoff and the price cache.
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
        # A candidate without capacity is retried at least every MAX_SPAWN_BACKOFF_SEC.
        self.backoff = CandidateBackoff[Candidate](base_sec=settings.spawn_failure_backoff_sec)
        self._price: tuple[float | None, float] | None = None  # value, valid until
        if settings.runpod_network_volume_id and not settings.runpod_data_centers:
            log.warning(
                "runpod_volume_without_data_center",
                extra={
                    "reason": "RUNPOD_NETWORK_VOLUME_ID is set but RUNPOD_DATA_CENTERS is empty: "
                    "creates are refused unless placed in the volume's data center"
                },
            )

    # --- create ----------------------------------------------------------------------------
    def candidates(self) -> list[Candidate]:
        centers: list[str | None] = list(self.settings.runpod_data_centers) or [None]
        return [Candidate(gpu, dc) for gpu in self.settings.runpod_gpu_types for dc in centers]

    def create_body(self, spec: PodSpec, candidate: Candidate) -> dict[str, Any]:
        """The POST /pods body: only fields v2 accepts."""
        s = self.settings
        body: dict[str, Any] = {
            "name": spec.name,
            "image": s.runpod_container_image,
            "gpu": {"id": candidate.gpu_type, "count": 1},
            "cloud": s.runpod_cloud,
            "disk": s.runpod_container_disk_size_gb,
            "env": {str(k): str(v) for k, v in spec.env.items()},
        }
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
        candidates = self.candidates()
        if not candidates:
            raise PermanentProviderError("RUNPOD_GPU_TYPES is empty: no GPU type to create with")
        now = self._clock()
        ready = [c for c in candidates if self.backoff.ready(c, now)]
        if not ready:
            wait = min(self.backoff.wait_left(c, now) for c in candidates)
            raise CapacityError(
                f"every candidate ({len(candidates)}) is backing off after "
                f"refusals; the first is tried again in {wait:.0f}s"
            )
        refusals = _Refusals()
        for candidate in ready:
            pod = await self._create_on(spec, candidate, refusals)
            if pod is not None:
                return pod
        raise self._all_refused(spec, refusals)

    async def _create_on(
        self, spec: PodSpec, candidate: Candidate, refusals: _Refusals
    ) -> Pod | None:
        """The pod, or None when this candidate refused (recorded in ``refusals``)."""
        try:
            reply = await self._http.request(
                "create", "POST", "/pods", json=self.create_body(spec, candidate), repeatable=False
            )
        except TransientProviderError as exc:
            return await self._recover_lost_create(spec, exc)
        if reply.ok:
            try:
                pod = parse_pod(reply.body)
            except MalformedBody as exc:
                lost = TransientProviderError(
                    f"unreadable create answer: {exc}",
                    status=reply.status,
                    request_id=reply.request_id,
                )
                return await self._recover_lost_create(spec, lost)
            self.backoff.succeeded(candidate)
            pod = _completed(pod, spec, candidate)
            log.info(
                "runpod_pod_created",
                extra={
                    "pod_id": pod.id,
                    "pod_name": pod.name,
                    "gpu_type": candidate.gpu_type,
                    "data_center": candidate.data_center,
                    "request_id": reply.request_id,
                },
            )
            return pod
        self._refused(spec, candidate, reply, refusals)
        return None

    def _refused(
        self, spec: PodSpec, candidate: Candidate, reply: Reply, refusals: _Refusals
    ) -> None:
        """Record a candidate's refusal, or raise when no other candidate can help."""
        detail = self._http.scrub(reply.detail())
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
        if reply.status not in (400, 403):
            raise self._unexpected(reply, "create")
        delay = self.backoff.failed(candidate, self._clock())
        if reply.status == 400:
            refusals.capacity += 1
        else:
            refusals.forbidden += 1
        refusals.last_detail, refusals.last_candidate, refusals.last_reply = (
            detail,
            candidate,
            reply,
        )
        log.warning(
            "runpod_candidate_refused",
            extra={
                "pod_name": spec.name,
                "candidate": str(candidate),
                "status": reply.status,
                "detail": detail,
                "backoff_sec": delay,
                "request_id": reply.request_id,
            },
        )

    def _all_refused(self, spec: PodSpec, refusals: _Refusals) -> ProviderError:
        reply = refusals.last_reply
        assert reply is not None
        tried = refusals.capacity + refusals.forbidden
        if refusals.capacity:
            return self._http.error(
                CapacityError,
                f"no candidate could place {spec.name} ({tried} tried); last, "
                f"{refusals.last_candidate}: {refusals.last_detail or 'HTTP 400'}",
                reply,
            )
        return self._http.error(
            PermanentProviderError,
            f"no access to any candidate ({tried} tried, HTTP 403); "
            f"last, {refusals.last_candidate}: {refusals.last_detail or 'forbidden'}",
            reply,
        )

    async def _recover_lost_create(self, spec: PodSpec, exc: TransientProviderError) -> Pod:
        """A create whose answer was lost may have made a pod: find it by name."""
        log.warning(
            "runpod_create_uncertain",
            extra={"pod_name": spec.name, "error": str(exc), "request_id": exc.request_id},
        )
        try:
            pod = await self.find_by_name(spec.name)
        except ProviderError as lookup:
            raise TransientProviderError(
                f"create of {spec.name} got no usable answer ({exc}) and the lookup by name "
                f"failed too ({lookup})",
                status=exc.status,
                request_id=exc.request_id,
            ) from exc
        if pod is None:
            raise TransientProviderError(
                f"create of {spec.name} got no usable answer ({exc}); no pod of that name exists",
                status=exc.status,
                request_id=exc.request_id,
            ) from exc
        log.info("runpod_create_recovered", extra={"pod_name": spec.name, "pod_id": pod.id})
        return pod

    async def find_by_name(self, name: str) -> Pod | None:
        """The pod called ``name`` (a live one first), or None."""
        matches = [p for p in await self.list_pods() if p.name == name]
        matches.sort(key=lambda p: not p.live)
        return matches[0] if matches else None

    # --- reads and terminate ------------------------------------------------------------------
    async def list_pods(self) -> list[Pod]:
        pods: dict[str, Pod] = {}
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"limit": str(PAGE_LIMIT)}
            if cursor is not None:
                params["cursor"] = cursor
            reply = await self._http.request("list", "GET", "/pods", params=params, repeatable=True)
            if not reply.ok:
                raise self._unexpected(reply, "list")
            try:
                page = parse_page(reply.body)
            except MalformedBody as exc:
                raise self._malformed(reply, "list", exc) from exc
            for pod in page.pods:
                pods.setdefault(pod.id, pod)
            if page.next_cursor is None:
                return list(pods.values())
            if page.next_cursor in seen:
                raise self._http.error(
                    TransientProviderError, "the pod list's pagination loops back on itself", reply
                )
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        raise TransientProviderError(f"the pod list has more than {MAX_PAGES} pages")

    async def get(self, pod_id: str) -> Pod | None:
        reply = await self._http.request("get", "GET", _pod_path(pod_id), repeatable=True)
        if reply.status == 404:
            return None
        if not reply.ok:
            raise self._unexpected(reply, "get")
        try:
            return parse_pod(reply.body)
        except MalformedBody as exc:
            raise self._malformed(reply, "get", exc) from exc

    async def terminate(self, pod_id: str) -> None:
        # DELETE is safe to repeat: a pod already gone answers 404, which is success.
        reply = await self._http.request("terminate", "DELETE", _pod_path(pod_id), repeatable=True)
        if reply.ok or reply.status == 404:
            log.debug("runpod_pod_terminated", extra={"pod_id": pod_id, "status": reply.status})
            return
        raise self._unexpected(reply, "terminate")

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

    async def _catalog_price(self) -> float | None:
        try:
            reply = await self._http.request("catalog", "GET", "/catalog/gpus", repeatable=True)
            if not reply.ok:
                raise self._unexpected(reply, "catalog")
            prices = [
                catalog_price(reply.body, gpu, self.settings.runpod_cloud)
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

    # --- errors --------------------------------------------------------------------------------
    def _unexpected(self, reply: Reply, operation: str) -> ProviderError:
        detail = reply.detail() or f"HTTP {reply.status}"
        hint = {401: " (check RUNPOD_API_KEY)", 404: " (check RUNPOD_API_URL)"}.get(
            reply.status, ""
        )
        cls = PermanentProviderError if reply.status < 500 else TransientProviderError
        return self._http.error(
            cls, f"Runpod {operation} answered {reply.status}{hint}: {detail}", reply
        )

    def _malformed(self, reply: Reply, operation: str, exc: MalformedBody) -> ProviderError:
        log.warning(
            "runpod_malformed_answer",
            extra={"operation": operation, "error": str(exc), "request_id": reply.request_id},
        )
        return self._http.error(
            TransientProviderError, f"Runpod {operation} answer is malformed: {exc}", reply
        )


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
