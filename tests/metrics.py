"""Read a reactor metric the way Prometheus would, not through prometheus-client internals."""

from __future__ import annotations

from reactor.engine.metrics import Metrics


def metric_value(metrics: Metrics, sample: str, **labels: str) -> float:
    """The value of one exposed sample, by its exposition name (``gpu_reactor_spawns_total``,
    ``gpu_reactor_reaction_latency_seconds_sum``) and labels.

    A labelled sample never incremented reads 0, as Prometheus's ``or vector(0)`` would; a
    name no metric of the registry exposes raises KeyError, so a typo cannot pass as 0."""
    families = {f.name: f for f in metrics.registry.collect()}
    known = any(
        sample == name or sample.startswith(name + "_")
        for name in families
        if sample.startswith(name)
    )
    if not known:
        raise KeyError(f"no metric exposes a sample named {sample!r}")
    value = metrics.registry.get_sample_value(sample, labels)
    return 0.0 if value is None else value
