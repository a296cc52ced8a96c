"""The worker shares only the SQL contract with the reactor: it must not import it (nor the
reactor's heavier dependencies), so a pod image could ship without them."""

from __future__ import annotations

import subprocess
import sys

from tests.worker.procs import base_env

PROBE = """
import sys, pkgutil, importlib, worker
for mod in pkgutil.iter_modules(worker.__path__):
    if mod.name == "__main__":
        continue
    importlib.import_module(f"worker.{mod.name}")
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)))
"""
FORBIDDEN = ("reactor", "aiohttp", "prometheus_client", "rich", "tests")


def test_the_worker_imports_nothing_of_the_reactor() -> None:
    code = f"FORBIDDEN = {FORBIDDEN!r}\n{PROBE}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=base_env(),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
