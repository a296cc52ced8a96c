"""The Dockerfile, Kubernetes manifests and Supabase notes say what they must."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reactor.domain.events import SweepRequest, parse_event

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "ops" / "k8s"


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 2
    assert re.search(r"^USER 10001", text, re.MULTILINE), "must not run as root"
    assert "REACTOR_HTTP_HOST=0.0.0.0" in text and "import uvloop" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert text.rstrip().endswith('CMD ["gpu-reactor", "run"]')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored and ".venv" in ignored


def test_k8s_deployment() -> None:
    text = (K8S / "deployment.yaml").read_text()
    assert "replicas: 2" in text
    assert re.search(r"livenessProbe:\s*\n\s*httpGet: \{path: /healthz", text)
    assert re.search(r"readinessProbe:\s*\n\s*httpGet: \{path: /readyz", text)
    for key in ("DATABASE_URL", "RUNPOD_API_KEY", "WORKER_DATABASE_URL"):
        assert f"secretKeyRef: {{name: gpu-reactor, key: {key}}}" in text
    assert 'prometheus.io/scrape: "true"' in text and "runAsNonRoot: true" in text
    assert "kind: ServiceMonitor" in (K8S / "servicemonitor.yaml").read_text()
    assert "kind: Service\n" in (K8S / "service.yaml").read_text()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_k8s_kustomization_builds() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "kind: Deployment" in result.stdout and "kind: Secret" not in result.stdout


def test_supabase_notes_and_cron_job() -> None:
    readme = (ROOT / "ops" / "supabase" / "README.md").read_text()
    assert ":6543" in readme and "session mode" in readme and "transaction mode" in readme
    cron = (ROOT / "ops" / "supabase" / "pg_cron.sql").read_text()
    payload = re.search(r"\$\$NOTIFY gpu_reactor, '(.+?)'\$\$", cron)
    assert payload is not None and "'* * * * *'" in cron
    assert isinstance(parse_event(payload.group(1)), SweepRequest)


def test_operations_section_names_every_command_and_endpoint() -> None:
    text = (ROOT / "README.md").read_text()
    for needle in (
        "/metrics",
        "/status",
        "/healthz",
        "/readyz",
        "gpu-reactor check",
        "gpu-reactor status",
        "workers terminate",
        "tasks create",
        "dashboard",
        "NOTIFY gpu_reactor",
        "alerts.yml",
    ):
        assert needle in text, needle
