"""ops/prometheus and ops/grafana use metrics that exist, and promtool accepts them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reactor.engine.metrics import Metrics

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package: prometheus)"
)


def exposed_names() -> set[str]:
    """Every series name a reactor exposes (counters with _total, histogram parts)."""
    from prometheus_client import generate_latest

    text = generate_latest(Metrics().registry).decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def referenced(text: str) -> set[str]:
    return set(re.findall(r"\bgpu_reactor_[a-z_]+", text))


def grafana_exprs() -> list[str]:
    dashboard = json.loads((OPS / "grafana" / "gpu-reactor.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_alerts_use_real_metric_names() -> None:
    unknown = referenced((OPS / "prometheus" / "alerts.yml").read_text()) - exposed_names()
    assert not unknown, (
        f"alerts.yml names metrics reactor/engine/metrics.py does not define: {unknown}"
    )


def test_grafana_uses_real_metric_names() -> None:
    exprs = grafana_exprs()
    assert len(exprs) > 20
    unknown = referenced(" ".join(exprs)) - exposed_names()
    assert not unknown, f"the dashboard names unknown metrics: {unknown}"


def test_alerts_cover_what_the_issue_asks() -> None:
    text = (OPS / "prometheus" / "alerts.yml").read_text()
    for alert in (
        "GpuReactorStaleWorkers",
        "GpuReactorStuckTasks",
        "GpuReactorQueueNoCapacity",
        "GpuReactorSpawnFailures",
        "GpuReactorBudgetNearCap",
        "GpuReactorNoLeader",
        "GpuReactorListenerDown",
        "GpuReactorUnroutedTasks",
    ):
        assert f"alert: {alert}\n" in text


def test_grafana_has_a_pool_variable_and_panels_per_pool() -> None:
    dashboard = json.loads((OPS / "grafana" / "gpu-reactor.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["pool"]["definition"] == "label_values(gpu_reactor_pool_workers, pool)"
    assert variables["pool"]["includeAll"] and variables["pool"]["multi"]
    repeated = [p for p in dashboard["panels"] if p.get("repeat") == "pool"]
    assert repeated and repeated[0]["type"] == "row"
    exprs = " ".join(grafana_exprs())
    pool_metrics = {
        "gpu_reactor_pool_workers",
        "gpu_reactor_pool_desired_workers",
        "gpu_reactor_pool_demand",
        "gpu_reactor_pool_spilled_tasks",
        "gpu_reactor_pool_hourly_burn_usd",
        "gpu_reactor_pool_spawn_blocked",
        "gpu_reactor_pool_reloads_total",
        "gpu_reactor_unrouted_tasks",
    }
    assert pool_metrics <= exposed_names()
    missing = pool_metrics - referenced(exprs)
    assert not missing, f"no panel shows {missing}"
    assert 'pool="$pool"' in exprs and 'pool=~"$pool"' in exprs


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_checks_rules_and_config() -> None:
    for args in (
        ("check", "rules", str(OPS / "prometheus" / "alerts.yml")),
        ("check", "config", str(OPS / "prometheus" / "prometheus.yml")),
    ):
        result = _promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(OPS / "prometheus" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_grafana_queries_are_valid_promql(tmp_path: Path) -> None:
    # JSON is YAML: every panel query as a recording rule, with Grafana's variables filled.
    rules = [
        {
            "record": f"grafana:panel_query_{i}",
            "expr": e.replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$pool", ".*"),
        }
        for i, e in enumerate(grafana_exprs())
    ]
    path = tmp_path / "grafana_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "grafana", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_value_reads_samples_by_their_exposed_name() -> None:
    from tests.metrics import metric_value

    metrics = Metrics()
    assert metric_value(metrics, "gpu_reactor_spawns_total", outcome="ok") == 0
    metrics.spawns.labels(outcome="ok").inc(2)
    assert metric_value(metrics, "gpu_reactor_spawns_total", outcome="ok") == 2
    metrics.reaction_latency.observe(0.25)
    assert metric_value(metrics, "gpu_reactor_reaction_latency_seconds_sum") == 0.25
    with pytest.raises(KeyError, match="gpu_reactor_spwans_total"):
        metric_value(metrics, "gpu_reactor_spwans_total")
