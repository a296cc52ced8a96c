"""The console's document per GPU pool (reactor/http/console_view.py), pure: each pool's
own spawn trouble alerted by name, and the tasks no pool runs."""

from __future__ import annotations

from reactor.http.console_view import build_view
from reactor.ops.status import build_status
from tests.ops.test_status_pools import NOW, SETTINGS, _single_state, routed_state, two_pools

ROUTED = SETTINGS.model_copy(update={"pools_file": "pools.toml"})


def _alerts(view: dict[str, object]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for a in view["alerts"]:  # type: ignore[attr-defined]
        found.setdefault(a["name"], []).append(a["message"])
    return found


def test_each_pools_pause_and_the_tasks_no_pool_runs_are_alerted() -> None:
    status = build_status(routed_state(two_pools()), ROUTED, now=NOW.timestamp())
    view = build_view(status, None, ROUTED, version="test")
    assert view["routed"] is True and [p["name"] for p in view["pools"]] == ["big", "small"]
    alerts = _alerts(view)
    assert alerts["spawns_paused"] == [
        "pool small: spawning paused until 2026-01-05T12:00:30Z: rate_limited: 429"
    ]
    [unrouted] = alerts["unrouted_tasks"]
    assert "2 queued task(s) of types no pool in POOLS_FILE runs (2 mystery)" in unrouted


def test_one_pool_alerts_as_before() -> None:
    state = _single_state()
    state.gate.start_failed("no heartbeat", NOW)  # type: ignore[union-attr]
    view = build_view(
        build_status(state, SETTINGS, now=NOW.timestamp()), None, SETTINGS, version="t"
    )
    assert view["routed"] is False and [p["name"] for p in view["pools"]] == ["default"]
    alerts = _alerts(view)
    assert alerts["workers_do_not_start"] == [
        "1 worker(s) in a row never started (from 3, one probe pod at a time)"
    ]
    assert "unrouted_tasks" not in alerts
