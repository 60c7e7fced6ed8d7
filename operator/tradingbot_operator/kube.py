"""The operator's only door to the Kubernetes API for a bot's children (kopf owns the TradingBot).

`apply` is create-or-patch driven by a hash of the desired object (`render.HASH_ANNOTATION`):
an unchanged child costs one GET and no write, so a restarted operator or a periodic resync
never churns Deployments or creates duplicates; a changed one gets one JSON merge patch (lists
such as containers and env are replaced whole, which is what a desired state wants).

The official client is synchronous; each call runs in a worker thread with a bounded timeout, so
the event loop that serves kopf never blocks. Library errors are translated here, once:
404 on read = absent; 409 on create = someone created it meanwhile, re-read and patch; 422 and
400 = `PermanentError` (our manifest is wrong, retrying cannot help); everything else, including
403 (RBAC may be fixed by a human), = `TemporaryError` with a retry delay.

It refuses to touch an object of the same name that another owner controls: that is reported,
never overwritten.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import urllib3

from tradefleet.errors import ConfigError, PermanentError, TemporaryError
from tradingbot_operator.render import HASH_ANNOTATION

Action = Literal["created", "patched", "unchanged"]
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for one API call; an API server that is slower than this is retried."""
MONITORING = ("monitoring.coreos.com", "v1", "servicemonitors")
MONITORING_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class Applied:
    action: Action
    live: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Ops:
    read: Callable[..., Any]
    create: Callable[..., Any]
    patch: Callable[..., Any]


class ChildConflict(PermanentError):
    """An object with the child's name exists and is controlled by someone else."""


class Kube:
    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._policy = client.PolicyV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._monitoring: tuple[float, bool] | None = None
        self._exc = client.exceptions.ApiException

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Kube:
        """In a pod: the service account. Elsewhere: $KUBECONFIG (read now, not at import)."""
        from kubernetes import client, config

        env = os.environ if env is None else env
        configuration = client.Configuration()
        try:
            if env.get("KUBERNETES_SERVICE_HOST") and not env.get("KUBECONFIG"):
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                path = env.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=path, client_configuration=configuration, persist_config=False
                )
        except (config.ConfigException, OSError) as e:
            raise ConfigError(
                f"no Kubernetes credentials (no in-cluster service account, no usable kubeconfig): {e}"
            ) from e
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self._api_client.close()

    # --- reads ------------------------------------------------------------------------------

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        ops = self._ops(api_version, kind)
        try:
            return await self._call(f"read {kind} {namespace}/{name}", ops.read, namespace, name)
        except _NotFound:
            return None

    async def has_service_monitors(self, namespace: str) -> bool:
        """True when the Prometheus Operator's ServiceMonitor kind is served by this cluster.

        Asked by listing at most one ServiceMonitor in the bot's namespace (404 = not served), so
        it needs no more RBAC than managing ServiceMonitors does. Cached for `MONITORING_TTL_S`:
        a CRD installed later is picked up on a later reconcile.
        """
        now = time.monotonic()
        if self._monitoring is not None and now - self._monitoring[0] < MONITORING_TTL_S:
            return self._monitoring[1]
        group, version, plural = MONITORING

        def probe(**kw: Any) -> Any:
            return self._custom.list_namespaced_custom_object(
                group, version, namespace, plural, limit=1, **kw
            )

        try:
            await self._call(f"list {plural}.{group} in {namespace}", probe)
            served = True
        except (_NotFound, _Forbidden):  # not installed, or RBAC without it: run bots unmonitored
            served = False
        self._monitoring = (now, served)
        return served

    # --- writes -----------------------------------------------------------------------------

    async def apply(self, desired: Mapping[str, Any]) -> Applied:
        meta = desired["metadata"]
        ops = self._ops(desired["apiVersion"], desired["kind"])
        namespace, name = meta["namespace"], meta["name"]
        live = await self.get(desired["apiVersion"], desired["kind"], namespace, name)
        if live is None:
            try:
                what = f"create {desired['kind']} {namespace}/{name}"
                return Applied("created", await self._call(what, ops.create, namespace, dict(desired)))
            except _Conflict:  # created between our GET and POST (another operator replica)
                live = await self.get(desired["apiVersion"], desired["kind"], namespace, name)
                if live is None:
                    raise TemporaryError(
                        f"{desired['kind']} {namespace}/{name} flickered", retry_after=1.0
                    ) from None
        self._check_owner(desired, live)
        want = (meta.get("annotations") or {}).get(HASH_ANNOTATION)
        have = ((live.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
        if want is not None and want == have and not _scaled_by_hand(desired, live):
            return Applied("unchanged", live)
        patch = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
        what = f"patch {desired['kind']} {namespace}/{name}"
        return Applied(
            "patched", await self._call(what, ops.patch, namespace, name, patch, content_type=MERGE_PATCH)
        )

    def _check_owner(self, desired: Mapping[str, Any], live: Mapping[str, Any]) -> None:
        want = [r.get("uid") for r in desired["metadata"].get("ownerReferences", []) if r.get("controller")]
        have = [
            r.get("uid")
            for r in (live.get("metadata") or {}).get("ownerReferences") or []
            if r.get("controller")
        ]
        if have and have != want:
            meta = desired["metadata"]
            raise ChildConflict(
                f"{desired['kind']} {meta['namespace']}/{meta['name']} exists and is controlled by another "
                "owner; delete or rename it, the operator will not take it over"
            )

    # --- plumbing ---------------------------------------------------------------------------

    def _ops(self, api_version: str, kind: str) -> _Ops:
        core, apps, custom = self._core, self._apps, self._custom
        if (api_version, kind) == ("v1", "ConfigMap"):
            return _Ops(
                read=lambda ns, n, **kw: core.read_namespaced_config_map(n, ns, **kw),
                create=core.create_namespaced_config_map,
                patch=lambda ns, n, body, **kw: core.patch_namespaced_config_map(n, ns, body, **kw),
            )
        if (api_version, kind) == ("v1", "Service"):
            return _Ops(
                read=lambda ns, n, **kw: core.read_namespaced_service(n, ns, **kw),
                create=core.create_namespaced_service,
                patch=lambda ns, n, body, **kw: core.patch_namespaced_service(n, ns, body, **kw),
            )
        if (api_version, kind) == ("apps/v1", "Deployment"):
            return _Ops(
                read=lambda ns, n, **kw: apps.read_namespaced_deployment(n, ns, **kw),
                create=apps.create_namespaced_deployment,
                patch=lambda ns, n, body, **kw: apps.patch_namespaced_deployment(n, ns, body, **kw),
            )
        if (api_version, kind) == ("policy/v1", "PodDisruptionBudget"):
            policy = self._policy
            return _Ops(
                read=lambda ns, n, **kw: policy.read_namespaced_pod_disruption_budget(n, ns, **kw),
                create=policy.create_namespaced_pod_disruption_budget,
                patch=lambda ns, n, body, **kw: policy.patch_namespaced_pod_disruption_budget(
                    n, ns, body, **kw
                ),
            )
        if (api_version, kind) == ("monitoring.coreos.com/v1", "ServiceMonitor"):
            g, v, p = MONITORING
            return _Ops(
                read=lambda ns, n, **kw: custom.get_namespaced_custom_object(g, v, ns, p, n, **kw),
                create=lambda ns, body, **kw: custom.create_namespaced_custom_object(g, v, ns, p, body, **kw),
                patch=lambda ns, n, body, **kw: custom.patch_namespaced_custom_object(
                    g, v, ns, p, n, body, **kw
                ),
            )
        raise PermanentError(f"the operator does not manage {kind} ({api_version})")

    async def _call(
        self, what: str, fn: Callable[..., Any], *args: Any, content_type: str | None = None
    ) -> dict[str, Any]:
        # Raw JSON, not the client's models: children are plain dicts end to end.
        kwargs: dict[str, Any] = {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}
        if content_type is not None:  # the client would otherwise pick json-patch for a PATCH
            kwargs["_content_type"] = content_type

        def call() -> dict[str, Any]:
            response = fn(*args, **kwargs)
            data: dict[str, Any] = json.loads(response.data)
            return data

        try:
            return await asyncio.to_thread(call)
        except Exception as e:
            raise self._translate(e, what) from e

    def _translate(self, e: Exception, what: str) -> Exception:
        if isinstance(e, self._exc):
            status = int(e.status or 0)
            message = _api_message(e.body) or str(e.reason)
            if status == 404:
                return _NotFound(what)
            if status == 409:
                return _Conflict(what)
            if status in (400, 422):
                return PermanentError(f"the API server refused {what}: {message}")
            if status in (401, 403):
                return _Forbidden(
                    f"not allowed to {what} (check the operator's RBAC): {message}", retry_after=60
                )
            return TemporaryError(f"{what} failed with HTTP {status}: {message}", retry_after=5)
        if isinstance(e, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
            return TemporaryError(f"{what} failed: {e!r}", retry_after=5)
        return e


class _NotFound(TemporaryError):
    pass


class _Conflict(TemporaryError):
    pass


class _Forbidden(TemporaryError):
    """401/403: RBAC or credentials; a human may fix it, so it is retried slowly."""


def _scaled_by_hand(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """`kubectl scale` changes replicas without touching our hash: a second trader must not appear."""
    want = (desired.get("spec") or {}).get("replicas")
    return want is not None and (live.get("spec") or {}).get("replicas") != want


def _api_message(body: Any) -> str | None:
    try:
        return str(json.loads(body).get("message"))
    except (TypeError, ValueError, AttributeError):
        return None
