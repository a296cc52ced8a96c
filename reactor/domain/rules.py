"""The rules every reader asks: the policy, the deadlines, /status and the CLI.

Each rule is written here once; nothing else restates it. A worker's timeout rules each
give a ``Verdict`` at a moment ``now``: whether the limit has passed, and the deadline at
which it does. The answer is False before the deadline and True from it on, so absent
events it changes only there: ``decide`` acts on ``breached``, ``next_deadline`` collects
``changes_at``, and /status names a worker's health from the same verdicts.

The SQL views (active_workers_health, orchestrator_status) show the spawn, heartbeat and
stuck-task rules to operators; they read the thresholds from gpu_reactor.settings, which
the reactor writes from the same settings at start (query sync_settings).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from reactor.domain import breakeven
from reactor.domain.model import Snapshot, TaskState, WorkerState, WorkerStatus
from reactor.settings import Settings


def _like(pattern: str) -> str:
    """A SQL LIKE pattern as a regular expression: % any run, _ one character, a
    backslash escapes the next character."""
    out, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return "".join(out)


@functools.lru_cache(maxsize=64)
def _exempt_matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{_like(p)})" for p in patterns), re.DOTALL)


def is_exempt(task: TaskState, settings: Settings) -> bool:
    """Whether a task's type matches STUCK_TASK_EXEMPT_TYPES (LIKE patterns, as SQL
    matches them: the whole type, case-sensitive): a parent that rightly stays In
    Progress for hours while its children run."""
    return _exempt(task, _exempt_matcher(settings.exempt_task_types()))


def exempt_matcher(settings: Settings) -> re.Pattern[str] | None:
    """STUCK_TASK_EXEMPT_TYPES compiled (None: no type is exempt), for ``is_exempt_by``."""
    return _exempt_matcher(settings.exempt_task_types())


def is_exempt_by(task: TaskState, matcher: re.Pattern[str] | None) -> bool:
    return _exempt(task, matcher)


def _exempt(task: TaskState, matcher: re.Pattern[str] | None) -> bool:
    return (
        matcher is not None
        and task.task_type is not None
        and matcher.fullmatch(task.task_type) is not None
    )


def gpu_demand(snap: Snapshot, settings: Settings) -> int:
    """Tasks that need a GPU now: the snapshot's demand less the exempt In Progress
    tasks, which wait for their children and hold no GPU's work. A DEMAND_SQL answer is
    the database's own count, and a pool's routed demand (reactor.domain.routing), are
    taken as they are."""
    if (
        not settings.exempt_task_types()
        or snap.demand_sql is not None
        or snap.routed_demand is not None
    ):
        return snap.demand
    return max(0, snap.demand - sum(1 for t in snap.running if is_exempt(t, settings)))


def desired_workers(snap: Snapshot, settings: Settings) -> int:
    """Workers the queue calls for: ceil(gpu_demand / TASKS_PER_GPU_THRESHOLD), and at
    least the busy workers plus MACHINES_TO_KEEP_IDLE, within MIN..MAX."""
    wanted = math.ceil(gpu_demand(snap, settings) / settings.tasks_per_gpu_threshold)
    if settings.machines_to_keep_idle:
        wanted = max(wanted, busy_workers(snap) + settings.machines_to_keep_idle)
    return max(settings.min_active_gpus, min(settings.max_active_gpus, wanted))


def busy_workers(snap: Snapshot) -> int:
    """Active workers with a task In Progress (the warm buffer is counted on top)."""
    return sum(1 for w in snap.workers if w.status == WorkerStatus.ACTIVE and snap.tasks_of(w.id))


class Verdict(NamedTuple):
    """One timeout rule's answer at one moment.

    ``deadline`` is when the limit is (or was) reached; ``None`` when the rule does not
    apply (the spawn timeout of an active worker, the idle rule of a busy one), which is
    never breached. An immutable named tuple rather than a frozen dataclass: a reconcile
    builds several per worker, and a tuple is several times cheaper to build.
    """

    breached: bool
    deadline: datetime | None

    @property
    def changes_at(self) -> datetime | None:
        """When, absent events, this answer changes: its deadline, until it is breached."""
        return None if self.breached else self.deadline


NOT_APPLICABLE = Verdict(breached=False, deadline=None)


# The statuses as plain module constants: an enum member looked up on its class costs
# more than the rest of a rule, and a reconcile asks thousands of rules.
_SPAWNING = WorkerStatus.SPAWNING
_ACTIVE = WorkerStatus.ACTIVE
_TERMINATING = WorkerStatus.TERMINATING
_STARTED = frozenset({WorkerStatus.ACTIVE, WorkerStatus.TERMINATING})


_SPANS: dict[float, timedelta] = {}
_new_verdict = tuple.__new__  # Verdict(...) through NamedTuple's __new__ costs 3x as much


def _span(seconds: float) -> timedelta:
    """A limit in seconds as a timedelta, built once per distinct limit (a reconcile asks
    for the same few limits thousands of times)."""
    span = _SPANS.get(seconds)
    if span is None:
        if len(_SPANS) > 256:  # settings reloaded many times: start over
            _SPANS.clear()
        span = _SPANS[seconds] = timedelta(seconds=seconds)
    return span


class Limits(NamedTuple):
    """The settings' limits as timedeltas, and the exempt task types' matcher: what the
    rules need of the settings, resolved once per judgement rather than once per rule."""

    spawn: timedelta
    heartbeat: timedelta
    drain: timedelta
    idle: timedelta
    stuck: timedelta
    exempt: re.Pattern[str] | None


def limits_of(settings: Settings) -> Limits:
    return Limits(
        _span(settings.spawning_timeout_sec),
        _span(settings.gpu_idle_timeout_sec),
        _span(settings.graceful_shutdown_timeout_sec),
        _span(settings.scale_down_idle_sec),
        _span(settings.task_stuck_timeout_sec),
        _exempt_matcher(settings.exempt_task_types()),
    )


def _limit(since: datetime, span: timedelta, now: datetime) -> Verdict:
    deadline = since + span
    return _new_verdict(Verdict, (now >= deadline, deadline))


def last_sign_of_life(worker: WorkerState) -> datetime:
    """Its last heartbeat; for one that never beat, its activation or, failing that, birth."""
    return worker.last_heartbeat or worker.activated_at or worker.created_at


def spawn_timeout(worker: WorkerState, settings: Settings, now: datetime) -> Verdict:
    """A spawning worker has SPAWNING_TIMEOUT_SEC from its intent row to a first heartbeat."""
    return _spawn(worker, limits_of(settings), now)


def _spawn(worker: WorkerState, limits: Limits, now: datetime) -> Verdict:
    if worker.status != _SPAWNING:
        return NOT_APPLICABLE
    return _limit(worker.created_at, limits.spawn, now)


def heartbeat_timeout(worker: WorkerState, settings: Settings, now: datetime) -> Verdict:
    """A started worker (active or draining) is dead GPU_IDLE_TIMEOUT_SEC after its last
    sign of life. A spawning one is judged by the spawn timeout instead."""
    return _heartbeat(worker, limits_of(settings), now)


def _heartbeat(worker: WorkerState, limits: Limits, now: datetime) -> Verdict:
    if worker.status not in _STARTED:
        return NOT_APPLICABLE
    since = worker.last_heartbeat or worker.activated_at or worker.created_at
    return _limit(since, limits.heartbeat, now)


def drain_timeout(worker: WorkerState, settings: Settings, now: datetime) -> Verdict:
    """A draining worker may finish its task for GRACEFUL_SHUTDOWN_TIMEOUT_SEC from the drain
    (from its creation, if the row does not say when the drain began)."""
    return _drain(worker, limits_of(settings), now)


def _drain(worker: WorkerState, limits: Limits, now: datetime) -> Verdict:
    if worker.status != _TERMINATING:
        return NOT_APPLICABLE
    return _limit(worker.draining_since or worker.created_at, limits.drain, now)


def stuck_timeout(task: TaskState, settings: Settings, now: datetime) -> Verdict:
    """A task In Progress is stuck TASK_STUCK_TIMEOUT_SEC after it started, unless its
    type is exempt (STUCK_TASK_EXEMPT_TYPES)."""
    return _stuck(task, limits_of(settings), now)


def _stuck(task: TaskState, limits: Limits, now: datetime) -> Verdict:
    if task.started_at is None or _exempt(task, limits.exempt):
        return NOT_APPLICABLE
    return _limit(task.started_at, limits.stuck, now)


def idle_timeout(
    worker: WorkerState,
    tasks: Sequence[TaskState],
    settings: Settings,
    now: datetime,
    keep: timedelta | None = None,
) -> Verdict:
    """An active worker with no task (``tasks`` are its tasks In Progress) may be drained
    for scale-down SCALE_DOWN_IDLE_SEC after it last became free - or, under break-even,
    ``keep`` after it (its entry in breakeven.keep_windows)."""
    return _idle(worker, tasks, limits_of(settings), now, keep)


def _idle(
    worker: WorkerState,
    tasks: Sequence[TaskState],
    limits: Limits,
    now: datetime,
    keep: timedelta | None = None,
) -> Verdict:
    if worker.status != _ACTIVE or tasks:
        return NOT_APPLICABLE
    return _limit(worker.idle_since, limits.idle if keep is None else keep, now)


class WorkerVerdicts(NamedTuple):
    """Every worker rule's verdict on one worker (NOT_APPLICABLE where its status rules
    the rule out)."""

    spawn: Verdict
    heartbeat: Verdict
    drain: Verdict
    idle: Verdict


class Judgement(NamedTuple):
    """Every rule's verdict at ``snap.now``: per worker id, and per running task in the
    order of ``snap.running``."""

    workers: dict[str, WorkerVerdicts]
    tasks: tuple[Verdict, ...]


def _judge_worker(
    worker: WorkerState,
    snap: Snapshot,
    limits: Limits,
    now: datetime,
    keep: dict[str, timedelta] | None,
) -> WorkerVerdicts:
    status = worker.status
    na = NOT_APPLICABLE
    if status == _SPAWNING:  # the other rules do not apply (they say so themselves)
        return _new_verdict(WorkerVerdicts, (_spawn(worker, limits, now), na, na, na))
    heartbeat = _heartbeat(worker, limits, now)
    if status == _TERMINATING:
        return _new_verdict(WorkerVerdicts, (na, heartbeat, _drain(worker, limits, now), na))
    if status == _ACTIVE:
        idle = _idle(worker, snap.tasks_of(worker.id), limits, now, _keep(keep, worker))
        return _new_verdict(WorkerVerdicts, (na, heartbeat, na, idle))
    return WorkerVerdicts(
        _spawn(worker, limits, now),
        heartbeat,
        _drain(worker, limits, now),
        _idle(worker, snap.tasks_of(worker.id), limits, now, _keep(keep, worker)),
    )


def _keep(keep: dict[str, timedelta] | None, worker: WorkerState) -> timedelta | None:
    return None if keep is None else keep.get(worker.id)


def _judge_workers(
    snap: Snapshot, limits: Limits, now: datetime, keep: dict[str, timedelta] | None
) -> dict[str, WorkerVerdicts]:
    """Every worker's verdicts. Active workers, nearly all of a big fleet, take a path with
    _heartbeat and _idle written out (a call costs as much as the rule itself there);
    tests/domain/test_rules.py proves it answers what the rules answer. ``keep`` are the
    break-even rule's idle times (None: SCALE_DOWN_IDLE_SEC for every worker)."""
    na, new = NOT_APPLICABLE, _new_verdict
    beat, idle_for = limits.heartbeat, limits.idle
    busy = {t.worker_id for t in snap.running}  # one pass, not a tasks_of list per worker
    judged: dict[str, WorkerVerdicts] = {}
    for w in snap.workers:
        if w.status != _ACTIVE:
            judged[w.id] = _judge_worker(w, snap, limits, now, keep)
            continue
        dead_at = (w.last_heartbeat or w.activated_at or w.created_at) + beat
        heartbeat = new(Verdict, (now >= dead_at, dead_at))
        if w.id in busy:
            judged[w.id] = new(WorkerVerdicts, (na, heartbeat, na, na))
        else:
            idle_at = w.idle_since + (idle_for if keep is None else keep[w.id])
            judged[w.id] = new(
                WorkerVerdicts, (na, heartbeat, na, new(Verdict, (now >= idle_at, idle_at)))
            )
    return judged


def _judge_tasks(snap: Snapshot, limits: Limits, now: datetime) -> tuple[Verdict, ...]:
    if limits.exempt is not None:
        return tuple(_stuck(t, limits, now) for t in snap.running)
    na, new, stuck_for = NOT_APPLICABLE, _new_verdict, limits.stuck
    return tuple(  # of a list: a generator costs a resume per task
        [
            na
            if t.started_at is None
            else new(Verdict, (now >= (d := t.started_at + stuck_for), d))
            for t in snap.running
        ]
    )


def judge(snap: Snapshot, settings: Settings) -> Judgement:
    """Every rule's verdict on every live worker and running task, at ``snap.now``; worked
    out once per snapshot and settings (decide and next_deadline both ask). The rules a
    worker's status rules out are not asked: each returns NOT_APPLICABLE there
    (tests/domain/test_rules.py proves it)."""

    def compute() -> Judgement:
        now, limits, keep = snap.now, limits_of(settings), breakeven.keep_windows(snap, settings)
        return Judgement(_judge_workers(snap, limits, now, keep), _judge_tasks(snap, limits, now))

    return snap.derived("verdicts", settings, compute)


def verdicts(snap: Snapshot, settings: Settings) -> Iterator[Verdict]:
    """Every timeout rule's verdict on every live worker and running task, at ``snap.now``."""
    judged = judge(snap, settings)
    for worker in judged.workers.values():
        yield from worker
    yield from judged.tasks
