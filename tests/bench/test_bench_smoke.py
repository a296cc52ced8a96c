"""Keep the benchmarks from rotting: the smallest run of one benchmark, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_insert_overhead_runs_and_writes_its_results(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--tiny",
            "--only",
            "insert_overhead",
            "--results",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Insert overhead" in run.stdout
    result = json.loads((tmp_path / "insert_overhead.json").read_text())
    assert result["status"] == "ok"
    tps = result["figures"]["8"]["tps"]
    assert all(tps[variant]["median"] > 0 for variant in ("a", "a_idle", "b", "c"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["machine"]["cores"] >= 1
    assert summary["benchmarks"]["insert_overhead"]["status"] == "ok"
