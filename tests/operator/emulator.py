"""kmock's Kubernetes emulator with what kopf and our operator rely on from a real API server.

kmock 0.8 keeps objects as plain dicts. This subclass adds, and nothing more:
- names from generateName; uid, resourceVersion (one cluster-wide counter), generation and creationTimestamp on create,
  409 `AlreadyExists` for a duplicate create;
- on patch: resourceVersion bump; generation bump when `spec` changes; JSON-patch `test` failures
  answer 422 (kopf relies on it for optimistic concurrency); JSON merge patches per RFC 7386;
- the status subresource: a patch to the object ignores `status`, a patch to `/status` changes
  only `status` (for resources declared with subresources={'status'});
- garbage collection: objects whose controller owner is gone are deleted, as the real
  garbage collector does in the background;
- lists carry the current resourceVersion, and a watch subscribes before it snapshots, then
  replays only objects newer than its `?resourceVersion=` (kmock replays everything and can lose
  an event that lands between its snapshot and its subscription);
- `/api/v1` discovery answering `groupVersion: v1` instead of `/v1`.
It does not validate schemas or CEL rules: tests do that against the CRD directly.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import jsonpatch
import jsonpointer
from kmock import (
    KubernetesEmulator,
    KubernetesError,
    KubernetesObjectNotFoundError,
    KubernetesScaffold,
    action,
)
from kmock._internal import dicts

_versions = itertools.count(1000)
_last_version = [999]


def _next_version() -> str:
    _last_version[0] = next(_versions)
    return str(_last_version[0])


@attrs.define(kw_only=True)
class ClusterEmulator(KubernetesEmulator):
    async def _handle(self, request: Any) -> Any:
        if request.resource is None:
            return await super()._handle(request)
        if request.action == action.CREATE and isinstance(request.data, dict):
            await self._prepare_create(request)
            response = await super()._handle(request)
        elif request.action == action.UPDATE and request.name is not None:
            async with self._lock:
                await self._update(request)
            # Only the reactions and fallbacks: the state is already changed above.
            response = await KubernetesScaffold._handle(self, request)
        else:
            response = await super()._handle(request)
        if request.action in (action.DELETE, action.UPDATE):
            await self._collect_garbage()
        return response

    async def _prepare_create(self, request: Any) -> None:
        meta = request.data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):  # kopf's Events use generateName
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name, namespace = meta.get("name"), request.namespace or meta.get("namespace")
        key = (request.resource, namespace, name)
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                raise KubernetesError(
                    status=409,
                    reason="AlreadyExists",
                    message=f"{request.resource.plural} {name!r} already exists",
                )
        if namespace is not None:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = _next_version()
        meta["generation"] = 1
        meta["creationTimestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _has_status_subresource(self, resource: Any) -> bool:
        return resource in self._resources and "status" in self._resources[resource].subresources

    async def _update(self, request: Any) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise KubernetesObjectNotFoundError()
        obj = self._objects[key]
        current = copy.deepcopy(obj.raw)
        patch = request.data
        if isinstance(patch, list):
            try:
                new = jsonpatch.apply_patch(current, patch, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise KubernetesError(
                    status=422, reason="Invalid", message=f"the patch cannot apply: {e}"
                ) from e
        elif isinstance(patch, dict):
            new = dict(dicts.merge_patch_dict(current, patch))
        else:
            raise KubernetesError(status=400, reason="BadRequest", message="the patch must be JSON")
        if self._has_status_subresource(request.resource):
            if request.subresource == "status":
                new = {**copy.deepcopy(current), "status": new.get("status")}
            else:
                new["status"] = copy.deepcopy(current.get("status"))
            if new.get("status") is None:
                new.pop("status", None)
        meta = new.setdefault("metadata", {})
        for immutable in ("uid", "creationTimestamp", "name", "namespace"):
            if immutable in current.get("metadata", {}):
                meta[immutable] = current["metadata"][immutable]
        meta["resourceVersion"] = _next_version()
        if new.get("spec") != current.get("spec"):
            meta["generation"] = int(current.get("metadata", {}).get("generation") or 1) + 1
        obj.history.append(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            obj.delete()
            await self._buses[request.resource].put({"type": "DELETED", "object": new})
        else:
            await self._buses[request.resource].put({"type": "MODIFIED", "object": new})

    async def _collect_garbage(self) -> None:
        async with self._lock:
            while True:
                alive = {
                    o.raw.get("metadata", {}).get("uid") for o in self._objects.values() if not o.deleted
                }
                orphans = [
                    (key, o)
                    for key, o in self._objects.items()
                    if not o.deleted
                    and any(
                        ref.get("controller") and ref.get("uid") not in alive
                        for ref in o.raw.get("metadata", {}).get("ownerReferences", [])
                    )
                ]
                if not orphans:
                    return
                for (resource, _, _), o in orphans:
                    raw = o.raw
                    o.delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        result["metadata"]["resourceVersion"] = str(_last_version[0])
        return result

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        yield b""  # send the headers now, as kmock does
        bus = self._buses[request.resource]
        check = self._KubernetesEmulator__check
        async with self._lock:
            marker = await bus.mark()  # subscribe first: nothing can slip between snapshot and stream
            snapshot = [
                obj.raw
                for (resource, namespace, name), obj in self._objects.items()
                if not obj.deleted and check(request, resource, namespace, name, strict=False)
            ]
        since = str(request.params.get("resourceVersion") or "")
        try:
            for raw in snapshot:
                version = str(raw.get("metadata", {}).get("resourceVersion") or "")
                if since.isdigit() and version.isdigit() and int(version) <= int(since):
                    continue
                yield {"type": "ADDED", "object": raw}
            async for event in bus.stream(since=marker):
                meta = event.get("object", {}).get("metadata", {})
                if check(request, request.resource, meta.get("namespace"), meta.get("name"), strict=False):
                    yield event
        finally:
            await bus.unmark(marker)

    async def _serve_version(self, request: Any) -> Any:
        result = await super()._serve_version(request)
        if request.resource is not None and request.resource.group == "":
            result["groupVersion"] = request.resource.version
        return result
