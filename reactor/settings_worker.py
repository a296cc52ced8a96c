"""Which worker the pods run (WORKER_PROTOCOL) and what follows from it.

A part of ``reactor.settings.Settings`` (which inherits these fields), like the RUNPOD_*
ones in ``reactor.settings_runpod``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from reactor.settings_runpod import CommaList, split_list

# The seed's long-running parents (travel_orchestrator, ...) wait for their children.
HEADLESS_EXEMPT_TYPES = ("%_orchestrator",)


class WorkerSettings(BaseSettings):
    """WORKER_PROTOCOL and the settings whose defaults depend on it."""

    worker_protocol: Literal["gpu-worker", "headless-wan2gp"] = Field(
        "gpu-worker",
        alias="WORKER_PROTOCOL",
        description="What the pods run: gpu-worker (this project's worker) or "
        "headless-wan2gp (the seed's Headless-Wan2GP worker, started by "
        "RUNPOD_CONTAINER_ARGS; health from its heartbeat and status writes).",
    )
    stuck_task_exempt_types: CommaList | None = Field(
        None,
        alias="STUCK_TASK_EXEMPT_TYPES",
        description="Comma-separated SQL LIKE patterns of task types exempt from "
        "TASK_STUCK_TIMEOUT_SEC and not counted as demand while In Progress (parents that "
        "wait for their children). Unset: none under gpu-worker, %_orchestrator under "
        "headless-wan2gp.",
    )

    @field_validator("stuck_task_exempt_types", mode="before")
    @classmethod
    def _exempt_list(cls, value: Any) -> Any:
        return split_list(value)

    def exempt_task_types(self) -> tuple[str, ...]:
        """The LIKE patterns in force: the setting, or the protocol's default."""
        if self.stuck_task_exempt_types is not None:
            return tuple(self.stuck_task_exempt_types)
        return HEADLESS_EXEMPT_TYPES if self.worker_protocol == "headless-wan2gp" else ()
