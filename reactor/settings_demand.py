"""What counts as demand: the task types the fleet runs, or a query of the database's own.

Only ``Settings`` is instantiated; it inherits these fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from reactor.settings_runpod import CommaList, split_list


class DemandSettings(BaseSettings):
    task_types: CommaList = Field(
        default_factory=list,
        alias="TASK_TYPES",
        description="Comma-separated task types the fleet's workers run (pods get them as "
        "WORKER_TASK_TYPES unless WORKER_EXTRA_ENV sets it); only those count as demand. "
        "Empty: every type.",
    )
    pools_file: str | None = Field(
        None,
        alias="POOLS_FILE",
        description="A TOML file of [pools.NAME] tables: GPU pools, each with its own task "
        "types, GPU types, limits and image (keys: these settings in lower case; what a "
        "pool leaves out comes from here). Unset: one pool, 'default', from these settings. "
        'Re-read on SIGHUP or NOTIFY gpu_reactor \'{"event":"reload"}\'.',
    )
    demand_sql: str | None = Field(
        None,
        alias="DEMAND_SQL",
        description="A query answering one non-negative integer: the tasks that need a GPU "
        "now, queued and running. Replaces gpu-reactor's own count for databases with "
        "rules of their own (credits, per-user limits). Runs read-only; a failure keeps the "
        "last good value.",
    )

    @field_validator("task_types", mode="before")
    @classmethod
    def _task_types(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("pools_file", mode="before")
    @classmethod
    def _pools_file(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("demand_sql", mode="before")
    @classmethod
    def _demand_sql(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().rstrip(";").strip()
            return value or None
        return value
