from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker.procs import WorkerProcs


@pytest.fixture
def worker_procs(worker_dsn: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    """Worker processes logged in as the gpu_worker role; the test fails if it leaves any
    running (they are killed either way)."""
    procs = WorkerProcs(worker_dsn, log_dir=tmp_path / "logs")
    try:
        yield procs
    finally:
        leftovers = procs.close()
    assert not leftovers, f"test left workers running: {leftovers}"
