"""The deployment files validate, and the validator catches what it is there to catch.

Validators installed from PyPI/npm (there is no Docker engine or cluster here): see
deploy/validate/validate.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VALIDATE = REPO / "deploy" / "validate" / "validate.py"


def validate(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(VALIDATE), *map(str, files)], capture_output=True, text=True,
                          timeout=300)


def test_every_deployment_file_validates():
    result = validate()
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("deploy/k8s/worker.yaml", "deploy/k8s/supervisors.yaml", "deploy/k8s/redis.yaml",
                 "deploy/k8s/keda-scaledobject.yaml",
                 "deploy/kuberay/raycluster.yaml", "deploy/kuberay/rayjob-train.yaml",
                 "deploy/kuberay/rayjob-label.yaml", "deploy/docker/Dockerfile.cpu", "deploy/docker/Dockerfile.gpu",
                 "compose.yaml", "deploy/monitoring/grafana-dashboard.json", "deploy/monitoring/prometheus.yaml"):
        assert f"ok   {name}" in result.stdout
    assert "ok   " in result.stdout and "ScaledObject/dialoguellm-worker" in result.stdout


def _broken(tmp_path: Path, source: str, folder: str, old: str, new: str) -> Path:
    text = (REPO / source).read_text()
    assert old in text
    target = tmp_path / folder / Path(source).name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(old, new, 1))
    return target


@pytest.mark.parametrize("source, folder, old, new, message", [
    ("deploy/k8s/worker.yaml", "k8s", "replicas: 1", "replicas: one", "'one' is not of type 'integer'"),
    ("deploy/k8s/redis.yaml", "k8s", "serviceName: redis", "serviceNme: redis", "serviceNme"),
    ("deploy/kuberay/raycluster.yaml", "kuberay", "imagePullPolicy: IfNotPresent", "imagePulPolicy: IfNotPresent",
     "imagePulPolicy"),
    ("deploy/kuberay/rayjob-train.yaml", "kuberay", "submissionMode: K8sJobMode", "submissionMode: Batch",
     "'Batch' is not one of"),
    ("deploy/k8s/keda-scaledobject.yaml", "k8s", "maxReplicaCount: 8", "maxReplicaCount: eight",
     "ScaledObject/dialoguellm-worker"),
    ("deploy/docker/Dockerfile.cpu", "docker", "build-essential=12.9", "build-essential", "DL3008"),
    ("compose.yaml", ".", "stop_grace_period: 2m", "stop_grace_perod: 2m", "stop_grace_perod"),
])
def test_a_broken_file_fails_and_says_where(tmp_path, source, folder, old, new, message):
    result = validate(_broken(tmp_path, source, folder, old, new))
    assert result.returncode == 1
    assert message in result.stdout, result.stdout
