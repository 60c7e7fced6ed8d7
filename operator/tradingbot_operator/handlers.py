"""Thin kopf handlers: render, apply, report. Everything they decide lives in pure modules.

    create / update(spec) / resume -> `reconcile`: validate + render, apply the children, write
                                     status (observedGeneration, conditions) and an Event
    timer (every status_interval_s) -> `refresh`: Deployment readiness and the bot's own report
                                     into status; re-applies the desired state if the Deployment
                                     vanished or was scaled by hand (a second trader must not appear)
    delete                         -> nothing to delete: children carry ownerReferences and
                                     Kubernetes' garbage collector removes them. kopf keeps its
                                     finalizer only because timers need one (it stops the timer
                                     first), so a deletion completes as soon as an operator
                                     replica is up: run two with --peering.

Errors: our `TemporaryError` becomes `kopf.TemporaryError` (kopf retries after `retry_after`);
a `PermanentError` (the API server refused our manifest, a name conflict) and an invalid spec
become a Degraded condition saying what to fix and one Warning Event per distinct problem; an
invalid spec deploys nothing, and existing children are left as they were.
Handlers register on an explicit `kopf.OperatorRegistry`, so tests never share handlers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf

from tradefleet.errors import ConfigError, PermanentError, TemporaryError
from tradingbot_operator import report, risk_switch
from tradingbot_operator.conditions import Observation, build_status, condition, status_changed
from tradingbot_operator.fleet_handlers import register_fleet
from tradingbot_operator.kube import Kube
from tradingbot_operator.metrics import OperatorMetrics
from tradingbot_operator.render import Rendered, render
from tradingbot_operator.settings import GROUP, PLURAL, VERSION, OperatorSettings
from tradingbot_operator.spec import CHILD_PREFIX

ANNOTATION_PREFIX = "tradefleet.io"
OPERATOR_REASONS = ("ApplyRefused",)
"""Degraded reasons that a resync retries (an invalid spec waits for a new spec instead)."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class OperatorContext:
    settings: OperatorSettings
    kube: Kube
    metrics: OperatorMetrics
    now: Callable[[], str] = utc_now
    http: aiohttp.ClientSession | None = field(default=None, init=False)


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf settings the operator relies on (called at startup)."""
    # Progress and the diff base live in annotations, so our structural status schema keeps
    # only what we write there (the API server would prune kopf's status.kopf otherwise).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # Events are for people: only our explicit ones and warnings, not every handler log line.
    settings.posting.level = logging.WARNING
    # No CRD/namespace observation: the operator serves one known resource, so it needs no RBAC on
    # CustomResourceDefinitions, and namespace-restricted mode works without cluster-wide reads.
    settings.scanning.disabled = True
    # A TradingBot being deleted keeps kopf's finalizer until its `refresh` timer has exited. A
    # timer caught mid-run (a status request, a patch: likelier the busier the machine) misses
    # kopf's "instant exit" window, and kopf then re-checks only after `cancellation_polling`
    # (60 s by default): the deletion hung for a minute. The run is bounded (status_timeout_s),
    # so a re-check every second finishes the deletion right after it.
    settings.background.cancellation_polling = 1.0
    # A watch is re-established at least every 5 minutes, so a silently dead connection heals.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300


def register(registry: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings)
        ctx.http = aiohttp.ClientSession()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        # Close our connections before kopf waits for leftover tasks: an open keep-alive
        # connection keeps a task alive on the server side of an in-process API server (tests).
        if ctx.http is not None:
            await ctx.http.close()
        ctx.kube.close()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own minimal logins: the pod's service account, else $KUBECONFIG read now.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    # Stable handler ids: kopf keys its progress annotations by them (tradefleet.io/reconcile).
    @kopf.on.resume(*resource, id="reconcile", registry=registry)
    @kopf.on.create(*resource, id="reconcile", registry=registry)
    @kopf.on.update(*resource, field="spec", id="reconcile", registry=registry)
    async def reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await reconcile_bot(ctx, body, patch, logger)

    @kopf.timer(*resource, id="refresh", interval=ctx.settings.status_interval_s, registry=registry)
    async def refresh(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await refresh_bot(ctx, body, patch, logger)

    @kopf.on.delete(*resource, id="forget", optional=True, registry=registry)
    def forget(name: str, namespace: str | None, **_: Any) -> None:
        ctx.metrics.set_phase(namespace or "", name, None)

    register_fleet(registry, ctx)


async def reconcile_bot(
    ctx: OperatorContext, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger
) -> None:
    meta, spec, status = body.get("metadata", {}), body.get("spec") or {}, body.get("status") or {}
    generation = int(meta.get("generation") or 0)
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    try:
        rendered = render(body, ctx.settings, service_monitor=await ctx.kube.has_service_monitors(namespace))
        applied = {obj["kind"]: await ctx.kube.apply(obj) for obj in rendered.objects()}
    except ConfigError as e:
        _degrade(ctx, body, patch, generation, bool(spec.get("paused") is True), "InvalidSpec", str(e))
        ctx.metrics.reconciles.labels("invalid").inc()
        logger.warning(f"invalid spec, nothing deployed: {e}")
        return
    except PermanentError as e:
        _degrade(ctx, body, patch, generation, bool(spec.get("paused") is True), "ApplyRefused", str(e))
        ctx.metrics.reconciles.labels("error").inc()
        ctx.metrics.errors.labels("permanent").inc()
        return
    except TemporaryError as e:
        ctx.metrics.errors.labels("temporary").inc()
        raise kopf.TemporaryError(str(e), delay=e.retry_after or 10.0) from e

    if ctx.settings.redis_url:
        try:
            done = await risk_switch.sync_with_redis(ctx.settings.redis_url, rendered.spec)
            if done != "unchanged":
                logger.info(f"kill switch {done} in Redis from spec.risk.halted")
        except Exception as e:  # the mounted halt.json still carries it, just slower
            ctx.metrics.errors.labels("temporary").inc()
            logger.warning(f"could not mirror spec.risk.halted into Redis: {e!r}")
    new = build_status(_observe(rendered, applied["Deployment"].live, generation), status, ctx.now())
    patch.status.update(new)
    ctx.metrics.reconciles.labels("ok").inc()
    ctx.metrics.set_phase(namespace, name, new["phase"])
    _announce(body, rendered, applied, status)


async def refresh_bot(ctx: OperatorContext, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
    meta, status = body.get("metadata", {}), body.get("status") or {}
    generation = int(meta.get("generation") or 0)
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    if int(status.get("observedGeneration") or -1) != generation:
        return  # the spec handler has not finished this generation: it writes the status
    degraded = condition(status, "Degraded") or {}
    if degraded.get("status") == "True" and degraded.get("reason") == "InvalidSpec":
        return  # nothing deployed; waiting for a corrected spec
    try:
        rendered = render(body, ctx.settings, service_monitor=False)
    except ConfigError:  # a rule this operator version has and the one that deployed it had not
        await reconcile_bot(ctx, body, patch, logger)
        return
    try:
        deployment = await ctx.kube.get("apps/v1", "Deployment", namespace, CHILD_PREFIX + name)
    except TemporaryError as e:
        ctx.metrics.errors.labels("temporary").inc()
        logger.debug(f"cannot read the Deployment: {e}")
        return
    drifted = (
        deployment is None or (deployment.get("spec") or {}).get("replicas") != rendered.spec.desired_replicas
    )
    if drifted or degraded.get("reason") in OPERATOR_REASONS:
        logger.info("children missing, scaled by hand or refused before: applying the desired state again")
        await reconcile_bot(ctx, body, patch, logger)
        return
    obs = _observe(rendered, deployment, generation)
    bot = None
    if not rendered.spec.paused and obs.deployment is not None and _ready(obs.deployment) > 0:
        bot = await _bot_report(ctx, namespace, name, logger)
        if bot is not None:
            obs = dataclasses.replace(obs, risk=bot.get("risk"))
    new: dict[str, Any] = build_status(obs, status, ctx.now())
    if bot is not None:
        new["bot"] = bot
    if status_changed(status, new):
        patch.status.update(new)
    ctx.metrics.set_phase(namespace, name, new["phase"])


def _ready(deployment: Mapping[str, Any]) -> int:
    return int(((deployment.get("status") or {}).get("readyReplicas")) or 0)


def _observe(rendered: Rendered, deployment: Mapping[str, Any] | None, generation: int) -> Observation:
    return Observation(
        generation=generation,
        paused=rendered.spec.paused,
        desired_replicas=rendered.spec.desired_replicas,
        deployment=deployment,
    )


def _degrade(
    ctx: OperatorContext,
    body: kopf.Body,
    patch: kopf.Patch,
    generation: int,
    paused: bool,
    reason: str,
    msg: str,
) -> None:
    obs = Observation(generation=generation, paused=paused, invalid=msg, invalid_reason=reason)
    before = condition(body.get("status") or {}, "Degraded") or {}
    new = build_status(obs, body.get("status") or {}, ctx.now())
    patch.status.update(new)
    meta = body.get("metadata", {})
    ctx.metrics.set_phase(meta.get("namespace", ""), meta.get("name", ""), new["phase"])
    # One Event per distinct problem, not one per resync.
    if (before.get("status"), before.get("reason"), before.get("message")) != ("True", reason, msg):
        kopf.event(body, type="Warning", reason=reason, message=msg[:1000])


def _announce(
    body: kopf.Body, rendered: Rendered, applied: Mapping[str, Any], previous: Mapping[str, Any]
) -> None:
    """Events a user should see: what was created or changed, pause and resume."""
    dep = rendered.deployment["metadata"]["name"]
    was_paused = (condition(previous, "Paused") or {}).get("status") == "True"
    if rendered.spec.paused and not was_paused:
        kopf.event(body, type="Normal", reason="Paused", message=f"scaled Deployment {dep} to 0 replicas")
    elif was_paused and not rendered.spec.paused:
        kopf.event(
            body,
            type="Normal",
            reason="Resumed",
            message=f"scaled Deployment {dep} to {rendered.spec.replicas}",
        )
    created = sorted(kind for kind, a in applied.items() if a.action == "created")
    patched = sorted(kind for kind, a in applied.items() if a.action == "patched")
    if created:
        kopf.event(body, type="Normal", reason="Created", message=f"created {', '.join(created)} for {dep}")
    if patched:
        kopf.event(body, type="Normal", reason="Updated", message=f"updated {', '.join(patched)} for {dep}")


async def _bot_report(
    ctx: OperatorContext, namespace: str, name: str, logger: kopf.Logger
) -> dict[str, Any] | None:
    if ctx.http is None:
        return None
    url = ctx.settings.status_url_template.format(name=name, namespace=namespace)
    try:
        raw = await report.fetch(ctx.http, url, timeout_s=ctx.settings.status_timeout_s)
        return report.to_status(raw, bot=name)
    except (TemporaryError, PermanentError) as e:
        ctx.metrics.errors.labels("report").inc()
        logger.debug(f"no bot report: {e}")
        return None
