"""What the demo runs with: its fleet, its port and the short timeouts that make the whole
story fit in a minute or two (printed at start). Never the environment or a .env file."""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from reactor.settings import Settings

DEMO_FLEET = "gpu-reactor-demo"
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
    "GPU_HOURLY_PRICE_USD": 0.69,  # about what one RTX 4090 costs per hour
    "GPU_IDLE_TIMEOUT_SEC": 6,
    "SCALE_DOWN_IDLE_SEC": 8,
    "SPAWNING_TIMEOUT_SEC": 30,
    "GRACEFUL_SHUTDOWN_TIMEOUT_SEC": 20,
    "TASK_STUCK_TIMEOUT_SEC": 60,
    # Longer than the heartbeat deadline, so that it - not the sweep's pod list - is what
    # notices the killed worker (see Workload._kill_busy_worker).
    "SWEEP_INTERVAL_SEC": 10,
    # Workers beat every second; their task timeout stays under TASK_STUCK_TIMEOUT_SEC.
    "WORKER_EXTRA_ENV": {
        "HEARTBEAT_INTERVAL_SEC": "1",
        "POLL_INTERVAL_SEC": "1",
        "TASK_TIMEOUT_SEC": "30",
        "WORKER_GRACE_SEC": "5",
    },
}


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
