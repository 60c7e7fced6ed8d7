"""Pure rendering, table-driven: what a TradingBot turns into, validated against the official
Kubernetes schemas (kubernetes-validate, strict) and loaded back by the bot's own config."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.operator.crd_tools import apply_defaults, example
from tradefleet.config import BotConfig
from tradefleet.errors import ConfigError
from tradingbot_operator.render import CHECKSUM_ANNOTATION, HASH_ANNOTATION, render
from tradingbot_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(
    bot_image="registry.test/bot:1", default_store_secret="st", default_redis_secret="rd"
)


def tb(name: str = "btc-usdt", **spec: Any) -> dict[str, Any]:
    body = apply_defaults(
        {"apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingBot",
         "metadata": {"name": name, "namespace": "bots", "uid": "uid-1", "generation": 1},
         "spec": {"symbol": "BTC/USDT", **spec}}
    )  # fmt: skip
    return body


def container(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    dep = render(body, SETTINGS, service_monitor=False, **kw).deployment
    result: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return result


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


BODIES = {
    "minimal paper": tb(),
    "paper example": {
        **example("paper-btc-usdt.yaml"),
        "metadata": {"name": "btc-usdt", "namespace": "bots", "uid": "u"},
    },
    "testnet example": {
        **example("testnet-eth-usdt.yaml"),
        "metadata": {"name": "eth", "namespace": "bots", "uid": "u"},
    },
    "paused, custom image and resources": tb(
        paused=True,
        image="registry.test/bot:2",
        imagePullPolicy="Always",
        resources={"requests": {"cpu": "250m"}, "limits": {"cpu": 1, "memory": "512Mi"}},
    ),
    "digit-first name": tb(name="1inch-usdt", symbol="1INCH/USDT"),
    "hot close off": tb(hotCloseMs=0),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_every_rendered_object_validates_against_kubernetes_schemas(case: str):
    rendered = render(BODIES[case], SETTINGS, service_monitor=True)
    for obj in rendered.objects()[:3]:  # ServiceMonitor is a custom kind: not in the official schemas
        kubernetes_validate.validate(obj, "1.37.0", strict=True)
    assert rendered.service_monitor is not None
    assert rendered.service_monitor["spec"]["selector"]["matchLabels"] == rendered.service["spec"]["selector"]


@pytest.mark.parametrize("case", list(BODIES))
def test_bot_yaml_is_accepted_by_the_bots_own_config(case: str):
    text = render(BODIES[case], SETTINGS, service_monitor=False).config_map["data"]["bot.yaml"]
    config = BotConfig.from_mapping(yaml.safe_load(text))
    assert config.name == BODIES[case]["metadata"]["name"]
    assert config.hot_close_ms == BODIES[case]["spec"].get("hotCloseMs", BotConfig().hot_close_ms)
    assert config.store_url == "sqlite:////data/tradefleet.sqlite"  # overridden by TRADEFLEET_STORE_URL


@pytest.mark.parametrize("case", list(BODIES))
def test_children_are_owned_by_the_tradingbot_and_hardened(case: str):
    body = BODIES[case]
    rendered = render(body, SETTINGS, service_monitor=True)
    for obj in rendered.objects():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("TradingBot", body["metadata"]["name"],
                                                                             body["metadata"]["uid"], True)  # fmt: skip
        assert obj["metadata"]["namespace"] == "bots"
        assert obj["metadata"]["annotations"][HASH_ANNOTATION]
    pod = rendered.deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert (
        c["livenessProbe"]["httpGet"]["path"] == "/livez"
        and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    )
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["args"] == ["bot"]
    assert {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")} == {"/tmp", "/data"}
    assert env(c)["TRADEFLEET_CONFIG"] == "/etc/tradefleet/bot.yaml"
    assert env(c)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


@pytest.mark.parametrize(
    ("spec", "strategy", "replicas"),
    [
        ({}, {"type": "Recreate"}, 1),  # in-process lease: never two pods at once
        ({"paused": True}, {"type": "Recreate"}, 0),
        ({"replicas": 2, "redis": {"secretKeyRef": {"name": "r", "key": "url"}}},
         {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, 2),
        ({"replicas": 2, "paused": True, "redis": {"secretKeyRef": {"name": "r", "key": "url"}}},
         {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, 0),
    ],
)  # fmt: skip
def test_rollout_strategy_follows_the_lease(spec: dict[str, Any], strategy: dict[str, Any], replicas: int):
    dep = render(tb(**spec), SETTINGS, service_monitor=False).deployment
    assert dep["spec"]["strategy"] == strategy
    assert dep["spec"]["replicas"] == replicas


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, {
            "TRADEFLEET_STORE_URL": {"secretKeyRef": {"name": "st", "key": "url", "optional": True}},
            "REDIS_URL": {"secretKeyRef": {"name": "rd", "key": "url", "optional": True}},
        }),
        ({"store": {"secretKeyRef": {"name": "mongo", "key": "uri"}}, "redis": {"secretKeyRef": {"name": "r", "key": "url"}}}, {
            "TRADEFLEET_STORE_URL": {"secretKeyRef": {"name": "mongo", "key": "uri", "optional": False}},
            "REDIS_URL": {"secretKeyRef": {"name": "r", "key": "url", "optional": False}},
        }),
    ],
)  # fmt: skip
def test_store_and_redis_come_from_secret_references(spec: dict[str, Any], expected: dict[str, Any]):
    e = env(container(tb(**spec)))
    for name, value in expected.items():
        assert e[name] == value


def test_credentials_are_mounted_read_only_and_only_file_paths_reach_the_environment():
    body = tb(mode="live", credentialsSecretRef={"name": "binance-live"})
    rendered = render(body, SETTINGS, service_monitor=False)
    c = rendered.deployment["spec"]["template"]["spec"]["containers"][0]
    volumes = {v["name"]: v for v in rendered.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["credentials"]["secret"] == {"secretName": "binance-live", "defaultMode": 0o440}
    assert {"name": "credentials", "mountPath": "/var/run/secrets/tradefleet", "readOnly": True} in c[
        "volumeMounts"
    ]
    assert env(c)["TRADEFLEET_API_KEY_FILE"] == "/var/run/secrets/tradefleet/api-key"
    assert env(c)["TRADEFLEET_API_SECRET_FILE"] == "/var/run/secrets/tradefleet/api-secret"
    assert "binance-live" not in yaml.safe_dump(rendered.config_map)
    paper = render(tb(), SETTINGS, service_monitor=False).deployment["spec"]["template"]["spec"]
    assert "credentials" not in {v["name"] for v in paper["volumes"]}
    assert "TRADEFLEET_API_KEY_FILE" not in env(paper["containers"][0])


@pytest.mark.parametrize(
    ("change", "rolls_pods"),
    [
        ({"quoteAmount": "250"}, True),
        ({"strategy": {"shortWindow": 10, "longWindow": 30, "interval": "1h"}}, True),
        ({"logLevel": "DEBUG"}, True),
        ({"hotCloseMs": 0}, True),
        ({"replicas": 1, "image": "registry.test/bot:1"}, False),
        ({"paused": True}, False),
    ],
)
def test_config_checksum_changes_exactly_when_bot_yaml_changes(change: dict[str, Any], rolls_pods: bool):
    def checksum(body: dict[str, Any]) -> str:
        dep = render(body, SETTINGS, service_monitor=False).deployment
        value: str = dep["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]
        return value

    base = tb()
    changed = copy.deepcopy(base)
    changed["spec"].update(change)
    assert (checksum(changed) != checksum(base)) is rolls_pods


def test_rendering_is_deterministic_and_hash_tracks_the_desired_state():
    first, second = render(tb(), SETTINGS, service_monitor=True), render(tb(), SETTINGS, service_monitor=True)
    assert first.objects() == second.objects()
    moved = render(tb(quoteAmount="5"), SETTINGS, service_monitor=True)
    hashes = lambda r: [o["metadata"]["annotations"][HASH_ANNOTATION] for o in r.objects()]  # noqa: E731
    assert hashes(first)[0] != hashes(moved)[0]  # ConfigMap changed
    assert hashes(first)[2] == hashes(moved)[2]  # Service did not


def test_image_defaults_to_the_operators_bot_image():
    assert container(tb())["image"] == "registry.test/bot:1"
    assert container(tb(image="registry.test/bot:9"))["image"] == "registry.test/bot:9"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"strategy": {"shortWindow": 200, "longWindow": 50}},
            "spec.strategy.shortWindow (200) must be smaller",
        ),
        ({"mode": "live"}, "spec.mode live places real orders: set spec.credentialsSecretRef.name"),
        ({"replicas": 2}, "spec.replicas > 1 needs spec.redis.secretKeyRef"),
        ({"quoteAmount": "-5"}, "spec.quoteAmount '-5' must be a positive decimal"),
        ({"symbol": "btcusdt"}, "spec.symbol 'btcusdt' must look like BASE/QUOTE"),
        ({"strategy": {"interval": "2m"}}, "spec.strategy.interval '2m' must be one of"),
        ({"resources": {"limits": {"gpu": 1}}}, "spec.resources.limits.gpu: only cpu and memory"),
        ({"leverage": 10}, "unknown field(s) spec.leverage"),
        ({"priceSampleMs": -1}, "spec.priceSampleMs -1 must be a whole number"),
        ({"hotCloseMs": 1001}, "spec.hotCloseMs 1001 must be a whole number of milliseconds from 0 (off)"),
        ({"hotCloseMs": "20"}, "spec.hotCloseMs '20' must be a whole number"),
    ],
)
def test_invalid_specs_are_refused_with_what_to_fix(spec: dict[str, Any], message: str):
    body = tb(**spec)
    with pytest.raises(ConfigError) as err:
        render(body, SETTINGS, service_monitor=False)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        render(tb(mode="live", replicas=3, quoteAmount="0"), SETTINGS, service_monitor=False)
    text = str(err.value)
    assert "credentialsSecretRef" in text and "spec.redis" in text and "quoteAmount" in text


def test_names_too_long_for_the_bots_service_are_refused():
    with pytest.raises(ConfigError, match="at most 59 characters"):
        render(tb(name="a" * 60), SETTINGS, service_monitor=False)


def test_several_replicas_require_the_shared_store_secret_instead_of_per_pod_sqlite():
    # #11: with the default store Secret missing, each replica fell back to its own SQLite file in its
    # own emptyDir; a new leader then did not see the old leader's orders.
    redis = {"redis": {"secretKeyRef": {"name": "r", "key": "url"}}}
    one = env(container(tb(**redis)))["TRADEFLEET_STORE_URL"]
    two = env(container(tb(replicas=2, **redis)))["TRADEFLEET_STORE_URL"]
    assert one["secretKeyRef"]["optional"] is True
    assert two == {"secretKeyRef": {"name": "st", "key": "url", "optional": False}}
