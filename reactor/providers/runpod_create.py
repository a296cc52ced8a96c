"""What one Runpod create asks for, and what its answer means. No I/O.

createPod's contract (Runpod's OpenAPI document, v2.0.0): a 400 "covers both 'your request
breaks a rule' and 'no capacity', because capacity exhaustion currently carries no
machine-readable code of its own — only a human-readable `detail`". So only a 400 whose
detail is Runpod's no-capacity text is capacity (worth trying again soon); any other 400
is a request problem (a network volume outside the pod's data center, both CUDA fields,
both mount kinds, an unknown GPU id) that fails the same way until a setting changes.

``dataCenterIds`` is a preference ("Preferred data centers for placement"), not a
guarantee: a pod with a network volume placed outside the volume's data center cannot
mount it, and that too is a request problem for the candidate that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reactor.domain.backoff import CandidateBackoff
from reactor.errors import CapacityError, PermanentProviderError, ProviderError, RequestRejected
from reactor.providers.runpod_http import Reply, outcome_of
from reactor.providers.runpod_parse import data_center_of
from reactor.settings import MAX_SPAWN_BACKOFF_SEC

# Runpod's no-capacity text, as it answers it ("There are no longer any instances available
# with the requested specifications. Please refresh and try again."; older answers end
# "... with the request specifications. Please try again later."). The document gives no
# wording of its own, so the stable part is matched, case and spacing aside.
NO_CAPACITY_PHRASE = "there are no longer any instances available"
REJECTED_HOLD_SEC = MAX_SPAWN_BACKOFF_SEC  # a candidate that rejected the request waits


def is_no_capacity(detail: str) -> bool:
    """Whether a 400's ``detail`` is Runpod's no-capacity text."""
    return NO_CAPACITY_PHRASE in " ".join(detail.lower().split())


@dataclass(frozen=True)
class Candidate:
    """One placement to try: a GPU type, in one data center or anywhere."""

    gpu_type: str
    data_center: str | None

    def __str__(self) -> str:
        return f"{self.gpu_type} in {self.data_center or 'any data center'}"


class Refusal(StrEnum):
    """How a candidate refused a create; the values are metric outcomes."""

    NO_CAPACITY = "capacity"  # 400 with the no-capacity text: try again later
    REJECTED = "rejected"  # any other 400, or a misplaced pod: the request must change
    FORBIDDEN = "client_error"  # 403: the key cannot use this pool; skip the candidate


def refusal_of(reply: Reply) -> Refusal | None:
    """The refusal a 400 or 403 stands for; None for any other answer."""
    if reply.status == 403:
        return Refusal.FORBIDDEN
    if reply.status == 400:
        return Refusal.NO_CAPACITY if is_no_capacity(reply.detail()) else Refusal.REJECTED
    return None


def misplacement(placed: str | None, required: str | None) -> str | None:
    """Why a pod placed in ``placed`` cannot use the network volume that lives in
    ``required``; None when it can, or when either is unknown."""
    if placed is None or required is None or placed == required:
        return None
    return (
        f"the pod was placed in {placed}, outside the network volume's data center "
        f"{required}, so it cannot mount the volume"
    )


def create_outcome(reply: Reply, required_data_center: str | None) -> str:
    """The metric outcome of a create's answer: a 400 is capacity or rejected, a 201 whose
    pod cannot mount its volume is misplaced (both raise the provider-error alert)."""
    refusal = refusal_of(reply)
    if refusal is not None:
        return refusal.value
    if reply.ok and misplacement(data_center_of(reply.body), required_data_center):
        return "misplaced"
    return outcome_of(reply.status)


@dataclass
class Walk:
    """What the candidates of one create answered, for the error when none placed it."""

    tried: int = 0
    last_candidate: Candidate | None = None
    last_detail: str = ""
    last_status: int | None = None
    last_request_id: str | None = None

    def refused(self, candidate: Candidate, detail: str, reply: Reply) -> None:
        self.tried += 1
        self.last_candidate, self.last_detail = candidate, detail
        self.last_status, self.last_request_id = reply.status, reply.request_id

    def last(self) -> str:
        return f"last, {self.last_candidate}: {self.last_detail or f'HTTP {self.last_status}'}"


class CandidateBook:
    """The candidates, in order, and what each last answered: a candidate without capacity
    (or without access, 403) backs off, doubling; one that rejected the request itself is
    held back for REJECTED_HOLD_SEC. A success clears both. ``now`` is the provider's
    monotonic clock reading."""

    def __init__(self, candidates: list[Candidate], *, backoff_base_sec: float) -> None:
        self.candidates = candidates
        # A candidate without capacity is retried at least every MAX_SPAWN_BACKOFF_SEC.
        self.backoff = CandidateBackoff[Candidate](base_sec=backoff_base_sec)
        self._last: dict[Candidate, tuple[Refusal, str]] = {}  # until a success

    def ready(self, now: float) -> list[Candidate]:
        return [c for c in self.candidates if self.backoff.ready(c, now)]

    def refused(self, candidate: Candidate, refusal: Refusal, detail: str, now: float) -> float:
        """Count a refusal; the seconds ``candidate`` now waits."""
        self._last[candidate] = (refusal, detail)
        if refusal is Refusal.REJECTED:
            return self.backoff.hold(candidate, now, REJECTED_HOLD_SEC)
        return self.backoff.failed(candidate, now)

    def succeeded(self, candidate: Candidate) -> None:
        self.backoff.succeeded(candidate)
        self._last.pop(candidate, None)

    def none_ready(self, now: float) -> ProviderError:
        """The error of a create that found every candidate waiting."""
        wait = self.first_retry(now)
        if self._all_rejected():
            return RequestRejected(
                f"{self._rejections()}; tried again in {wait:.0f}s", retry_after=wait
            )
        return CapacityError(
            f"every candidate ({len(self.candidates)}) is backing off after "
            f"refusals; the first is tried again in {wait:.0f}s"
        )

    def all_refused(self, name: str, walk: Walk, now: float) -> ProviderError:
        """The error of a create that every candidate it tried refused."""
        status, request_id = walk.last_status, walk.last_request_id
        if self._all_rejected():
            return RequestRejected(
                f"{self._rejections()}; {walk.last()}",
                retry_after=self.first_retry(now),
                status=status,
                request_id=request_id,
            )
        if self._kinds() == {Refusal.FORBIDDEN}:
            return PermanentProviderError(
                f"no access to any candidate ({walk.tried} tried, HTTP 403); {walk.last()}",
                status=status,
                request_id=request_id,
            )
        rejected = sum(1 for c in self.candidates if self._kind(c) is Refusal.REJECTED)
        also = f", {rejected} rejected the request itself" if rejected else ""
        return CapacityError(
            f"no candidate could place {name} ({walk.tried} tried{also}); {walk.last()}",
            status=status,
            request_id=request_id,
        )

    def first_retry(self, now: float) -> float:
        """Seconds until the first candidate may be tried again."""
        return min(self.backoff.wait_left(c, now) for c in self.candidates)

    def _kind(self, candidate: Candidate) -> Refusal | None:
        last = self._last.get(candidate)
        return last[0] if last else None

    def _kinds(self) -> set[Refusal | None]:
        return {self._kind(c) for c in self.candidates}

    def _all_rejected(self) -> bool:
        """Whether no candidate waits for capacity: every one refused the request itself
        (some may only lack access), so trying again soon cannot help."""
        kinds = self._kinds()
        return Refusal.REJECTED in kinds and kinds <= {Refusal.REJECTED, Refusal.FORBIDDEN}

    def _rejections(self) -> str:
        """One line: every candidate rejected the request, and Runpod's reasons."""
        reasons = dict.fromkeys(
            detail
            for kind, detail in (self._last.get(c, (None, "")) for c in self.candidates)
            if kind is Refusal.REJECTED
        )
        return (
            f"Runpod rejected the create on every candidate ({len(self.candidates)}) as a "
            f"request problem, not for capacity ({' | '.join(reasons)}); check "
            "RUNPOD_GPU_TYPES, RUNPOD_DATA_CENTERS and RUNPOD_NETWORK_VOLUME_ID"
        )
