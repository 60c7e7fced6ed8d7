"""Helpers for the deploy tests: render the chart with the real Helm library and validate objects.

Rendering runs `helm_tool.py` inside `.venv-helm/` (Python >= 3.12, see scripts/helm-venv.sh) in a
subprocess. Validation is offline: kubernetes-validate (official OpenAPI schemas, strict: unknown
fields fail) for built-in kinds, the CRD's own openAPIV3Schema for kopf's peering kinds, and a
strict subset schema we keep for the Prometheus Operator kinds.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tradefleet"
TOOL = Path(__file__).resolve().parent / "helm_tool.py"
HELM_VENV = ROOT / ".venv-helm"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# The oldest version the chart supports (Chart.yaml kubeVersion) and the newest schemas bundled.
K8S_VERSIONS = ("1.25", kubernetes_validate.latest_version())
MONITORING_APIS = [
    "monitoring.coreos.com/v1/servicemonitors:ServiceMonitor",
    "monitoring.coreos.com/v1/podmonitors:PodMonitor",
]


@cache
def helm_python() -> Path:
    """The venv's interpreter, creating the venv on first use (a no-op when it is current)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "helm-venv.sh")],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    python = HELM_VENV / "bin" / "python"
    if proc.returncode != 0 or not python.exists():
        pytest.fail(f"cannot prepare .venv-helm (make helm-venv):\n{proc.stderr[-3000:]}")
    return python


def helm(request: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [str(helm_python()), str(TOOL)],
        check=False,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode != 0:
        raise AssertionError(f"helm_tool.py crashed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def values_file(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CHART / "ci" / name).read_text())
    return dict(data or {})


@cache
def _render_cached(request_json: str) -> str:
    return json.dumps(helm(json.loads(request_json)))


def install(
    values: dict[str, Any] | None = None,
    *,
    apis: list[str] | None = None,
    existing: list[dict[str, Any]] | None = None,
    installs: int = 1,
    namespace: str = "tradefleet",
    release: str = "tf",
) -> dict[str, Any]:
    """Helm install (and `installs - 1` upgrades) into an in-memory API; cached per request."""
    request = {
        "action": "install",
        "chart": str(CHART),
        "release": release,
        "namespace": namespace,
        "values": values or {},
        "apis": apis or [],
        "existing": existing or [],
        "installs": installs,
    }
    answer: dict[str, Any] = json.loads(_render_cached(json.dumps(request, sort_keys=True)))
    return answer


def objects(release: dict[str, Any], *, hooks: bool = True) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    if hooks:
        for hook in release["hooks"]:
            docs += [d for d in yaml.safe_load_all(hook) if d]
    return docs


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


@cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                out[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    monitoring = json.loads((SCHEMAS / "monitoring.coreos.com_v1.json").read_text())
    for kind in ("ServiceMonitor", "PodMonitor"):
        out[("monitoring.coreos.com/v1", kind)] = monitoring[kind]
    return out


def validation_errors(obj: dict[str, Any]) -> list[str]:
    """Every problem with one rendered object; empty when it is valid."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    custom = _crd_schemas().get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if custom is not None:
        validator = jsonschema.Draft7Validator(custom)
        return [f"{where}: {'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where} (k8s {version}): {'/'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{where}: no schema for {obj.get('apiVersion')} {obj.get('kind')} in k8s {version}"
            )
    return problems


def pod_specs(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec the chart runs, by `Kind/name`."""
    out = {}
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            out[f"{o['kind']}/{o['metadata']['name']}"] = o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            out[f"Pod/{o['metadata']['name']}"] = o["spec"]
    return out
