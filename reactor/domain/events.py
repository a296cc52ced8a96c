"""NOTIFY payloads on the gpu_reactor channel, parsed into typed events.

Triggers send task_queued, task_finished, worker_status and worker_drained; operators
send sweep, drain and reload by hand:  NOTIFY gpu_reactor, '{"event":"sweep"}'.
Anything else is a MalformedEvent: logged, counted, never fatal.
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

CHANNEL = "gpu_reactor"
MAX_PAYLOAD = 8000  # PostgreSQL's own limit on a NOTIFY payload


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TaskQueued(_Event):
    event: Literal["task_queued"]


class TaskFinished(_Event):
    event: Literal["task_finished"]
    status: str | None = None
    worker_id: str | None = None


class WorkerStatus(_Event):
    event: Literal["worker_status"]
    worker_id: str = Field(max_length=200)
    status: str | None = None


class WorkerDrained(_Event):
    event: Literal["worker_drained"]
    worker_id: str = Field(max_length=200)


class SweepRequest(_Event):
    event: Literal["sweep"]


class DrainRequest(_Event):
    event: Literal["drain"]
    worker_id: str = Field(min_length=1, max_length=200)


class ReloadRequest(_Event):
    """Re-read POOLS_FILE (as SIGHUP does)."""

    event: Literal["reload"]


Event = Annotated[
    TaskQueued
    | TaskFinished
    | WorkerStatus
    | WorkerDrained
    | SweepRequest
    | DrainRequest
    | ReloadRequest,
    Field(discriminator="event"),
]
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_KINDS = (
    "task_queued",
    "task_finished",
    "worker_status",
    "worker_drained",
    "sweep",
    "drain",
    "reload",
)


class MalformedEvent(ValueError):
    """A payload that is not one of the events above; ``str()`` says why in one line."""


def parse_event(payload: str) -> Event:
    if len(payload) > MAX_PAYLOAD:
        raise MalformedEvent(f"payload of {len(payload)} characters is too long")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MalformedEvent("payload is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedEvent("payload is not a JSON object")
    kind = data.get("event")
    if not isinstance(kind, str) or kind not in EVENT_KINDS:
        raise MalformedEvent(f"unknown event {str(kind)[:40]!r}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or kind
        raise MalformedEvent(f"bad {kind} event: {field}: {first.get('msg')}") from None
