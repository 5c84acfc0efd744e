"""How a model's versions are released: aliases, canaries and shadows.

``Releases`` is a part of ``ModelManager`` (its base class), kept in its own module so the
release strategies read apart from the publish, access and lifecycle code they build on: every
operation here runs through the manager's ``_deploy`` (a per-model lock, events, a background
deploy of one unit) and records who asked with the alias it concerns. Aliases are units the
deployer runs like models (``ModelRef.alias``); a canary is the alias ``canary`` plus the
deployer's split (``Deployer.split``, the canary front), judged by ``CanaryCheck``; a shadow is
the alias ``shadow``, fed by production's sampled requests (``mlhub.publisher.shadow``).
"""

import asyncio
import time

from mlhub.errors import BadRequest, Conflict, NotFound
from mlhub.publisher.canary import CANARY_PERCENTS
from mlhub.publisher.inference_log import MAX_READ_ROWS
from mlhub.publisher.shadow import SHADOW_PERCENTS, ShadowJob, chosen, summary
from mlhub.publisher.store import isoformat
from mlhub.publisher.views import check_alias, check_share
from mlhub.steps import ALIAS_DELETED, CANARY, CANARY_SHARE, DEFAULT_ALIAS, REQUESTED, SHADOW

SHADOW_ROUTE_SECONDS = 5.0  # how long a shadow's route is trusted before it is looked up again


class Releases:
    """Aliases, canary and shadow operations of ``ModelManager`` (see the module)."""

    # ------------------------------------------------------------ canary

    def _candidate(self, model, version, role):
        """The stored version ``version`` names (``resolve_version``) to try beside
        production as its ``role`` (canary, shadow): any but the one production serves."""
        if model.current_version is None:
            raise BadRequest(f"{model.key} has no {DEFAULT_ALIAS} version to try a {role} beside")
        if not isinstance(version, str) or not version:
            raise BadRequest("version must be a version id or an alias", {"field": "version"})
        target = self.resolve_version(model, version)
        if target.id == model.current_version:
            raise BadRequest(
                f"{target.id[:19]} is the version production serves: a {role} is another one",
                {"field": "version"},
            )
        return target

    async def start_canary(self, caller, model, version, percent):
        """Send ``percent`` of the default alias's requests to ``version``
        (``resolve_version``), by request: the version starts in processes of its own (the
        alias ``canary``, readiness-gated), then the canary front splits production's traffic
        (``Deployer.split``). A canary of that version already running only changes its share
        (at once). The canary check (``watch_canaries``) aborts one that does worse."""
        percent = check_share(percent, CANARY_PERCENTS, "of production's requests the canary gets")
        target = self._candidate(model, version, CANARY)
        if self.asleep(model):  # the split needs production's route (mlhub.publisher.idle)
            await self.wake_unit(model)
        current = model.alias(CANARY)
        ref = self.ref(model)
        if current is not None and current.version == target.id and model.canary_percent:
            async with self._lock(model.owner, model.name):
                await self.deployer.split(ref, percent)
                model.canary_percent = percent
                self.store.commit()
                self._record(
                    model,
                    target.id,
                    CANARY_SHARE,
                    f"canary {target.id[:19]} now gets {percent:g}% of the requests, "
                    f"set by {caller.name}",
                    actor=caller.name,
                    alias=CANARY,
                )
            return {"model": self.view(model), "version": target.id, "event_id": None}
        if current is not None:
            await self.end_canary(caller, model, "replaced by another canary")
        bundle_dir = await self._ensure_bundle_dir(model, target.id)
        self.store.add_alias(model, CANARY)
        model.canary_percent = percent
        self.store.commit()
        first = self._record(
            model,
            target.id,
            REQUESTED,
            f"canary {target.id[:19]} at {percent:g}% requested by {caller.name}",
            actor=caller.name,
            alias=CANARY,
        )

        async def operation(unit, progress):
            await self.deployer.deploy(
                unit,
                target.id,
                str(bundle_dir),
                replicas=model.replicas,
                progress=progress,
                serving=self.serving(model, CANARY),
            )
            await self.deployer.split(ref, model.canary_percent)

        self._background(self._deploy(model, target.id, operation, CANARY))
        return {"model": self.view(model), "version": target.id, "event_id": first.id}

    def canary(self, model):
        """The running canary of ``model`` with what the front measured: ``{"version",
        "percent", "since", "url", "stats": {"stable": ..., "canary": ...}}``, or NotFound."""
        pointer = model.alias(CANARY)
        if pointer is None or model.canary_percent is None:
            raise NotFound(
                f"{model.key} has no canary: start one with mlhub models canary "
                f"{model.name} --version V --percent P",
                {"canary": None},
            )
        return {
            "version": pointer.version,
            "percent": model.canary_percent,
            "since": isoformat(pointer.since),
            "url": f"{self.public_url}{self.ref(model).with_alias(CANARY).url_prefix}/",
            "stats": self.deployer.front.stats(self.ref(model)),
        }

    async def promote_canary(self, caller, model):
        """Make the canary's version production's (a readiness-gated move of the default
        alias), then end the canary."""
        pointer = model.alias(CANARY)
        if pointer is None or pointer.version is None:
            raise NotFound(f"{model.key} has no canary ready to promote", {"canary": None})
        target = model.version(pointer.version)

        async def ended():
            await self._end_canary_locked(model, f"promoted by {caller.name}", caller.name)

        return await self._move_default(caller, model, target, "canary promotion", ended)

    async def end_canary(self, caller, model, why=None):
        """Abort ``model``'s canary: all requests to production again, the canary's processes
        stopped. ``caller`` None: the canary check did, for ``why``."""
        if model.alias(CANARY) is None:
            raise NotFound(f"{model.key} has no canary to abort", {"canary": None})
        who = caller.name if caller is not None else None
        async with self._lock(model.owner, model.name):
            await self._end_canary_locked(
                model, f"aborted by {who or 'mlhub'}" + (f": {why}" if why else ""), who
            )

    async def _end_canary_locked(self, model, message, actor):
        ref = self.ref(model)
        await self.deployer.unsplit(ref)
        await self.deployer.delete(ref.with_alias(CANARY))
        version = model.alias(CANARY).version if model.alias(CANARY) else None
        self.store.remove_alias(model, CANARY)
        model.canary_percent = None
        self.store.commit()
        level = "info" if actor is not None or message.startswith("promoted") else "error"
        self._record(
            model, version, ALIAS_DELETED, f"canary {message}", level, actor=actor, alias=CANARY
        )

    async def watch_canaries(self):
        """Every ``CanaryCheck.interval``: abort each running canary whose verdict says so."""
        await self.adopted.wait()
        while True:
            await asyncio.sleep(self.canary_check.interval)
            for model in self.store.list_models():
                pointer = model.alias(CANARY)
                if model.canary_percent is None or pointer is None or pointer.version is None:
                    continue
                try:
                    why = self.canary_check.verdict(self.deployer.front.stats(self.ref(model)))
                    if why and not self._lock(model.owner, model.name).locked():
                        await self.end_canary(None, model, why)
                except Exception:
                    self.log.exception("checking the canary of %s failed", model.key)

    # ------------------------------------------------------------ shadow

    async def start_shadow(self, caller, model, version, percent):
        """Send ``percent`` of production's requests to ``version`` too, answers kept and
        never returned (``mlhub.publisher.shadow``): the version starts in processes of its
        own (the alias ``shadow``), then production's processes are restarted (readiness-gated)
        if they must sample more of their requests. A shadow of that version already running
        only changes its share."""
        percent = check_share(percent, SHADOW_PERCENTS, "of production's requests sent to it too")
        target = self._candidate(model, version, SHADOW)
        if self.asleep(model):  # production's processes sample the shadow's requests
            await self.wake_unit(model)
        current = model.alias(SHADOW)
        if current is not None and current.version != target.id:
            await self.stop_shadow(caller, model, restart=False)
        serving = current is not None and current.version == target.id  # a new share only
        said = f"shadow {target.id[:19]} {'now ' if serving else ''}at {percent:g}%"
        bundle_dir = await self._ensure_bundle_dir(model, target.id)
        live_dir = await self._ensure_bundle_dir(model, model.current_version)
        before = self.serving(model)
        self.store.add_alias(model, SHADOW)
        model.shadow_percent = percent
        self.store.commit()
        first = self._record(
            model,
            target.id,
            REQUESTED,
            f"{said} requested by {caller.name}",
            actor=caller.name,
            alias=SHADOW,
        )
        live = model.current_version

        async def operation(unit, progress):
            if not serving:  # its processes do not depend on its share
                await self.deployer.deploy(
                    unit,
                    target.id,
                    str(bundle_dir),
                    replicas=1,
                    progress=progress,
                    serving=self.serving(model, SHADOW),
                )
            await self._push_access(model)  # the publisher's shadow key
            if self.serving(model) != before:  # production must hand over more requests
                await self.deployer.deploy(
                    self.ref(model),
                    live,
                    str(live_dir),
                    replicas=model.replicas,
                    progress=lambda step, message: None,
                    serving=self.serving(model),
                )

        self.shadower.dropped.pop(model.key, None)
        self._background(self._deploy(model, target.id, operation, SHADOW))
        return {"model": self.view(model), "version": target.id, "event_id": first.id}

    async def stop_shadow(self, caller, model, restart=True):
        """End ``model``'s shadow: its processes stop, and production's sample goes back to
        the inference log's (a readiness-gated restart, unless ``restart`` is False)."""
        pointer = model.alias(SHADOW)
        if pointer is None:
            raise NotFound(f"{model.key} has no shadow", {"shadow": None})
        before = self.serving(model)
        async with self._lock(model.owner, model.name):
            await self.deployer.delete(self.ref(model).with_alias(SHADOW))
            version = pointer.version
            self.store.remove_alias(model, SHADOW)
            model.shadow_percent = None
            self.store.commit()
            await self._push_access(model)
            self._record(
                model,
                version,
                ALIAS_DELETED,
                f"shadow stopped by {caller.name}",
                actor=caller.name,
                alias=SHADOW,
            )
        if restart and self.serving(model) != before and model.current_version:
            bundle_dir = await self._ensure_bundle_dir(model, model.current_version)
            self._deploy_version(model, model.current_version, bundle_dir)

    async def shadow(self, model, *, since=None, limit=None):
        """The running shadow and how its answers compare with production's since it started
        (or ``since``): ``{"version", "percent", "since", "url", "summary", "rows"}``."""
        pointer = model.alias(SHADOW)
        if pointer is None or model.shadow_percent is None:
            raise NotFound(
                f"{model.key} has no shadow: start one with mlhub models shadow {model.name} "
                "--version V --percent P",
                {"shadow": None},
            )
        rows = await asyncio.to_thread(
            self.shadow_log.read,
            self.ref(model),
            since=since or pointer.since,
            limit=limit or MAX_READ_ROWS,
        )
        rows = [r for r in rows if r["shadow_version"] == pointer.version]
        return {
            "version": pointer.version,
            "percent": model.shadow_percent,
            "since": isoformat(pointer.since),
            "url": f"{self.public_url}{self.ref(model).with_alias(SHADOW).url_prefix}/",
            "summary": summary(rows, self.shadower.dropped.get(model.key, 0)),
            "rows": rows,
        }

    # ------------------------------------------------------------ aliases

    async def set_alias(self, caller, model, alias, version):
        """Point ``alias`` of ``model`` at ``version`` (``resolve_version``): the alias's own
        serving processes move with a readiness-gated switch, as a publish does (the default
        alias's move is a rollback). An alias that does not exist is made; one that serves
        that version already changes nothing (``event_id`` None)."""
        check_alias(alias)
        if not isinstance(version, str) or not version:
            raise BadRequest(
                "version must be a version id, 'previous' or an alias", {"field": "version"}
            )
        target = self.resolve_version(model, version)
        if alias == DEFAULT_ALIAS:
            if self._serves(model, None, target.id):
                return {"model": self.view(model), "version": target.id, "event_id": None}
            return await self._move_default(caller, model, target, f"alias {DEFAULT_ALIAS}")
        if model.current_version is None:
            raise BadRequest(
                f"{model.key} has no {DEFAULT_ALIAS} version yet; it needs one before aliases",
                {"field": "alias"},
            )
        if self._serves(model, alias, target.id):
            return {"model": self.view(model), "version": target.id, "event_id": None}
        if model.alias(alias) is None and len(model.aliases) >= self.max_aliases:
            raise Conflict(
                f"{model.key} has {len(model.aliases)} aliases besides {DEFAULT_ALIAS}, the most "
                "a model may have (PublisherApp.max_aliases_per_model); each runs processes of "
                "its own: delete one no one calls first",
                {"limit": self.max_aliases},
            )
        bundle_dir = await self._ensure_bundle_dir(model, target.id)
        self.store.add_alias(model, alias)
        first = self._record(
            model,
            target.id,
            REQUESTED,
            f"alias {alias} to {target.id[:19]} requested by {caller.name}",
            actor=caller.name,
            alias=alias,
        )
        self._deploy_version(model, target.id, bundle_dir, alias)
        return {"model": self.view(model), "version": target.id, "event_id": first.id}

    async def delete_alias(self, caller, model, alias):
        """Remove ``alias`` and stop its serving processes (its URL answers 404 after)."""
        if alias == DEFAULT_ALIAS:
            raise BadRequest(
                f"{DEFAULT_ALIAS} is the default alias, which the plain URL serves: move it "
                "(mlhub models alias NAME production --version V) or delete the model",
                {"field": "alias"},
            )
        if alias in (CANARY, SHADOW):
            how = "--abort (or --promote)" if alias == CANARY else "--stop"
            raise BadRequest(
                f"{alias} is the {alias}'s alias: end it with mlhub models {alias} "
                f"{model.name} {how}",
                {"field": "alias"},
            )
        if model.alias(alias) is None:
            raise NotFound(f"{model.key} has no alias {alias!r}", {"alias": alias})
        async with self._lock(model.owner, model.name):
            await self.deployer.delete(self.ref(model).with_alias(alias))
            self.store.remove_alias(model, alias)
            self._record(
                model,
                None,
                ALIAS_DELETED,
                f"alias {alias} deleted by {caller.name}",
                actor=caller.name,
                alias=alias,
            )

    # ------------------------------------------------------------ shadow: its share

    def _shadow(self, model, rows, share):
        """Queue the answered requests among ``rows`` that fall in ``share`` for the shadow."""
        pointer = model.alias(SHADOW)
        if pointer is None or pointer.version is None:
            return  # still starting
        unit = self.ref(model).with_alias(SHADOW)
        key = self.bundle_tokens.shadow_key(unit)
        requests = {}
        for r in rows:
            if r["status"] == 200 and (share >= 1 or chosen("shadow" + r["request"], share)):
                requests.setdefault(r["request"], []).append(r)

        async def target():
            when, url = self._shadow_targets.get(unit, (0.0, None))
            if time.monotonic() - when > SHADOW_ROUTE_SECONDS:
                route = (await self.deployer.routes.get_all()).get(unit.url_prefix)
                url = (
                    route["target"].rstrip("/") + unit.url_prefix + "/v1/predict" if route else None
                )
                self._shadow_targets[unit] = (time.monotonic(), url)
            return url

        for request, parts in requests.items():
            self.shadower.offer(
                ShadowJob(
                    model=unit,
                    request=request,
                    time=parts[0]["time"],
                    inputs=[r["inputs"] for r in parts],
                    outputs=[r["outputs"] for r in parts],
                    production_version=parts[0]["version"],
                    shadow_version=pointer.version,
                    production_ms=parts[0]["latency_ms"],
                    key=key,
                    target=target,
                )
            )
