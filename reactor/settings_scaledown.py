"""How idle workers are let go: a fixed idle time, or break-even (reactor/domain/breakeven.py).

Only ``Settings`` is instantiated; it inherits these fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
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
