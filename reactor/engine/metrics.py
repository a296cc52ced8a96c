"""Prometheus metrics of one reactor process (own registry, bounded labels only)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tasks = Gauge("gpu_reactor_tasks", "Tasks by status.", ["status"], registry=r)
        self.workers = Gauge(
            "gpu_reactor_workers", "Live workers by status.", ["status"], registry=r
        )
        self.desired_workers = Gauge(
            "gpu_reactor_desired_workers",
            "Workers the queue calls for (clamped to MIN/MAX).",
            registry=r,
        )
        self.queue_oldest_age = Gauge(
            "gpu_reactor_queue_oldest_age_seconds", "Age of the oldest Queued task.", registry=r
        )
        self.reaction_latency = Histogram(
            "gpu_reactor_reaction_latency_seconds",
            "From a NOTIFY received to the first action it caused being sent.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "gpu_reactor_reconcile_duration_seconds",
            "Duration of one reconcile.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reconciles = Counter(
            "gpu_reactor_reconciles_total", "Reconciles run.", ["kind"], registry=r
        )
        self.demand_sql_errors = Counter(
            "gpu_reactor_demand_sql_errors_total",
            "DEMAND_SQL runs that failed (the last good value was kept).",
            registry=r,
        )
        self.reconcile_errors = Counter(
            "gpu_reactor_reconcile_errors_total", "Reconciles that failed (retried).", registry=r
        )
        self.provider_requests = Counter(
            "gpu_reactor_provider_requests_total",
            "Provider HTTP requests.",
            ["operation", "outcome"],
            registry=r,
        )
        # Creates the provider refused as request problems, not capacity (a 400 that is not
        # the no-capacity text, a pod outside its volume's data center): exported from 0,
        # so the first one is an increase that GpuReactorProviderErrors sees.
        for outcome in ("rejected", "misplaced"):
            self.provider_requests.labels(operation="create", outcome=outcome)
        self.spawns = Counter(
            "gpu_reactor_spawns_total", "Spawn attempts by outcome.", ["outcome"], registry=r
        )
        self.terminations = Counter(
            "gpu_reactor_terminations_total",
            "Workers ended and pods terminated, by reason.",
            ["reason"],
            registry=r,
        )
        self.drains = Counter("gpu_reactor_drains_total", "Workers told to drain.", registry=r)
        self.tasks_requeued = Counter(
            "gpu_reactor_tasks_requeued_total",
            "Tasks taken back from workers, by reason.",
            ["reason"],
            registry=r,
        )
        self.events = Counter(
            "gpu_reactor_events_total", "NOTIFY events received, by kind.", ["event"], registry=r
        )
        self.malformed_events = Counter(
            "gpu_reactor_malformed_events_total",
            "NOTIFY payloads that were not valid events.",
            registry=r,
        )
        self.refused_drains = Counter(
            "gpu_reactor_refused_drains_total",
            "NOTIFY drain requests not honoured: from a gpu_worker login, or from a session "
            "that ended before it could be checked.",
            ["reason"],
            registry=r,
        )
        self.leader = Gauge(
            "gpu_reactor_leader", "1 while this process is the acting leader.", registry=r
        )
        self.hourly_burn = Gauge(
            "gpu_reactor_hourly_burn_usd", "Summed USD/hour of live workers.", registry=r
        )
        self.budget = Gauge(
            "gpu_reactor_hourly_budget_usd", "MAX_HOURLY_SPEND_USD (0 when unset).", registry=r
        )
        self.listener_up = Gauge(
            "gpu_reactor_listener_up", "1 while the LISTEN connection is healthy.", registry=r
        )
        self.listener_reconnects = Counter(
            "gpu_reactor_listener_reconnects_total", "LISTEN connection re-established.", registry=r
        )
        self.last_sweep = Gauge(
            "gpu_reactor_last_sweep_timestamp_seconds",
            "Unix time of the last successful sweep.",
            registry=r,
        )
        self.spawn_blocked = Gauge(
            "gpu_reactor_spawn_blocked",
            "1 while spawning is paused (backoff, 402, rate limit).",
            registry=r,
        )
        self.start_failures = Gauge(
            "gpu_reactor_worker_start_failures",
            "Workers in a row whose pod never sent a first heartbeat; 0 once one starts. "
            "From 3, spawning pauses and then sends one probe pod at a time.",
            registry=r,
        )
        # Operator surface (issue 5). The two below are evaluated at scrape time from the
        # last snapshot (reactor/http/server.py binds them); they stay 0 without HTTP.
        self.stale_workers = Gauge(
            "gpu_reactor_stale_workers",
            "Live workers whose heartbeat was older than GPU_IDLE_TIMEOUT_SEC at the last "
            "reconcile.",
            registry=r,
        )
        self.stuck_tasks = Gauge(
            "gpu_reactor_stuck_tasks",
            "Tasks In Progress longer than TASK_STUCK_TIMEOUT_SEC at the last reconcile.",
            registry=r,
        )
        self.info = Gauge(
            "gpu_reactor_info",
            "Always 1; labels say what runs.",
            ["version", "fleet", "provider"],
            registry=r,
        )
        self._pool_metrics(r)
        ProcessCollector(registry=r)

    def _pool_metrics(self, r: CollectorRegistry) -> None:
        """Per GPU pool (the ``pool`` label takes the names in POOLS_FILE, or ``default``)."""
        self.pool_workers = Gauge(
            "gpu_reactor_pool_workers",
            "Live workers by pool and status.",
            ["pool", "status"],
            registry=r,
        )
        self.pool_desired = Gauge(
            "gpu_reactor_pool_desired_workers",
            "Workers each pool's demand calls for.",
            ["pool"],
            registry=r,
        )
        self.pool_demand = Gauge(
            "gpu_reactor_pool_demand",
            "Tasks routed to each pool that need a GPU (claimable Queued and In Progress).",
            ["pool"],
            registry=r,
        )
        self.pool_spilled = Gauge(
            "gpu_reactor_pool_spilled_tasks",
            "Claimable tasks a pool could not take, routed on to a later pool that runs them.",
            ["pool"],
            registry=r,
        )
        self.pool_burn = Gauge(
            "gpu_reactor_pool_hourly_burn_usd",
            "Summed cost of each pool's live workers.",
            ["pool"],
            registry=r,
        )
        self.pool_spawn_blocked = Gauge(
            "gpu_reactor_pool_spawn_blocked",
            "1 while a pool's spawns are paused.",
            ["pool"],
            registry=r,
        )
        self.unrouted = Gauge(
            "gpu_reactor_unrouted_tasks",
            "Claimable Queued tasks that no pool runs, by task type (the 20 commonest; the "
            "rest as '(other)'). Not demand: nothing is spawned for them.",
            ["task_type"],
            registry=r,
        )
        self.pool_reloads = Counter(
            "gpu_reactor_pool_reloads_total",
            "POOLS_FILE reloads, by outcome (ok, refused).",
            ["outcome"],
            registry=r,
        )

    def provider_request(self, operation: str, outcome: str) -> None:
        self.provider_requests.labels(operation=operation, outcome=outcome).inc()
