"""What the demo runs with: its fleet, its two GPU pools, its port and the short timeouts
that make the whole story fit in a minute or two (printed at start). Never the environment
or a .env file."""

from __future__ import annotations

import tomllib
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from reactor.settings import Settings

DEMO_FLEET = "gpu-reactor-demo"
VIDEO, IMAGE = "video", "image"  # the demo's two task types, one per pool
DEFAULT_PORT = 9108
FINISH_GRACE_SEC = 60.0  # past --duration, how long the demo waits for open tasks
STOPPED_REASON = "the demo ended: its process was stopped with the demo"

# Short timeouts so the whole story fits in a minute or two. Printed at start.
DEMO_SETTINGS: dict[str, Any] = {
    "REACTOR_PROVIDER": "local",
    "REACTOR_FLEET": DEMO_FLEET,
    "MIN_ACTIVE_GPUS": 0,
    "MAX_ACTIVE_GPUS": 4,
    "TASKS_PER_GPU_THRESHOLD": 3,
    "GPU_IDLE_TIMEOUT_SEC": 6,
    "SCALE_DOWN_IDLE_SEC": 8,
    "SPAWNING_TIMEOUT_SEC": 30,
    "GRACEFUL_SHUTDOWN_TIMEOUT_SEC": 20,
    "TASK_STUCK_TIMEOUT_SEC": 60,
    # Longer than the heartbeat deadline, so that it - not the sweep's pod list - is what
    # notices the killed worker (see Workload._kill_busy_worker).
    "SWEEP_INTERVAL_SEC": 10,
    # Workers beat every second; their task timeout stays under TASK_STUCK_TIMEOUT_SEC.
    # Both of the demo's task types run the built-in sleep processor.
    "WORKER_EXTRA_ENV": {
        "HEARTBEAT_INTERVAL_SEC": "1",
        "POLL_INTERVAL_SEC": "1",
        "TASK_TIMEOUT_SEC": "30",
        "WORKER_GRACE_SEC": "5",
        "WORKER_PROCESSORS": f"{VIDEO}=sleep,{IMAGE}=sleep",
    },
}

# The demo's POOLS_FILE, written to its data directory: video tasks on a dear 80 GB card,
# image tasks on a cheap 24 GB one. The local provider names a pod's GPU after its pool's
# first runpod_gpu_types entry and prices it at its pool's gpu_hourly_price_usd. The
# pools add up to the fleet's MAX_ACTIVE_GPUS. Exact task type names, not "*": a pool
# that listed "*" would have its workers claim the other pool's tasks too.
POOLS_TOML = f"""\
# The GPU pools of gpu-reactor demo (it writes this file at every start).
[pools.big]
task_types = ["{VIDEO}"]
runpod_gpu_types = ["H100 80GB"]
gpu_hourly_price_usd = 2.69
max_active_gpus = 1

[pools.small]
task_types = ["{IMAGE}"]
runpod_gpu_types = ["RTX 4090"]
gpu_hourly_price_usd = 0.69
max_active_gpus = 3
"""
DEMO_POOLS: dict[str, dict[str, Any]] = tomllib.loads(POOLS_TOML)["pools"]


class DemoSettings(Settings):
    """Settings from the demo's values only: never the environment or a .env file, so a
    real DATABASE_URL or RUNPOD_API_KEY there is never touched."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
