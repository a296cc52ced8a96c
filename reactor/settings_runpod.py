"""The Runpod settings (RUNPOD_*): where pods come from and what each one is made of.

A part of ``reactor.settings.Settings`` (which inherits these fields); kept apart so the
reactor's own settings read in one file and the provider's in another.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode


def split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# A list setting given as one comma-separated string (RUNPOD_GPU_TYPES=a,b).
CommaList = Annotated[list[str], NoDecode]


class RunpodSettings(BaseSettings):
    """RUNPOD_* settings. Only ``Settings`` is instantiated; it inherits these fields."""

    runpod_api_url: str = Field(
        "https://api.runpod.io/v2", alias="RUNPOD_API_URL", description="Runpod REST v2 base URL."
    )
    runpod_api_key: SecretStr | None = Field(
        None, alias="RUNPOD_API_KEY", description="Runpod API key (Bearer)."
    )
    runpod_gpu_types: CommaList = Field(
        default_factory=list,
        alias="RUNPOD_GPU_TYPES",
        description="Comma-separated GPU type ids in order of preference.",
    )
    runpod_instance_type: str | None = Field(
        None,
        alias="RUNPOD_INSTANCE_TYPE",
        description="Seed name: one GPU type, used when RUNPOD_GPU_TYPES is unset.",
    )
    runpod_container_image: str = Field(
        "ghcr.io/gpu-reactor/gpu-worker:latest",
        alias="RUNPOD_CONTAINER_IMAGE",
        description="Worker image every pod runs (see ops/worker.Dockerfile).",
    )
    runpod_container_args: str = Field(
        "",
        alias="RUNPOD_CONTAINER_ARGS",
        description="Arguments to the image's entrypoint, sent as the create body's args "
        "(how a headless-wan2gp pod starts its worker); empty: the image's own command.",
    )
    runpod_container_disk_size_gb: int = Field(
        50,
        ge=1,
        le=4000,
        alias="RUNPOD_CONTAINER_DISK_SIZE_GB",
        description="Container disk in GB, wiped on restart.",
    )
    runpod_cloud: Literal["SECURE", "COMMUNITY"] = Field(
        "SECURE", alias="RUNPOD_CLOUD", description="SECURE or COMMUNITY cloud."
    )
    runpod_data_centers: CommaList = Field(
        default_factory=list,
        alias="RUNPOD_DATA_CENTERS",
        description="Comma-separated data center ids, tried in order; empty = any.",
    )
    runpod_network_volume_id: str | None = Field(
        None,
        alias="RUNPOD_NETWORK_VOLUME_ID",
        description="Network volume to mount (must be in the pod's data center).",
    )
    runpod_volume_mount_path: str = Field(
        "/workspace",
        alias="RUNPOD_VOLUME_MOUNT_PATH",
        description="Where the network volume is mounted.",
    )
    runpod_request_timeout_sec: float = Field(
        20,
        gt=0,
        le=300,
        allow_inf_nan=False,
        alias="RUNPOD_REQUEST_TIMEOUT_SEC",
        description="Timeout of one Runpod API request (reads, terminates; not creates).",
    )
    runpod_create_timeout_sec: float = Field(
        60,
        gt=0,
        le=600,
        allow_inf_nan=False,
        alias="RUNPOD_CREATE_TIMEOUT_SEC",
        description="Timeout of one pod create, which Runpod can be slow to answer (its "
        "sample client waits 60 s). A create that times out is looked up by name, never "
        "sent again blindly.",
    )

    @field_validator("runpod_gpu_types", "runpod_data_centers", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return split_list(value)
