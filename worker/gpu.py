"""GPU metadata for the heartbeat, read from ``nvidia-smi`` when it is there.

No nvidia-smi (a CPU-only test machine, a container without the driver) is not an error:
the heartbeat simply carries no GPU fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from typing import Any

log = logging.getLogger(__name__)

QUERY = ["--query-gpu=memory.total,memory.used,name", "--format=csv,noheader,nounits"]
TIMEOUT_SEC = 5.0


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """One dict per GPU line ``"81920, 1234, NVIDIA A100 80GB PCIe"`` (MiB); junk skipped."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",", 2)]
        if len(parts) != 3:
            continue
        try:
            total, used = int(float(parts[0])), int(float(parts[1]))
        except ValueError:
            continue
        gpus.append({"name": parts[2], "memory_total_mib": total, "memory_used_mib": used})
    return gpus


def summarise(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """Heartbeat fields for the GPUs: the list plus totals and the model name."""
    if not gpus:
        return {}
    return {
        "gpus": gpus,
        "gpu_count": len(gpus),
        "gpu_name": gpus[0]["name"],
        "vram_total_mib": sum(g["memory_total_mib"] for g in gpus),
        "vram_used_mib": sum(g["memory_used_mib"] for g in gpus),
    }


class GpuProbe:
    """Runs nvidia-smi; remembers that it is absent so it does not look again."""

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or shutil.which("nvidia-smi")
        self._warned = False

    async def read(self) -> dict[str, Any]:
        if self.executable is None:
            return {}
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable,
                *QUERY,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            self._warn(f"cannot run nvidia-smi: {exc}")
            return {}
        try:
            async with asyncio.timeout(TIMEOUT_SEC):
                out, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            self._warn(f"nvidia-smi did not answer within {TIMEOUT_SEC:g}s")
            return {}
        if proc.returncode != 0:
            self._warn(
                f"nvidia-smi exited {proc.returncode}: {err.decode(errors='replace')[-200:]}"
            )
            return {}
        return summarise(parse_nvidia_smi(out.decode(errors="replace")))

    def _warn(self, message: str) -> None:
        if not self._warned:
            log.warning("gpu_query_failed", extra={"error": message.strip()})
            self._warned = True
