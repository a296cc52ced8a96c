"""`gpu-reactor dashboard`: a live terminal view of the queue, the fleet and its cost.

Three parts: ``gather`` reads one DashboardData from the database (the operator views),
``compute_alerts`` and ``render_frame`` are pure (data in, alerts / a rich renderable
out; tests render a frame to a string), and ``run_dashboard`` refreshes until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson
from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from reactor.aio import wait_event
from reactor.db.connect import connect
from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.migrate import check_schema
from reactor.errors import ReactorError
from reactor.ops import observe
from reactor.ops.status_pools import PoolView, UnroutedView, pool_views
from reactor.ops.tables import make_console, pool_line, unrouted_line, workers_table
from reactor.pools_file import load_pools
from reactor.settings import Settings

# A refresh that fails shows the error on screen and tries again.
REFRESH_ERRORS: tuple[type[BaseException], ...] = (ReactorError, *TRANSIENT_DB_ERRORS)

BUDGET_NEAR = 0.9  # share of MAX_HOURLY_SPEND_USD that raises the budget alert
QUEUE_WAIT_ALERT_SEC = 60.0  # a queue this old with no capacity is an alert even if flat
RECENT_TASKS = 12


@dataclass(frozen=True)
class Alert:
    level: Literal["critical", "warning"]
    name: str
    message: str


@dataclass(frozen=True)
class DashboardData:
    observed_at: datetime
    fleet: str
    overview: dict[str, Any]  # ops_orchestrator_status
    workers: list[dict[str, Any]]  # active_workers_health
    recent: list[dict[str, Any]]  # recent_task_activity
    cost: dict[str, Any]  # fleet_cost
    leader: dict[str, Any] | None  # who holds the leader lock
    max_hourly_spend_usd: float | None = None
    max_active_gpus: int = 0
    alerts: list[Alert] = field(default_factory=list)
    error: str | None = None  # set when the last refresh failed (data is the previous one)
    # With POOLS_FILE: each pool, and the tasks no pool runs (as /status shows them).
    pools: list[PoolView] = field(default_factory=list)
    unrouted: UnroutedView = field(default_factory=UnroutedView)


async def gather(conn: asyncpg.Connection, settings: Settings) -> DashboardData:
    pools: list[PoolView] = []
    unrouted = UnroutedView()
    in_force = load_pools(settings)  # re-read each frame: a reload shows
    if in_force.routed:
        state = await observe.fleet_state(conn, settings, in_force)
        pools, unrouted = pool_views(state, settings, datetime.now(UTC))
    return DashboardData(
        observed_at=datetime.now(UTC),
        fleet=settings.reactor_fleet,
        overview={**await observe.overview(conn), **await observe.blocked(conn, settings)},
        workers=await observe.live_workers(conn),
        recent=await observe.recent_tasks(conn, RECENT_TASKS),
        cost=await observe.fleet_cost(conn),
        leader=await observe.leader_holder(conn, settings.reactor_fleet),
        max_hourly_spend_usd=settings.max_hourly_spend_usd,
        max_active_gpus=settings.max_active_gpus,
        pools=pools,
        unrouted=unrouted,
    )


def compute_alerts(data: DashboardData, previous_queued: int | None = None) -> list[Alert]:
    """What an on-call person should look at, from one frame (and the last queue size)."""
    o, alerts = data.overview, []
    if data.leader is None:
        alerts.append(
            Alert(
                "critical",
                "no_leader",
                f"no reactor holds the leader lock of fleet "
                f"'{data.fleet}': nothing scales or recovers",
            )
        )
    stale = [w["worker_id"] for w in data.workers if w.get("health") == "stale"]
    if o.get("stale_workers") or stale:
        alerts.append(
            Alert(
                "warning",
                "stale_workers",
                f"{max(o.get('stale_workers') or 0, len(stale))} worker(s) with a stale "
                f"heartbeat: {', '.join(stale) or '-'}",
            )
        )
    if o.get("stuck_tasks"):
        alerts.append(
            Alert(
                "warning",
                "stuck_tasks",
                f"{o['stuck_tasks']} task(s) In Progress longer than TASK_STUCK_TIMEOUT_SEC",
            )
        )
    queued = o.get("queued_tasks") or 0
    capacity = (o.get("spawning_workers") or 0) + (o.get("active_workers") or 0)
    oldest = o.get("oldest_queued_age_sec") or 0.0
    growing = previous_queued is not None and queued > previous_queued
    if queued and not capacity and (growing or oldest >= QUEUE_WAIT_ALERT_SEC):
        alerts.append(
            Alert(
                "critical",
                "queue_no_capacity",
                f"{queued} task(s) queued (oldest {observe.age_text(oldest)}"
                f"{', growing' if growing else ''}) and no spawning or active worker",
            )
        )
    overdue = [w["worker_id"] for w in data.workers if w.get("health") == "spawn_overdue"]
    if overdue:
        alerts.append(
            Alert(
                "warning",
                "spawn_overdue",
                f"no first heartbeat within SPAWNING_TIMEOUT_SEC: {', '.join(overdue)}",
            )
        )
    cap, burn = data.max_hourly_spend_usd, data.cost.get("hourly_burn_usd") or 0.0
    if cap and burn >= BUDGET_NEAR * cap:
        alerts.append(
            Alert(
                "warning",
                "budget_near_cap",
                f"burning ${burn:.2f}/h of the ${cap:.2f}/h cap ({burn / cap:.0%})",
            )
        )
    if data.unrouted.total:
        alerts.append(Alert("warning", "unrouted_tasks", unrouted_line(data.unrouted)))
    return alerts


# --- rendering (pure) --------------------------------------------------------------


def _header(data: DashboardData) -> Text:
    leader = data.leader
    who = (
        (
            f"leader pid {leader['pid']} ({leader.get('application_name') or '?'}"
            f" from {leader.get('client_addr') or 'local'})"
        )
        if leader
        else "NO LEADER"
    )
    text = Text(
        f"gpu-reactor · fleet {data.fleet} · {who} · "
        f"{data.observed_at.strftime('%Y-%m-%d %H:%M:%S')} UTC",
        style="bold",
    )
    if data.error:
        text.append(f"\nrefresh failed, showing the previous data: {data.error}", style="red")
    return text


def _queue_panel(data: DashboardData) -> Panel:
    o = data.overview
    grid = Table.grid(padding=(0, 3))
    for _ in range(6):
        grid.add_column(justify="right")
    grid.add_row(
        "queued", "in progress", "complete 1h", "failed 1h", "cancelled 1h", "oldest queued"
    )
    grid.add_row(
        *(
            Text(str(o.get(k, 0)), style="bold")
            for k in (
                "queued_tasks",
                "in_progress_tasks",
                "completed_last_hour",
                "failed_last_hour",
                "cancelled_last_hour",
            )
        ),
        Text(observe.age_text(o.get("oldest_queued_age_sec")), style="bold"),
    )
    waits = [
        (o.get("waiting", 0), "waiting out a retry delay"),
        (o.get("blocked_waiting", 0), "waiting for their dependencies"),
        (o.get("blocked_for_good", 0), "blocked for good (a dependency failed or is gone)"),
        (o.get("other_types", 0), "of task types no worker here runs"),
    ]
    said = [f"{n} {why}" for n, why in waits if n]
    if said:
        return Panel(
            Group(grid, Text("not claimable: " + "; ".join(said), style="yellow")),
            title="queue",
            title_align="left",
        )
    return Panel(grid, title="queue", title_align="left")


def _cost_panel(data: DashboardData) -> Panel:
    c = data.cost
    cap = data.max_hourly_spend_usd
    burn = c.get("hourly_burn_usd") or 0.0
    line = (
        f"${burn:,.2f}/h now ({c.get('live_workers', 0)} live of max {data.max_active_gpus})"
        f"   ·   ${c.get('spent_today_usd') or 0:,.2f} spent today (UTC)"
    )
    line += f"   ·   cap ${cap:,.2f}/h ({burn / cap:.0%} used)" if cap else "   ·   no hourly cap"
    return Panel(Text(line), title="cost", title_align="left")


def _pools_panel(data: DashboardData) -> Panel:
    """One line per pool; then the tasks no pool runs, by type, when there are any."""
    lines = Text()
    for i, pool in enumerate(data.pools):
        style = "yellow" if pool.spawn_blocked_until is not None else ""
        lines.append(("\n" if i else "") + pool_line(pool), style=style)
    unrouted = unrouted_line(data.unrouted)
    if unrouted:
        lines.append("\n" + unrouted, style="yellow")
    return Panel(lines, title=f"pools ({len(data.pools)})", title_align="left")


def _activity_table(data: DashboardData) -> Table:
    table = Table(title="recent task activity", title_justify="left")
    for name in ("updated", "task", "type", "status", "worker", "took", "error"):
        table.add_column(name, no_wrap=name in ("task", "worker"))
    for row in data.recent:
        updated = row.get("updated_at")
        table.add_row(
            updated.strftime("%H:%M:%S") if updated else "-",
            row["id"][:8],
            row["task_type"],
            row["status"],
            row.get("worker_id") or "-",
            observe.age_text(row.get("processing_sec")),
            (row.get("error_message") or "")[:50],
        )
    if not data.recent:
        table.add_row("(none in the last hour)", *[""] * 6)
    return table


def _alerts_panel(alerts: list[Alert]) -> Panel:
    if not alerts:
        return Panel(Text("none", style="green"), title="alerts", title_align="left")
    lines = Text()
    for i, alert in enumerate(alerts):
        style = "bold red" if alert.level == "critical" else "yellow"
        lines.append(("\n" if i else "") + f"{alert.level.upper():<8} {alert.name}: ", style=style)
        lines.append(alert.message)
    return Panel(lines, title=f"alerts ({len(alerts)})", title_align="left", border_style="red")


def render_frame(data: DashboardData) -> RenderableType:
    """One dashboard frame: header, alerts, queue, cost, workers, recent activity."""
    return Group(
        _header(data),
        _alerts_panel(data.alerts),
        _queue_panel(data),
        *([_pools_panel(data)] if data.pools else []),
        _cost_panel(data),
        workers_table(data.workers, f"workers ({len(data.workers)} live)"),
        _activity_table(data),
    )


def _plain(value: object) -> object:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else str(value)


def export_json(data: DashboardData) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2, default=_plain)


# --- running -----------------------------------------------------------------------


async def _refresh(
    conn: asyncpg.Connection | None, settings: Settings, last: DashboardData | None
) -> tuple[asyncpg.Connection | None, DashboardData | None]:
    """One refresh that survives a database hiccup: reconnect next time, keep old data."""
    try:
        if conn is None or conn.is_closed():
            conn = await connect(settings.dsn(), timeout=5)
        data = await gather(conn, settings)
    except REFRESH_ERRORS as exc:
        if conn is not None:
            conn.terminate()
        if last is None:
            raise
        return None, replace(last, error=str(exc)[:200] or type(exc).__name__)
    previous = last.overview.get("queued_tasks") if last and not last.error else None
    return conn, replace(data, alerts=compute_alerts(data, previous))


async def run_dashboard(
    settings: Settings,
    *,
    interval: float,
    iterations: int | None = None,
    export: bool = False,
    console: Console | None = None,
) -> int:
    conn = await connect(settings.dsn())
    try:
        await check_schema(conn)
        first = await gather(conn, settings)
    except BaseException:
        await conn.close()
        raise
    first = replace(first, alerts=compute_alerts(first))
    if export:
        await conn.close()
        sys.stdout.write(export_json(first).decode() + "\n")
        return 0
    await _live(
        conn,
        settings,
        first,
        interval=interval,
        iterations=iterations,
        console=console or make_console(),
    )
    return 0


async def _live(
    conn: asyncpg.Connection,
    settings: Settings,
    first: DashboardData,
    *,
    interval: float,
    iterations: int | None,
    console: Console,
) -> None:
    """Redraw every ``interval`` seconds until Ctrl-C / SIGTERM or ``iterations`` frames."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    current: asyncpg.Connection | None = conn
    data: DashboardData | None = first
    shown = 1
    try:
        with Live(render_frame(first), console=console, auto_refresh=False) as live:
            while (iterations is None or shown < iterations) and not await wait_event(
                stop, interval
            ):
                current, data = await _refresh(current, settings, data)
                assert data is not None
                live.update(render_frame(data), refresh=True)
                shown += 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        if current is not None and not current.is_closed():
            await current.close()
