"""Helpers for the deploy tests: render the chart with the real helm CLI and validate objects.

Rendering runs `helm` (v4, built from source by scripts/k8s-build.sh) without a cluster:
`helm install --dry-run=client -o json` gives the manifest, hooks and NOTES exactly as an install
would, values-schema and `fail` errors included (`lookup` answers nothing, as on a first install);
`helm template --api-versions` renders what depends on APIs the cluster serves (ServiceMonitor).
What needs a cluster (`lookup` of existing Secrets, upgrades) runs against the real API server in
test_chart_on_server.py. Validation is offline: kubernetes-validate (official OpenAPI schemas,
strict: unknown fields fail) for built-in kinds, the CRD's own openAPIV3Schema for kopf's peering
kinds, and a strict subset schema we keep for the Prometheus Operator kinds.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.plugins.kube import HELM

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tradefleet"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# The oldest version the chart supports (Chart.yaml kubeVersion) and the newest schemas bundled.
K8S_VERSIONS = ("1.25", kubernetes_validate.latest_version())
MONITORING_APIS = [
    "monitoring.coreos.com/v1/servicemonitors:ServiceMonitor",
    "monitoring.coreos.com/v1/podmonitors:PodMonitor",
]


def helm_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real helm CLI with its own throwaway config/cache homes and no cluster."""
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run scripts/k8s-build.sh (CI and `make cluster-up` do)")
    home = Path(tempfile.gettempdir()) / f"tradefleet-helm-{os.getuid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBE"))}
    env.update(
        HELM_CONFIG_HOME=str(home / "config"), HELM_CACHE_HOME=str(home / "cache"),
        HELM_DATA_HOME=str(home / "data"), KUBECONFIG=str(home / "no-cluster"),
    )  # fmt: skip
    return subprocess.run(
        [str(HELM), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _split(rendered: str) -> dict[str, Any]:
    """`helm template` output to the manifest/hooks shape of an install's release."""
    manifest, hooks = [], []
    for doc in yaml.safe_load_all(rendered):
        if not doc:
            continue
        is_hook = "helm.sh/hook" in ((doc.get("metadata") or {}).get("annotations") or {})
        (hooks if is_hook else manifest).append(yaml.safe_dump(doc))
    return {"manifest": "---\n".join(manifest), "hooks": hooks}


@cache
def _render(request_json: str) -> str:
    request = json.loads(request_json)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
        json.dump(request["values"], values)
        values.flush()
        common = [request["release"], str(CHART), "-n", request["namespace"], "-f", values.name]
        proc = helm_cli("install", *common, "--dry-run=client", "-o", "json")
        if proc.returncode != 0:
            return json.dumps({"ok": False, "error": proc.stderr})
        release = json.loads(proc.stdout)
        view = {
            "manifest": release.get("manifest", ""),
            "hooks": [h.get("manifest", "") for h in release.get("hooks") or []],
            "notes": (release.get("info") or {}).get("notes", ""),
        }
        if request["apis"]:
            apis = sorted({a.rsplit("/", 1)[0] for a in request["apis"]})
            apis += [f"{a.split('/')[0]}/{a.split('/')[1]}/{a.split(':')[1]}" for a in request["apis"]]
            proc = helm_cli("template", *common, *(f"--api-versions={a}" for a in apis))
            if proc.returncode != 0:
                return json.dumps({"ok": False, "error": proc.stderr})
            view.update(_split(proc.stdout))
    return json.dumps({"ok": True, "releases": [view]})


def install(
    values: dict[str, Any] | None = None,
    *,
    apis: list[str] | None = None,
    namespace: str = "tradefleet",
    release: str = "tf",
) -> dict[str, Any]:
    """What `helm install` would create (a first install: no existing objects); cached per request.
    `apis` (`group/version/plural:Kind`) are declared as served, for `.Capabilities` checks."""
    request = {"release": release, "namespace": namespace, "values": values or {}, "apis": apis or []}
    answer: dict[str, Any] = json.loads(_render(json.dumps(request, sort_keys=True)))
    return answer


def values_file(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CHART / "ci" / name).read_text())
    return dict(data or {})


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
