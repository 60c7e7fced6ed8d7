"""Pure rendering: a TradingBot in, the Kubernetes objects that run its bot out.

No I/O and no clock: the same TradingBot always renders the same objects, so the renderer is
tested table-driven and every object it makes is validated against the official Kubernetes
schemas. What it encodes (the bot/operator contract):

- one Deployment `bot-<name>`: non-root uid 10001, read-only root filesystem, ALL capabilities
  dropped, seccomp RuntimeDefault, writable /tmp and /data only, probes on /livez and /readyz,
  `enableServiceLinks: false` (the bot refuses unknown TRADEFLEET_* variables);
- rollout: with an explicit Redis reference, surge one pod and never drop one (the lease keeps a
  single trader); without, `Recreate` and the old pod is gone before the new one starts, since
  two in-process leases would both trade;
- config edits roll pods through a `checksum/config` pod annotation;
- secrets are referenced (env secretKeyRef, a read-only volume), never copied into a manifest.

It refuses to render an invalid spec: `parse_spec` raises `ConfigError` first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import yaml

from tradingbot_operator.settings import OperatorSettings
from tradingbot_operator.spec import BotSpec, SecretKeyRef, parse_spec

CONFIG_DIR = "/etc/tradefleet"
CONFIG_KEY = "bot.yaml"
HALT_KEY = "halt.json"
# SIGTERM: the bot waits up to stop_order_grace_s for an order in flight, then flushes the store and
# releases its lease; the pod's grace period must cover all of it, or the kubelet kills it mid-order.
SHUTDOWN_MARGIN_S = 20
CREDENTIALS_DIR = "/var/run/secrets/tradefleet"
HTTP_PORT = 8080
BOT_UID = 10001
HASH_ANNOTATION = "tradefleet.io/desired-hash"
"""Hash of the desired child as rendered: `kube.apply` patches only when it changes."""
CHECKSUM_ANNOTATION = "checksum/config"
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMITS = {"memory": "256Mi"}
# A daily 50/200 bot fetches 210 klines before it is live; give startup a few minutes before the
# liveness probe may restart it.
STARTUP_FAILURES = 60


@dataclass(frozen=True, slots=True)
class Rendered:
    spec: BotSpec
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    service_monitor: dict[str, Any] | None
    disruption_budget: dict[str, Any] | None = None

    def objects(self) -> list[dict[str, Any]]:
        """In apply order: the config before the pods that mount it."""
        objs = [self.config_map, self.deployment, self.service]
        if self.disruption_budget is not None:
            objs.append(self.disruption_budget)
        return [*objs, self.service_monitor] if self.service_monitor is not None else objs


def render(body: Mapping[str, Any], settings: OperatorSettings, *, service_monitor: bool) -> Rendered:
    """Desired children of one TradingBot `body` (raises `ConfigError` for an invalid spec)."""
    meta = body.get("metadata", {})
    spec = parse_spec(meta.get("name", ""), meta.get("namespace") or "default", body.get("spec") or {})
    config_map = render_config_map(spec)
    checksum = hashlib.sha256(config_map["data"][CONFIG_KEY].encode()).hexdigest()
    deployment = render_deployment(spec, settings, config_checksum=checksum)
    service = render_service(spec)
    monitor = render_service_monitor(spec) if service_monitor else None
    pdb = render_disruption_budget(spec) if spec.redis is not None else None
    objs = [o for o in (config_map, deployment, service, pdb, monitor) if o is not None]
    kopf.adopt(objs, owner=body)  # type: ignore[arg-type]  # owner refs, namespace, owner's labels
    for obj in objs:
        obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = desired_hash(obj)
    return Rendered(spec, config_map, deployment, service, monitor, pdb)


def desired_hash(obj: Mapping[str, Any]) -> str:
    """A stable hash of a child as rendered, ignoring the hash annotation itself."""
    clean = json.loads(json.dumps(obj, sort_keys=True, default=str))
    clean.get("metadata", {}).get("annotations", {}).pop(HASH_ANNOTATION, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:32]


def selector_labels(spec: BotSpec) -> dict[str, str]:
    """Immutable once a Deployment exists: never add to these."""
    return {"app.kubernetes.io/name": "tradefleet-bot", "app.kubernetes.io/instance": spec.name}


def common_labels(spec: BotSpec) -> dict[str, str]:
    return {
        **selector_labels(spec),
        "app.kubernetes.io/component": "bot",
        "app.kubernetes.io/part-of": "tradefleet",
        "app.kubernetes.io/managed-by": "tradefleet-operator",
        "tradefleet.io/symbol": spec.symbol.replace("/", "-"),
        "tradefleet.io/mode": spec.mode,
    }


def _meta(spec: BotSpec, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": common_labels(spec)}


def render_config_map(spec: BotSpec) -> dict[str, Any]:
    """bot.yaml, and the kill-switch file for spec.risk.halted. Only bot.yaml feeds the pods'
    checksum annotation: halting or resuming a bot must not roll its pods (the running bot reads the
    file again every poll; the kubelet refreshes the mounted file within its sync period)."""
    text = yaml.safe_dump(spec.bot_config(), sort_keys=True, default_flow_style=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, spec.child_name + "-config"),
        "data": {CONFIG_KEY: text, HALT_KEY: json.dumps(spec.halt_file(), sort_keys=True)},
    }


def _secret_env(name: str, ref: SecretKeyRef, *, optional: bool) -> dict[str, Any]:
    return {
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key, "optional": optional}},
    }


def _env(spec: BotSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "TRADEFLEET_CONFIG", "value": f"{CONFIG_DIR}/{CONFIG_KEY}"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    # A Secret the TradingBot names must exist (the pod waits for it); the operator-wide default
    # is optional, so a cluster without MongoDB/Redis still runs bots on their embedded defaults.
    store = spec.store or SecretKeyRef(settings.default_store_secret)
    redis = spec.redis or SecretKeyRef(settings.default_redis_secret)
    env.append(_secret_env("TRADEFLEET_STORE_URL", store, optional=spec.store is None))
    env.append(_secret_env("REDIS_URL", redis, optional=spec.redis is None))
    if spec.credentials_secret is not None:
        env.append({"name": "TRADEFLEET_API_KEY_FILE", "value": f"{CREDENTIALS_DIR}/api-key"})
        env.append({"name": "TRADEFLEET_API_SECRET_FILE", "value": f"{CREDENTIALS_DIR}/api-secret"})
    return env


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def render_deployment(spec: BotSpec, settings: OperatorSettings, *, config_checksum: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "bot",
        "image": spec.image or settings.bot_image,
        "args": ["bot"],
        "env": _env(spec, settings),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "startupProbe": _probe("/livez", period=5, failures=STARTUP_FAILURES),
        "livenessProbe": _probe("/livez", period=10, failures=3),
        "readinessProbe": _probe("/readyz", period=5, failures=2),
        "resources": {
            "requests": {**DEFAULT_REQUESTS, **spec.requests},
            "limits": {**DEFAULT_LIMITS, **spec.limits},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": BOT_UID,
            "runAsGroup": BOT_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    if spec.image_pull_policy is not None:
        container["imagePullPolicy"] = spec.image_pull_policy
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "configMap": {
                "name": spec.child_name + "-config",
                "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}, {"key": HALT_KEY, "path": HALT_KEY}],
            },
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if spec.credentials_secret is not None:
        container["volumeMounts"].append(
            {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True}
        )
        # 0440 with fsGroup: readable by the bot's group, by nobody else, never writable.
        volumes.append(
            {"name": "credentials", "secret": {"secretName": spec.credentials_secret, "defaultMode": 0o440}}
        )
    strategy: dict[str, Any]
    if spec.redis is not None:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    else:
        strategy = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, spec.child_name),
        "spec": {
            "replicas": spec.desired_replicas,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": selector_labels(spec)},
            "strategy": strategy,
            "template": {
                "metadata": {
                    "labels": common_labels(spec),
                    "annotations": {CHECKSUM_ANNOTATION: config_checksum},
                },
                "spec": {
                    "automountServiceAccountToken": False,  # the bot never talks to Kubernetes
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": spec.stop_order_grace_s + SHUTDOWN_MARGIN_S,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": BOT_UID,
                        "runAsGroup": BOT_UID,
                        "fsGroup": BOT_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def render_service(spec: BotSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, spec.child_name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_disruption_budget(spec: BotSpec) -> dict[str, Any]:
    """With the Redis lease (replicas may overlap): a voluntary disruption (node drain) evicts at most
    one replica at a time, so with two or more a warm standby is always there to take the lease the
    evicted leader releases on SIGTERM (after its order in flight is final). maxUnavailable, not
    minAvailable: with one replica a drain must still be able to proceed (the bot then restarts
    elsewhere and is leaderless for its start-up; run two replicas for continuity)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, spec.child_name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(spec)}},
    }


def render_service_monitor(spec: BotSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(spec, spec.child_name),
        "spec": {
            "selector": {"matchLabels": selector_labels(spec)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
        },
    }
