"""Rich renderings for the terminal: status, workers, tasks, actions.

Pure functions from data to rich renderables; printing is the caller's business. Worker
rows use the column names of the active_workers_health view (worker_id, health, ...).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from reactor.domain.pools import Pools
from reactor.ops.observe import age_text
from reactor.ops.status import StatusView, WorkerView
from reactor.ops.status_pools import PoolView, UnroutedView

HEALTH_STYLE = {
    "idle": "green",
    "busy": "cyan",
    "starting": "yellow",
    "draining": "magenta",
    "stale": "bold red",
    "spawn_overdue": "bold red",
    "stuck_task": "bold red",
}
PIPE_WIDTH = 160  # columns when stdout is not a terminal, so piped output is not cut


def make_console(**kwargs: Any) -> Console:
    if not sys.stdout.isatty() and "width" not in kwargs:
        kwargs["width"] = PIPE_WIDTH
    return Console(**kwargs)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _clock(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def health_text(health: str) -> Text:
    return Text(health, style=HEALTH_STYLE.get(health, ""))


def worker_row(view: WorkerView) -> dict[str, Any]:
    """A /status worker in the shape of an active_workers_health row."""
    return {
        "worker_id": view.id,
        "status": view.status,
        "health": view.health,
        "pod_id": view.pod_id,
        "gpu_type": view.gpu_type,
        "cost_per_hr": view.cost_per_hr,
        "heartbeat_age_sec": view.heartbeat_age_sec,
        "current_task_id": view.current_task_id,
        "current_task_age_sec": view.current_task_age_sec,
        "pool": view.pool,
    }


def workers_table(rows: list[dict[str, Any]], title: str = "workers") -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("worker", no_wrap=True)
    table.add_column("status")
    table.add_column("health")
    table.add_column("pod", no_wrap=True)
    table.add_column("gpu")
    table.add_column("$/h", justify="right")
    table.add_column("heartbeat", justify="right")
    table.add_column("task", no_wrap=True)
    table.add_column("task age", justify="right")
    for row in rows:
        task = row.get("current_task_id")
        table.add_row(
            row["worker_id"],
            row["status"],
            health_text(row.get("health") or "-"),
            row.get("pod_id") or "-",
            row.get("gpu_type") or "-",
            f"{row.get('cost_per_hr') or 0:.3f}",
            age_text(row.get("heartbeat_age_sec")),
            task[:8] if task else "-",
            age_text(row.get("current_task_age_sec")),
        )
    if not rows:
        table.add_row("(none)", *[""] * 8)
    return table


def workers_by_pool(
    rows: list[dict[str, Any]], pools: Pools | None, title: str = "live workers"
) -> list[Table]:
    """One table per pool in file order (rows carry ``pool``), then the workers whose pool
    left POOLS_FILE; without POOLS_FILE, one table as before pools."""
    if pools is None or not pools.routed:
        return [workers_table(rows, f"{title} ({len(rows)})")]
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in pools.names}
    gone: list[dict[str, Any]] = []
    for row in rows:
        groups.get(row.get("pool") or "", gone).append(row)
    tables = [workers_table(g, f"pool {name}: {title} ({len(g)})") for name, g in groups.items()]
    if gone:
        what = f"pools no longer in POOLS_FILE (draining): {title} ({len(gone)})"
        tables.append(workers_table(gone, what))
    return tables


def pool_line(p: PoolView) -> str:
    """One pool in a line: workers live/desired/max, demand, queue, spill, burn, pause."""
    spilled = f", {p.spilled_out} spilled on" if p.spilled_out else ""
    spilled += f", {p.spilled_in} spilled in" if p.spilled_in else ""
    budget = f" of {_money(p.max_hourly_spend_usd)}" if p.max_hourly_spend_usd else ""
    line = (
        f"{p.name}: {p.live_workers} live / {p.desired_workers} desired / "
        f"{p.max_active_gpus} max; demand {p.demand}, {p.queued} queued{spilled}; "
        f"{_money(p.hourly_burn_usd)}/h{budget}"
    )
    if p.spawn_blocked_until is not None:
        line += f"; spawns PAUSED until {_clock(p.spawn_blocked_until)}: {p.spawn_blocked_reason}"
    return line


def unrouted_line(u: UnroutedView) -> str:
    """The tasks no pool runs, by type ('' when none)."""
    if not u.total:
        return ""
    types = ", ".join(f"{n} {t}" for t, n in u.by_type.items())
    return f"{u.total} queued task(s) of types no pool runs (nothing is spawned): {types}"


def pools_table(pools: list[PoolView]) -> Table:
    table = Table(title="pools", title_justify="left")
    for name in ("pool", "task types", "gpu", "live/desired/max", "demand", "queued"):
        table.add_column(name, justify="right" if name in ("demand", "queued") else "left")
    for name in ("spilled in/out", "$/h", "spawns"):
        table.add_column(name, justify="right" if name == "$/h" else "left")
    for p in pools:
        budget = f" of {p.max_hourly_spend_usd:.2f}" if p.max_hourly_spend_usd else ""
        paused = (
            Text(f"paused until {_clock(p.spawn_blocked_until)}", style="yellow")
            if p.spawn_blocked_until
            else Text("allowed")
        )
        table.add_row(
            p.name,
            ", ".join(p.task_types),
            ", ".join(p.gpu_types) or "-",
            f"{p.live_workers}/{p.desired_workers}/{p.max_active_gpus}",
            str(p.demand),
            str(p.queued),
            f"{p.spilled_in}/{p.spilled_out}",
            f"{p.hourly_burn_usd:.2f}{budget}",
            paused,
        )
    return table


def ended_workers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="ended workers (most recent first)", title_justify="left")
    for name in ("worker", "status", "pod", "gpu", "$/h", "ended", "reason"):
        table.add_column(name, no_wrap=name in ("worker", "pod"))
    for row in rows:
        table.add_row(
            row["worker_id"],
            row["status"],
            row.get("pod_id") or "-",
            row.get("gpu_type") or "-",
            f"{row.get('cost_per_hr') or 0:.3f}",
            _clock(row.get("terminated_at")),
            (row.get("reason") or "")[:80],
        )
    return table


def tasks_table(rows: list[dict[str, Any]], title: str = "tasks") -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("id", "type", "status", "prio", "attempts", "worker", "updated", "error"):
        table.add_column(name, no_wrap=name in ("id", "worker"))
    for row in rows:
        table.add_row(
            row["id"],
            row["task_type"],
            row["status"],
            str(row["priority"]),
            f"{row['attempts']}/{row['max_attempts']}",
            row.get("worker_id") or "-",
            _clock(row.get("updated_at")),
            (row.get("error_message") or "")[:60],
        )
    if not rows:
        table.add_row("(none)", *[""] * 7)
    return table


def actions_table(actions: list[dict[str, Any]], title: str = "last actions") -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("at", "kind", "outcome", "worker", "reason"):
        table.add_column(name, no_wrap=name in ("at", "worker"))
    for a in actions:
        table.add_row(
            _clock(a["at"]),
            a["kind"],
            a["outcome"],
            a.get("worker_id") or a.get("pod_id") or "-",
            (a.get("reason") or "")[:90],
        )
    if not actions:
        table.add_row("(none)", "", "", "", "")
    return table


def _summary(view: StatusView) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    leader = {
        True: "a reactor holds the leader lock",
        False: "NO reactor holds the leader lock",
        None: "unknown",
    }[view.leader_present]
    grid.add_row("fleet", f"{view.fleet}  (provider {view.provider})")
    grid.add_row("role", f"{view.role}; {leader}")
    grid.add_row(
        "observed", f"{_clock(view.observed_at)} UTC; data as of {_clock(view.snapshot_at)}"
    )
    q = view.queue
    if q is not None:
        grid.add_row(
            "queue",
            f"{q.queued} queued (oldest {age_text(q.oldest_queued_age_sec)}), "
            f"{q.in_progress} in progress, {q.stuck_tasks} stuck; "
            f"demand {q.demand}, desired workers {q.desired_workers}",
        )
        waits = [
            (q.waiting_retry, "waiting out a retry delay"),
            (q.blocked_waiting, "waiting for their dependencies"),
            (q.blocked_for_good, "blocked for good (a dependency failed or is gone)"),
            (q.other_types, "of task types no worker here runs"),
        ]
        said = [f"{n} {why}" for n, why in waits if n]
        if said:
            grid.add_row("waiting", "; ".join(said))
    b = view.budget
    cap = _money(b.max_hourly_spend_usd) if b.max_hourly_spend_usd else "no cap"
    used = f" ({b.used_ratio:.0%})" if b.used_ratio is not None else ""
    grid.add_row(
        "budget",
        f"{_money(b.hourly_burn_usd)}/h of {cap}{used}; "
        f"next worker ~{_money(b.expected_worker_price_usd)}/h",
    )
    if b.spawn_blocked_until:
        grid.add_row(
            "spawns",
            Text(
                f"paused until {_clock(b.spawn_blocked_until)}: {b.spawn_blocked_reason}",
                style="yellow",
            ),
        )
    if view.role != "cli":
        lst = view.listener
        grid.add_row(
            "listener",
            Text("connected", style="green")
            if lst.connected
            else Text(f"not connected ({lst.last_error or 'not started'})", style="red"),
        )
        if lst.hint:
            grid.add_row("", Text(lst.hint, style="yellow"))
        grid.add_row(
            "reconcile",
            f"{view.reconcile.count} runs, last {view.reconcile.last_kind} "
            f"at {_clock(view.reconcile.last_at)}",
        )
    return grid


def status_renderable(view: StatusView, pools: Pools | None = None) -> RenderableType:
    """The status as tables; with POOLS_FILE (``pools``), the pools and their workers."""
    rows = [worker_row(w) for w in view.workers]
    actions = [a.model_dump() for a in view.actions[:15]]
    if pools is None or not pools.routed:
        return Group(
            _summary(view),
            Text(""),
            workers_table(rows),
            actions_table(actions, "last actions (newest first)"),
        )
    unrouted = unrouted_line(view.unrouted)
    return Group(
        _summary(view),
        Text(""),
        pools_table(view.pools),
        *([Text(unrouted, style="yellow")] if unrouted else []),
        *workers_by_pool(rows, pools, "workers"),
        actions_table(actions, "last actions (newest first)"),
    )
