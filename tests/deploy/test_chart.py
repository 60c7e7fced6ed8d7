"""The Helm chart, rendered by the real helm CLI (as `helm install` would) and validated offline.

Each CI values file (helm/tradefleet/ci/*.yaml) must install, and every object it renders must be
valid for Kubernetes 1.25 and the newest bundled version (strict: unknown fields fail), custom kinds
against their CRD schemas. Values the schema must refuse are refused with a message naming the key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    MONITORING_APIS,
    ROOT,
    find,
    helm_cli,
    install,
    objects,
    pod_specs,
    validation_errors,
    values_file,
)

CI_FILES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))


def _release(values: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    answer = install(values, **kw)
    assert answer["ok"], answer.get("error")
    release: dict[str, Any] = answer["releases"][-1]
    return release


def _secret(objs: list[dict[str, Any]], name: str, key: str) -> str:
    (secret,) = find(objs, "Secret", name)
    return base64.b64decode(secret["data"][key]).decode()


def test_ci_values_files_cover_defaults_external_monitoring_and_minimal() -> None:
    assert {
        "default-values.yaml",
        "external-values.yaml",
        "monitoring-values.yaml",
        "minimal-values.yaml",
    } <= set(CI_FILES)


def test_chart_lints_without_warnings_or_errors() -> None:
    proc = helm_cli("lint", "--strict", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    # [INFO] lines (e.g. "icon is recommended") are fine; --strict fails on any [WARNING].
    assert not [line for line in proc.stdout.splitlines() if line.startswith(("[WARNING]", "[ERROR]"))]


def test_lint_can_fail() -> None:
    proc = helm_cli("lint", "--strict", str(CHART), "--set", "operator.replicas=two")
    assert proc.returncode != 0 and "operator" in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", CI_FILES)
def test_ci_values_render_objects_valid_for_kubernetes(name: str) -> None:
    release = _release(values_file(name), apis=MONITORING_APIS)
    objs = objects(release)
    assert find(objs, "Deployment"), "the operator Deployment must render"
    problems = [p for o in objs for p in validation_errors(o)]
    assert problems == []
    assert release["notes"].strip(), "NOTES.txt must tell the user what to do next"


def test_validation_catches_an_unknown_field_so_the_check_can_fail() -> None:
    objs = objects(_release())
    (deployment,) = find(objs, "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert validation_errors(broken)
    (peering,) = find(objs, "KopfPeering")
    assert validation_errors({**peering, "status": "not-an-object"})
    monitors = objects(_release(values_file("monitoring-values.yaml"), apis=MONITORING_APIS))
    (pod_monitor,) = find(monitors, "PodMonitor")
    typo = yaml.safe_load(yaml.safe_dump(pod_monitor))
    typo["spec"]["podMetricEndpoints"] = typo["spec"].pop("podMetricsEndpoints")
    assert validation_errors(typo)


@pytest.mark.parametrize(
    "name", ["kopf-peering.yaml", "tradingbots.tradefleet.io.yaml", "tradingfleets.tradefleet.io.yaml"]
)
def test_chart_crds_are_byte_identical_to_repo_crds(name: str) -> None:
    source = ROOT / "crds" / name
    copy = CHART / "crds" / name
    assert copy.read_bytes() == source.read_bytes(), "stale copy: run scripts/sync-chart-copies.sh"


def test_chart_has_no_crd_that_the_repo_lacks() -> None:
    assert {p.name for p in (CHART / "crds").iterdir()} <= {p.name for p in (ROOT / "crds").glob("*.yaml")}


def test_dashboard_copy_is_identical_to_repo_dashboard() -> None:
    source = ROOT / "dashboards" / "tradefleet.json"
    copy = CHART / "dashboards" / "tradefleet.json"
    if not source.exists():
        assert not copy.exists(), "the chart ships a dashboard the repo no longer has"
        pytest.skip("dashboards/tradefleet.json is not in the repo yet")
    assert copy.read_bytes() == source.read_bytes(), "stale copy: run scripts/sync-chart-copies.sh"


def test_operator_follows_the_contract_args_env_port_and_probes() -> None:
    objs = objects(_release())
    (deployment,) = find(objs, "Deployment", "tf-tradefleet-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "operator",
        "--namespace=tradefleet",
        "--peering=tradefleet",
        "--http-port=8080",
    ]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (config,) = find(objs, "ConfigMap", "tf-tradefleet-operator")
    assert config["data"] == {
        "TRADEFLEET_BOT_IMAGE": "tradefleet-bot:0.1.0",
        "TRADEFLEET_DEFAULT_STORE_SECRET": "tradefleet-store",
        "TRADEFLEET_DEFAULT_REDIS_SECRET": "tradefleet-redis",
    }
    (service,) = find(objs, "Service", "tf-tradefleet-operator")
    assert service["spec"]["ports"][0]["name"] == "http"


def test_operator_watches_all_namespaces_with_cluster_peering_and_cluster_rbac() -> None:
    objs = objects(_release({"operator": {"watch": {"allNamespaces": True}}}))
    (deployment,) = find(objs, "Deployment")
    assert "--all-namespaces" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert find(objs, "ClusterKopfPeering", "tradefleet") and not find(objs, "KopfPeering")
    assert not find(objs, "Role")
    assert find(objs, "ClusterRoleBinding", "tf-tradefleet-operator-bots")


def test_rbac_is_least_privilege_no_secrets_no_wildcards() -> None:
    objs = objects(_release(values_file("external-values.yaml")))
    roles = find(objs, "Role") + find(objs, "ClusterRole")
    assert {r["metadata"]["namespace"] for r in find(objs, "Role")} == {"trading-a", "trading-b"}
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            assert "secrets" not in rule["resources"], f"{role['metadata']['name']} may read Secrets"
    (cluster,) = find(objs, "ClusterRole")
    cluster_verbs = {v for rule in cluster["rules"] for v in rule["verbs"]}
    assert cluster_verbs <= {"get", "list", "watch"}


def test_every_pod_runs_non_root_read_only_without_capabilities() -> None:
    objs = objects(_release())
    specs = pod_specs(objs)
    assert len(specs) == 4  # operator, MongoDB, Redis, the helm test pod
    for where, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["enableServiceLinks"] is False, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "limits" in c["resources"], where
        # Only the operator talks to the API server.
        assert spec["automountServiceAccountToken"] is ("operator" in where), where


def test_missing_referenced_secret_fails_with_a_clear_message() -> None:
    answer = install({"redis": {"auth": {"existingSecret": "nope"}}})  # lookup finds nothing
    assert not answer["ok"]
    assert 'redis.auth.existingSecret "nope" was not found' in answer["error"]


def test_external_stores_use_the_users_secret_names_and_run_no_database() -> None:
    objs = objects(_release(values_file("external-values.yaml")))
    assert not find(objs, "StatefulSet")
    (config,) = find(objs, "ConfigMap", "tf-tradefleet-operator")
    assert config["data"]["TRADEFLEET_DEFAULT_STORE_SECRET"] == "prod-mongodb-url"
    assert config["data"]["TRADEFLEET_DEFAULT_REDIS_SECRET"] == "tradefleet-redis"
    assert not find(objs, "Secret", "tradefleet-store")  # the user's own Secret is used
    assert _secret(objs, "tradefleet-redis", "url").startswith("rediss://")
    (deployment,) = find(objs, "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/tradefleet/operator@sha256:" + "0123456789abcdef" * 4


def test_config_change_rolls_the_operator_through_its_checksum() -> None:
    def checksum(values: dict[str, Any]) -> str:
        (d,) = find(objects(_release(values)), "Deployment")
        annotation: str = d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return annotation

    assert checksum({}) != checksum({"bots": {"image": {"tag": "0.2.0"}}})
    assert checksum({}) == checksum({"operator": {"replicas": 1}})


def test_bots_may_reach_only_exchange_dns_mongodb_and_redis() -> None:
    objs = objects(_release())
    (policy,) = find(objs, "NetworkPolicy", "tf-tradefleet-bots")
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "tradefleet-bot",
        "app.kubernetes.io/part-of": "tradefleet",
    }
    egress = policy["spec"]["egress"]
    assert all(rule.get("to") for rule in egress), "every bot egress rule names its destination"
    ports = sorted(p["port"] for rule in egress for p in rule["ports"])
    assert ports == [53, 53, 443, 6379, 9443, 27017]
    (exchange,) = [r for r in egress if any("ipBlock" in t for t in r["to"])]
    block = exchange["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(block["except"])
    (mongo,) = find(objs, "NetworkPolicy", "tf-tradefleet-mongodb")
    assert "egress" not in mongo["spec"] and "Egress" in mongo["spec"]["policyTypes"]


def test_monitors_render_only_where_the_cluster_serves_monitoring_api() -> None:
    values = values_file("monitoring-values.yaml")
    with_api = objects(_release(values, apis=MONITORING_APIS))
    assert find(with_api, "ServiceMonitor") and find(with_api, "PodMonitor")
    (pod_monitor,) = find(with_api, "PodMonitor")
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http"
    without = _release(values)
    assert not find(objects(without), "ServiceMonitor") and not find(objects(without), "PodMonitor")
    assert "does not serve monitoring.coreos.com/v1" in without["notes"]


def test_dashboard_configmap_carries_the_sidecar_label_and_the_json() -> None:
    copy = CHART / "dashboards" / "tradefleet.json"
    if not copy.exists():
        pytest.skip("no dashboard in the chart yet")
    objs = objects(_release({"monitoring": {"dashboard": {"enabled": True}}}))
    (cm,) = find(objs, "ConfigMap", "tf-tradefleet-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["tradefleet.json"] == copy.read_text()


def test_helm_test_hook_checks_operator_livez() -> None:
    release = _release()
    (pod,) = [o for h in release["hooks"] for o in yaml.safe_load_all(h) if o and o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "http://tf-tradefleet-operator:8080/livez" in pod["spec"]["containers"][0]["command"][-1]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"operator": {"replicas": "two"}}, "/operator/replicas"),
        ({"operator": {"image": {"pullPolicy": "Sometimes"}}}, "/operator/image/pullPolicy"),
        ({"operator": {"watch": {"namespaces": ["Not_A_Namespace"]}}}, "/operator/watch/namespaces/0"),
        ({"mongodb": {"enabled": "yes"}}, "/mongodb/enabled"),
        ({"mongodb": {"persistence": {"size": "lots"}}}, "/mongodb/persistence/size"),
        ({"redis": {"auth": {"password": "short"}}}, "/redis/auth/password"),
        ({"monitoring": {"podMonitor": {"interval": "often"}}}, "/monitoring/podMonitor/interval"),
        ({"networkPolicy": {"exchangePorts": [70000]}}, "/networkPolicy/exchangePorts/0"),
        ({"externalMongodb": {"url": "postgres://x"}}, "/externalMongodb/url"),
        ({"operatr": {}}, "operatr"),
        ({"redis": {"persistance": {}}}, "persistance"),
        ({"bots": {"image": {"digest": "sha256:nothex"}}}, "/bots/image/digest"),
    ],
)
def test_values_schema_rejects_bad_values_naming_the_key(values: dict[str, Any], expected: str) -> None:
    answer = install(values)
    assert not answer["ok"], f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in answer["error"]
    assert expected in answer["error"], answer["error"]


def test_values_schema_refuses_running_mongodb_and_pointing_at_an_external_one() -> None:
    answer = install({"externalMongodb": {"url": "mongodb://elsewhere:27017"}})
    assert not answer["ok"]
    assert "/externalMongodb/url" in answer["error"]


def test_every_value_is_documented() -> None:
    """Every leaf key has a `# --` comment, on itself or on an enclosing key (e.g. `resources`)."""
    lines = (CHART / "values.yaml").read_text().splitlines()

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    def has_doc(i: int) -> bool:
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            if lines[j].strip().startswith("# --"):
                return True
            j -= 1
        return False

    def parent(i: int) -> int | None:
        for j in range(i - 1, -1, -1):
            text = lines[j].strip()
            if text and not text.startswith("#") and indent(lines[j]) < indent(lines[i]):
                return j
        return None

    undocumented = []
    for i, line in enumerate(lines):
        text = line.strip()
        if not text or text.startswith("#") or text.startswith("- ") or text.endswith(":"):
            continue
        k: int | None = i
        while k is not None and not has_doc(k):
            k = parent(k)
        if k is None:
            undocumented.append(text)
    assert undocumented == []


def test_values_schema_is_a_valid_draft7_schema_that_accepts_the_defaults() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
    for name in CI_FILES:
        merged = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), values_file(name))
        jsonschema.validate(merged, schema)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_release_named_like_the_chart_gets_distinct_secret_names() -> None:
    """With release `tradefleet`, names drop the duplicate prefix; the database credentials must not
    collide with the bot-facing `tradefleet-store`/`tradefleet-redis` Secrets."""
    objs = objects(_release({}, release="tradefleet"))
    names = [s["metadata"]["name"] for s in find(objs, "Secret")]
    assert sorted(names) == [
        "tradefleet-mongodb-auth",
        "tradefleet-redis",
        "tradefleet-redis-auth",
        "tradefleet-store",
    ]


def test_one_secret_name_for_store_and_redis_is_refused() -> None:
    answer = install({"bots": {"storeSecretName": "same", "redisSecretName": "same"}})
    assert not answer["ok"]
    assert "bots.storeSecretName and bots.redisSecretName must differ" in answer["error"]


def test_notes_trading_bot_is_the_paper_example_and_valid() -> None:
    """NOTES.txt inlines the paper example (users of a packaged chart have no repo checkout)."""
    notes = _release()["notes"]
    block = notes.split("<<'EOF'\n", 1)[1].split("\n     EOF", 1)[0]
    inline = yaml.safe_load("\n".join(line.removeprefix("     ") for line in block.splitlines()))
    example = yaml.safe_load((ROOT / "crds" / "examples" / "paper-btc-usdt.yaml").read_text())
    assert inline == example
    assert "deploy/bot-btc-usdt" in notes
