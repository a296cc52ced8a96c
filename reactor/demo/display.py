"""What the demo shows: its intro, then the live dashboard or plain lines for CI.

Both displays narrate the story (``narrate``: one line per step of the workload) and
refresh until cancelled. The live one reuses reactor/ops/dashboard.py's ``gather`` and
``render_frame`` with the demo's GPU pools and the reactor's last actions under it; the
plain one prints a progress line and a line about the pools every few seconds from what
the reactor already knows (reactor/demo/pools_view.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from reactor.demo.pools_view import done_by_pool, pool_rows, pools_line, pools_table
from reactor.demo.workload import Plan
from reactor.domain.model import WorkerStatus
from reactor.domain.pools import Pools
from reactor.engine.service import Reactor
from reactor.ops.dashboard import compute_alerts, gather, render_frame
from reactor.ops.tables import actions_table
from reactor.settings import Settings

log = logging.getLogger("reactor.demo.command")

LIVE_REFRESH_SEC = 1.0
PLAIN_EVERY_SEC = 5.0
ACTIONS_SHOWN = 6
RUN_COMPLETE = """
SELECT count(*) FROM tasks WHERE params ->> 'demo_run' = $1 AND status = 'Complete'
"""


class Display:
    """The plain display: narration and a progress line every PLAIN_EVERY_SEC."""

    def __init__(
        self,
        *,
        reactor: Reactor,
        pool: asyncpg.Pool,
        run_id: str,
        duration: float,
        urls: str,
        console: Console,
        log_level: int = logging.INFO,
    ) -> None:
        self.reactor = reactor
        self.pool = pool
        self.run_id = run_id
        self.duration = duration
        self.urls = urls
        self.console = console
        self.started = time.monotonic()
        self.stage = "starting"
        self.log_level = log_level  # the plain display's narration is on stdout already

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def narrate(self, event: str, text: str, fields: dict[str, Any]) -> None:
        self.stage = text
        log.log(self.log_level, event, extra={"elapsed_sec": round(self.elapsed(), 1), **fields})
        line = Text(f"[{self.elapsed():6.1f}s] ", style="dim")
        line.append(text, style="bold" if event != "demo_wait_timeout" else "bold red")
        self.console.print(line)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PLAIN_EVERY_SEC)
            self.console.print(
                Text(f"[{self.elapsed():6.1f}s] {await self._progress()}", style="dim")
            )
            if self.reactor.state.snapshot is not None:
                self.console.print(Text(f"{'':10}{await self._pools_line()}", style="dim"))

    async def _pools_line(self) -> str:
        done = await done_by_pool(self.pool, self.run_id)
        return pools_line(pool_rows(self.reactor.state.snapshot, self.reactor.pools, done))

    async def _progress(self) -> str:
        complete = await self.pool.fetchval(RUN_COMPLETE, self.run_id)
        snap = self.reactor.state.snapshot
        if snap is None:
            return f"{complete} complete; the reactor has not reconciled yet"
        counts = Counter(w.status for w in snap.workers)
        return (
            f"queue: {snap.queued} queued, {snap.in_progress} in progress, {complete} "
            f"complete | workers: {counts[WorkerStatus.SPAWNING]} spawning, "
            f"{counts[WorkerStatus.ACTIVE]} active, "
            f"{counts[WorkerStatus.TERMINATING]} draining | ${snap.hourly_burn:.2f}/h"
        )


class LiveDisplay(Display):
    """The live dashboard of reactor/ops/dashboard.py, refreshed every second."""

    async def run(self) -> None:
        previous: int | None = None
        with Live(
            self._frame(None), console=self.console, auto_refresh=False, vertical_overflow="visible"
        ) as live:
            while True:
                async with self.pool.acquire() as conn:
                    data = await gather(conn, self.reactor.settings)
                    done = await done_by_pool(conn, self.run_id)
                alerts = compute_alerts(data, previous)
                previous = data.overview.get("queued_tasks")
                pools = pools_table(
                    pool_rows(self.reactor.state.snapshot, self.reactor.pools, done)
                )
                frame = self._frame(render_frame(replace(data, alerts=alerts)), pools)
                live.update(frame, refresh=True)
                await asyncio.sleep(LIVE_REFRESH_SEC)

    def _frame(
        self, dashboard: RenderableType | None, pools: RenderableType | None = None
    ) -> RenderableType:
        head = Text(
            f"gpu-reactor demo · {self.elapsed():.0f}s of {self.duration:.0f}s · ", style="bold"
        )
        head.append(self.stage)
        head.append(f"\n{self.urls} · Ctrl-C stops everything", style="dim")
        parts: list[RenderableType] = [Panel(head, border_style="cyan")]
        if dashboard is not None:
            actions = [
                {**a.as_dict(), "at": datetime.fromtimestamp(a.at)}
                for a in list(self.reactor.state.actions)[-ACTIONS_SHOWN:]
            ]
            parts += [dashboard, *([pools] if pools is not None else [])]
            parts.append(actions_table(actions, "the reactor's last actions"))
        return Group(*parts)


def print_intro(
    console: Console,
    *,
    where: str,
    plan: Plan,
    duration: float,
    port: int,
    data_dir: Path,
    settings: dict[str, Any],
    pools: Pools,
) -> None:
    """What is about to run, the demo's pools, and its settings with what each one means."""
    sizes = ", ".join(f"{len(b.seconds)} at {b.at:g}s" for b in plan.bursts)
    console.print(
        "[bold]gpu-reactor demo[/]: the real reactor, real worker processes, a real "
        "Postgres; nothing to sign up for"
    )
    console.print(f"  database   {where}")
    console.print(
        f"  workers    'python -m worker' processes (provider 'local'); their logs in "
        f"{data_dir / 'worker-logs'}"
    )
    console.print(
        f"  workload   {plan.tasks} tasks over about {duration:g}s, video and image ones "
        f"(each sleeps 1-3 s): bursts of {sizes}; then {len(plan.act_two)} image tasks, and "
        "the worker that takes them is killed with SIGKILL mid-task"
    )
    console.print(f"  pools      {pools.source} (each pool's workers claim only its task types)")
    for pool in pools:
        s = pool.settings
        gpu = next(iter(s.runpod_gpu_types), "-")
        console.print(
            f"    {pool.name:<6} {', '.join(pool.patterns):<8} on {gpu!r} at "
            f"${s.gpu_hourly_price_usd:.2f}/GPU-hour, at most {s.max_active_gpus}"
        )
    console.print(
        f"  console    http://127.0.0.1:{port}/   (the web console: fleet, queue, spend, live)"
    )
    console.print(f"  watch      http://127.0.0.1:{port}/status   http://127.0.0.1:{port}/metrics")
    console.print("  settings   (short timeouts so the story fits in a couple of minutes)")
    fields = {f.alias: f for f in Settings.model_fields.values() if f.alias}
    for name, value in settings.items():
        shown = orjson.dumps(value).decode() if isinstance(value, dict) else value
        about = (fields[name].description or "").split(". ")[0].rstrip(".")
        head = f"    {name}={shown}"
        line = Text(head.ljust(36) if len(head) < 36 else f"{head}  ")
        line.append(about, style="dim")
        console.print(line)
