"""Render and lint the Helm chart with the real Helm library, without a cluster.

Why: `helm-sdkpy` bundles Helm v4 (the same template engine, values-schema check, `lookup` and
`.Capabilities` as `helm install`) but needs Python >= 3.12, while the project runs on 3.11. So the
deploy tests run this script in a separate venv (`make helm-venv` -> `.venv-helm/`) through a
subprocess: one JSON request on stdin, one JSON answer on stdout.

"Installing" goes to an in-memory Kubernetes API (kmock's emulator) with Helm's memory storage
driver: Helm renders, validates the values against values.schema.json, maps every kind through
API discovery and creates the objects; we hand back the rendered manifest, hooks and NOTES.
What this refuses to be: a cluster. Nothing runs, no webhook or OpenAPI validation happens here;
the tests validate the rendered objects themselves.

Request: {"action": "lint"|"install", "chart": path, "release": str, "namespace": str,
          "values": {...}, "apis": ["group/version/plural:Kind", ...], "existing": [objects],
          "installs": 1|2}
Answer:  {"ok": true, "releases": [{"manifest", "hooks", "notes"}...], "objects": [...]}
         or {"ok": false, "error": "<Helm's message>"}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

# The Go runtime inside helm-sdkpy copies the environment of the process as it started, so
# HELM_DRIVER must be there from exec time: setting os.environ later is not seen. Re-exec once.
if os.environ.get("HELM_DRIVER") != "memory":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "HELM_DRIVER": "memory"})

import helm_sdkpy
import kmock
import yaml


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock 0.8 answers core discovery with groupVersion "/v1"; a real server says "v1", and
    Helm's REST mapper finds no ConfigMap without it."""

    async def _serve_version(self, request: Any) -> Any:
        doc = await super()._serve_version(request)
        if isinstance(doc, dict) and str(doc.get("groupVersion", "")).startswith("/"):
            doc["groupVersion"] = doc["groupVersion"][1:]
        return doc


def _declare_crds(emulator: Emulator, chart: Path) -> None:
    """Helm creates the chart's CRDs, but kmock does not turn a posted CRD into an API: declare
    every CRD under crds/ ourselves, as a real API server would serve it."""
    for path in sorted((chart / "crds").glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                key = f"{spec['group']}/{version['name']}/{spec['names']['plural']}"
                info = emulator.resources[key]
                info.kind = spec["names"]["kind"]
                info.singular = spec["names"].get("singular", spec["names"]["kind"].lower())
                info.namespaced = spec["scope"] == "Namespaced"
                info.verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
                if "status" in version.get("subresources", {}):
                    info.subresources = {"status"}


def _declare_apis(emulator: Emulator, apis: list[str]) -> None:
    for api in apis:
        key, _, kind = api.partition(":")
        info = emulator.resources[key]
        info.kind = kind
        info.singular = kind.lower()
        info.namespaced = True
        info.verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}


def _kubeconfig(url: str, namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock"}}],
            "contexts": [
                {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": namespace}}
            ],
            "current-context": "kmock",
        }
    )


def _release_view(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "manifest": result.get("manifest", ""),
        "hooks": [h.get("manifest", "") for h in result.get("hooks") or []],
        "notes": (result.get("info") or {}).get("notes", ""),
    }


async def _install(request: dict[str, Any]) -> dict[str, Any]:
    chart = Path(request["chart"]).resolve()
    namespace = request.get("namespace", "tradefleet")
    release = request.get("release", "tf")
    async with Emulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources.load_bundled()
        _declare_crds(emulator, chart)
        _declare_apis(emulator, request.get("apis", []))
        for obj in request.get("existing", []):
            ns = obj["metadata"].get("namespace", namespace)
            plural = obj["kind"].lower() + "s"
            prefix = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
            response = await emulator.post(f"{prefix}/namespaces/{ns}/{plural}", json=obj)
            if response.status >= 300:
                return {"ok": False, "error": f"could not pre-create {obj['kind']}: {response.status}"}
        config = helm_sdkpy.Configuration(
            namespace=namespace, kubeconfig=_kubeconfig(str(server.url), namespace)
        )
        releases = []
        try:
            result = await helm_sdkpy.Install(config).run(
                release, str(chart), values=request.get("values") or None, wait=False, timeout=60
            )
            releases.append(_release_view(result))
            for _ in range(int(request.get("installs", 1)) - 1):
                result = await helm_sdkpy.Upgrade(config).run(
                    release, str(chart), values=request.get("values") or None, wait=False, timeout=60
                )
                releases.append(_release_view(result))
        except helm_sdkpy.HelmError as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True, "releases": releases}


async def _lint(request: dict[str, Any]) -> dict[str, Any]:
    config = helm_sdkpy.Configuration(
        namespace="default", kubeconfig=_kubeconfig("http://127.0.0.1:1", "default")
    )
    try:
        result = await helm_sdkpy.Lint(config).run(str(Path(request["chart"]).resolve()))
    except helm_sdkpy.HelmError as e:
        return {"ok": False, "error": str(e)}
    # Severity: 1 info, 2 warning, 3 error. helm-sdkpy loses the message text (`Err: {}`), so the
    # answer names the file and severity; `errors` holds what Helm reported as fatal.
    messages = [{"severity": m.get("Severity"), "path": m.get("Path")} for m in result.get("Messages") or []]
    return {"ok": True, "messages": messages, "errors": result.get("Errors")}


def main() -> int:
    request = json.load(sys.stdin)
    action = request.get("action")
    if action == "install":
        answer = asyncio.run(_install(request))
    elif action == "lint":
        answer = asyncio.run(_lint(request))
    else:
        answer = {"ok": False, "error": f"unknown action {action!r}"}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
