"""nvidia-smi output parsing, and its absence."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.gpu import GpuProbe, parse_nvidia_smi, summarise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "81920, 1234, NVIDIA A100 80GB PCIe\n",
            [{"name": "NVIDIA A100 80GB PCIe", "memory_total_mib": 81920, "memory_used_mib": 1234}],
        ),
        (
            "24564, 0, NVIDIA GeForce RTX 4090\n24564, 5, NVIDIA GeForce RTX 4090\n",
            [
                {
                    "name": "NVIDIA GeForce RTX 4090",
                    "memory_total_mib": 24564,
                    "memory_used_mib": 0,
                },
                {
                    "name": "NVIDIA GeForce RTX 4090",
                    "memory_total_mib": 24564,
                    "memory_used_mib": 5,
                },
            ],
        ),
        ("[N/A], [N/A], Some GPU\n", []),
        ("NVIDIA-SMI has failed because it couldn't communicate with the driver\n", []),
        ("", []),
        (
            "16384, 12, Name, with, commas\n",
            [{"name": "Name, with, commas", "memory_total_mib": 16384, "memory_used_mib": 12}],
        ),
    ],
)
def test_parse(text: str, expected: list[dict[str, object]]) -> None:
    assert parse_nvidia_smi(text) == expected


def test_summary_totals() -> None:
    gpus = parse_nvidia_smi("100, 10, A\n200, 20, A\n")
    assert summarise(gpus) == {
        "gpus": gpus,
        "gpu_count": 2,
        "gpu_name": "A",
        "vram_total_mib": 300,
        "vram_used_mib": 30,
    }
    assert summarise([]) == {}


async def test_absent_nvidia_smi_is_not_an_error(tmp_path: Path) -> None:
    probe = GpuProbe()
    probe.executable = None  # as when shutil.which finds nothing
    assert await probe.read() == {}
    assert await GpuProbe(executable=str(tmp_path / "missing")).read() == {}


async def test_a_failing_nvidia_smi_gives_no_fields(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'driver not loaded' >&2\nexit 9\n")
    smi.chmod(0o755)
    assert await GpuProbe(executable=str(smi)).read() == {}
