"""gpu-worker: the process that runs in each GPU pod.

It shares nothing with the reactor but the SQL contract (the ``func_*`` functions of
sql/schema.sql, schema gpu_reactor), so a pod image needs only asyncpg, orjson and pydantic.
Modules: settings (environment), main (entry, signals, supervision), runner (claim loop),
heartbeat, listener (LISTEN gpu_reactor), processors and command (what runs a task),
db (connections and the calls), gpu (nvidia-smi), state (what the tasks share), logs.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("gpu-reactor")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "unknown"
