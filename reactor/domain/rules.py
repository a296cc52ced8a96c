"""The rules every reader asks: the policy, the deadlines, /status and the CLI.

Each rule is written here once; nothing else restates it.
"""

from __future__ import annotations

import math

from reactor.domain.model import Snapshot
from reactor.settings import Settings


def desired_workers(snap: Snapshot, settings: Settings) -> int:
    """Workers the queue calls for: ceil(demand / TASKS_PER_GPU_THRESHOLD), within MIN..MAX."""
    wanted = math.ceil(snap.demand / settings.tasks_per_gpu_threshold)
    return max(settings.min_active_gpus, min(settings.max_active_gpus, wanted))
