"""`helm install`, `helm upgrade` and `helm uninstall` of helm/tradefleet with the real helm CLI
against the real API server (tests/plugins/kube.py), with the values files users are shown.

The server validates every object the chart creates (its OpenAPI schemas, admission), `lookup`
reads real Secrets, and an upgrade keeps the passwords the first install generated. No node runs
here, so nothing waits for pods: the objects and their contents are the test.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART
from tests.plugins.kube import KubeCluster

CI_FILES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
# Namespaces a values file puts objects into besides the release's: they must exist first (the
# server refuses objects in a missing namespace; helm creates only the release's, and only with
# --create-namespace), as a user of that file would have them.
OTHER_NAMESPACES = {
    "external-values.yaml": ["trading-a", "trading-b"],
    "monitoring-values.yaml": ["monitoring"],
}


@pytest.fixture(autouse=True)
def uninstall_afterwards(kube: KubeCluster, kube_ns: str):
    """Release `tf` owns cluster-scoped objects (ClusterRole tf-tradefleet-operator-cluster): it
    must be gone before the next test installs `tf` in another namespace."""
    yield
    kube.helm("uninstall", "tf", "-n", kube_ns, "--wait", "--timeout", "60s", check=False)


def secret(kube: KubeCluster, ns: str, name: str, key: str) -> str:
    body = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}")
    assert body is not None, f"Secret {name} missing"
    return base64.b64decode(body["data"][key]).decode()


def release_objects(kube: KubeCluster, ns: str, release: str) -> list[dict[str, Any]]:
    manifest = kube.helm("get", "manifest", release, "-n", ns).stdout
    return [d for d in yaml.safe_load_all(manifest) if d]


@pytest.mark.parametrize("values", CI_FILES)
def test_each_values_file_installs_on_the_server_and_uninstalls_cleanly(
    kube: KubeCluster, kube_ns: str, values: str
):
    for ns in OTHER_NAMESPACES.get(values, []):
        if kube.get(f"/api/v1/namespaces/{ns}") is None:
            kube.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    out = kube.helm("install", "tf", str(CHART), "-n", kube_ns, "-f", str(CHART / "ci" / values)).stdout
    assert "STATUS: deployed" in out
    objs = release_objects(kube, kube_ns, "tf")
    assert objs
    for obj in objs:  # every object the chart rendered was accepted and stored by the server
        kind = obj["kind"]
        args = ["get", kind, obj["metadata"]["name"], "-o", "name"]
        if obj["metadata"].get("namespace") or kind not in (
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterKopfPeering",
        ):
            args += ["-n", obj["metadata"].get("namespace", kube_ns)]
        kube.kubectl(*args)
    assert (
        json.loads(kube.helm("status", "tf", "-n", kube_ns, "-o", "json").stdout)["info"]["status"]
        == "deployed"
    )

    kept = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"
            and (o["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"}  # fmt: skip
    kube.helm("uninstall", "tf", "-n", kube_ns, "--wait", "--timeout", "60s")
    left = kube.kubectl("get", "deployments,statefulsets,secrets,configmaps,services", "-n", kube_ns,
                        "-l", "app.kubernetes.io/instance=tf", "-o", "name").stdout  # fmt: skip
    # Only the generated passwords stay (resource-policy keep: a reinstall finds the data's password).
    assert sorted(left.split()) == sorted(f"secret/{name}" for name in kept)
    for obj in objs:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert kube.kubectl("get", obj["kind"], obj["metadata"]["name"], check=False).returncode == 1


def test_upgrade_keeps_the_generated_passwords_and_the_bots_urls_match(kube: KubeCluster, kube_ns: str):
    kube.helm("install", "tf", str(CHART), "-n", kube_ns)
    mongo = secret(kube, kube_ns, "tf-tradefleet-mongodb-auth", "mongodb-root-password")
    redis = secret(kube, kube_ns, "tf-tradefleet-redis-auth", "redis-password")
    assert len(mongo) == 32 and len(redis) == 32 and mongo != redis
    store_url = secret(kube, kube_ns, "tradefleet-store", "url")
    assert store_url == (
        f"mongodb://root:{mongo}@tf-tradefleet-mongodb.{kube_ns}.svc:27017/tradefleet?authSource=admin"
    )
    assert (
        secret(kube, kube_ns, "tradefleet-redis", "url")
        == f"redis://:{redis}@tf-tradefleet-redis.{kube_ns}.svc:6379/0"
    )

    out = kube.helm("upgrade", "tf", str(CHART), "-n", kube_ns, "--set", "operator.replicas=2").stdout
    assert "REVISION: 2" in out
    assert secret(kube, kube_ns, "tf-tradefleet-mongodb-auth", "mongodb-root-password") == mongo
    assert secret(kube, kube_ns, "tf-tradefleet-redis-auth", "redis-password") == redis
    assert secret(kube, kube_ns, "tradefleet-store", "url") == store_url
    dep = kube.get(f"/apis/apps/v1/namespaces/{kube_ns}/deployments/tf-tradefleet-operator")
    assert dep is not None and dep["spec"]["replicas"] == 2


def test_a_referenced_mongodb_secret_feeds_the_store_url_and_no_password_is_generated(
    kube: KubeCluster, kube_ns: str
):
    password = base64.b64encode(b"pa ss/w@rd-123").decode()
    kube.api("POST", f"/api/v1/namespaces/{kube_ns}/secrets",
             {"metadata": {"name": "my-mongo"}, "data": {"mongodb-root-password": password}})  # fmt: skip
    kube.helm("install", "tf", str(CHART), "-n", kube_ns, "--set", "mongodb.auth.existingSecret=my-mongo")
    assert kube.get(f"/api/v1/namespaces/{kube_ns}/secrets/tf-tradefleet-mongodb-auth") is None
    # Reserved characters are escaped so the URL still parses.
    assert secret(kube, kube_ns, "tradefleet-store", "url").startswith("mongodb://root:pa+ss%2Fw%40rd-123@")
    sts = kube.get(f"/apis/apps/v1/namespaces/{kube_ns}/statefulsets/tf-tradefleet-mongodb")
    assert sts is not None
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MONGO_INITDB_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-mongo"


def test_a_missing_referenced_secret_fails_the_install_with_a_clear_message(kube: KubeCluster, kube_ns: str):
    proc = kube.helm(
        "install", "tf", str(CHART), "-n", kube_ns, "--set", "redis.auth.existingSecret=nope", check=False
    )
    assert proc.returncode == 1
    assert f'redis.auth.existingSecret "nope" was not found in namespace {kube_ns}' in proc.stderr
    assert kube.helm("status", "tf", "-n", kube_ns, check=False).returncode == 1  # no release left
