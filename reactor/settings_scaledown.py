"""How idle workers are let go: a fixed idle time, or break-even (reactor/domain/breakeven.py).

Only ``Settings`` is instantiated; it inherits these fields.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

ScaleDownPolicy = Literal["fixed", "break-even"]


class ScaleDownSettings(BaseSettings):
    scale_down_policy: ScaleDownPolicy = Field(
        "fixed",
        alias="SCALE_DOWN_POLICY",
        description="fixed: an idle worker above what the queue needs is drained after "
        "SCALE_DOWN_IDLE_SEC. break-even: it is kept while it is more likely than not to "
        "be needed within one pod start-up (from the recent arrival rate), for at most a "
        "start-up or SCALE_DOWN_IDLE_SEC, and drained at once otherwise.",
    )
    pod_startup_estimate_sec: float = Field(
        120,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        alias="POD_STARTUP_ESTIMATE_SEC",
        description="break-even: seconds from a pod's create to its first heartbeat, used "
        "while no live worker has measured it (their mean start-up wins).",
    )
    gpu_overcapacity_idle_timeout_sec: float | None = Field(
        None,
        ge=0,
        le=7 * 86_400,
        allow_inf_nan=False,
        alias="GPU_OVERCAPACITY_IDLE_TIMEOUT_SEC",
        description="The seed orchestrator's name for SCALE_DOWN_IDLE_SEC: how long a worker "
        "in excess of what the queue needs may stay idle. gpu-reactor drains no other idle "
        "worker, so when set it is SCALE_DOWN_IDLE_SEC (both set to different values is an "
        "error).",
    )

    @model_validator(mode="after")
    def _overcapacity_idle(self) -> Self:
        seed = self.gpu_overcapacity_idle_timeout_sec
        if seed is None:
            return self
        ours = getattr(self, "scale_down_idle_sec", None)  # a field of Settings
        if "scale_down_idle_sec" in self.model_fields_set and ours != seed:
            raise ValueError(
                f"GPU_OVERCAPACITY_IDLE_TIMEOUT_SEC ({seed:g}) and SCALE_DOWN_IDLE_SEC "
                f"({ours:g}) are one idle time under two names: set one"
            )
        setattr(self, "scale_down_idle_sec", seed)  # noqa: B010 - Settings' field, not ours
        return self
