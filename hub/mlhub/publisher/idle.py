"""Idle models sleep: what serves them is released, and the next request wakes them.

On a team platform the cost that grows is the number of published models, most of them idle:
a small scikit-learn model's processes hold over a hundred megabytes whether or not anyone
calls it. So a unit (a model's production, or one of its aliases) that carried no request for
its model's ``sleep_after`` seconds (the model's own setting, else ``IdlePolicy.sleep_after``;
0: never) is put to sleep: ``Deployer.sleep`` stops its processes (embedded mode) or scales its
Deployment to zero (Kubernetes) and removes its proxy routes.

Idle means what the proxy saw: configurable-http-proxy records, per route, when it last carried
a successful request (``last_activity``, what JupyterHub's idle culler reads too), in both
modes. Every ``IdlePolicy.interval`` the publisher reads the routing table once. A model with a
canary or a shadow never sleeps (the publisher splits or mirrors its requests), nor a unit
while an operation on its model runs.

With its routes gone, a sleeping unit's requests reach the proxy's ``/models`` fallback, the
publisher (``handlers.ModelsFallbackHandler``), which holds each one while the unit wakes
(``wake_unit``: one wake per unit, however many requests wait), then passes it on through the
route the wake set and answers with the model's answer: callers see a slower request, never a
failed one. A wake that fails answers 503 with the reason, the unit stays asleep, and for
``IdlePolicy.wake_retry_seconds`` every request gets that answer at once; then the next one
tries again (a publish or rollback starts the model anyway).
"""

import asyncio
import datetime
import shutil
import time

from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from mlhub.errors import MlhubError, NotReady
from mlhub.steps import ASLEEP, AWAKE, CANARY, SHADOW, WAKING


class IdlePolicy(LoggingConfigurable):
    """When idle models sleep (``c.IdlePolicy.*``)."""

    sleep_after = Integer(
        900,
        help="""Seconds without a request after which a model's processes (embedded mode) or
        pods (Kubernetes) are released, for models that do not set their own (``mlhub models
        configure NAME --sleep-after``). Default 900 (15 minutes); 0: models never sleep. The
        next request wakes the model and is answered once it is ready.""",
    ).tag(config=True)

    interval = Float(
        30.0,
        help="""Seconds between two looks for idle models (default 30): a model sleeps up to
        this long after its ``sleep_after``.""",
    ).tag(config=True)

    wake_retry_seconds = Float(
        10.0,
        help="""Seconds after a failed wake during which requests to that model are answered
        503 with the reason at once, instead of each trying again (default 10).""",
    ).tag(config=True)


def last_activity(routes, ref):
    """When the proxy last carried a request of unit ``ref`` (the latest over its route
    prefixes; a route's creation counts), as a POSIX time, or None when it has no route."""
    times = []
    for prefix in ref.route_prefixes:
        stamp = (routes.get(prefix) or {}).get("last_activity")
        if stamp:
            parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            times.append(parsed.timestamp())
    return max(times) if times else None


class IdleModels:
    """Sleeping and waking, a part of ``ModelManager`` (its base class; see the module). Needs
    ``self.idle_policy`` (an ``IdlePolicy``)."""

    def sleep_after(self, model):
        """Seconds of no request after which ``model`` sleeps (0: never)."""
        own = model.sleep_after
        return self.idle_policy.sleep_after if own is None else own

    def asleep(self, model, alias=None):
        """Whether the unit ``alias`` (None: production) of ``model`` sleeps."""
        return self.deployer.asleep(self.ref(model).with_alias(alias))

    def key_hashes(self, model):
        """The sha256 hex of every API key of ``model`` (who may wake it without a hub token)."""
        return set(self._access(model)["key_hashes"])

    async def route_target(self, ref):
        """Where the proxy sends the unit ``ref``'s requests now, or None (no route)."""
        routes = await self.deployer.routes.get_all()
        return (routes.get(ref.url_prefix) or {}).get("target")

    async def watch_idle(self):
        """Put idle units to sleep, every ``IdlePolicy.interval``; runs until cancelled."""
        await self.adopted.wait()
        while True:
            await asyncio.sleep(self.idle_policy.interval)
            try:
                await self.sleep_idle()
            except MlhubError as exc:
                self.log.warning("idle check: %s", exc.message)
            except Exception:
                self.log.exception("idle check failed")

    async def sleep_idle(self, now=None):
        """One look at every model: sleep the units idle for longer than their model's
        ``sleep_after``."""
        routes = await self.deployer.routes.get_all()
        now = time.time() if now is None else now
        for model in self.store.list_models():
            after = self.sleep_after(model)
            if not after or model.current_version is None:
                continue
            if model.status not in ("ready", "sleeping"):  # deploying, failed, stopped
                continue
            if model.canary_percent is not None or model.shadow_percent is not None:
                continue
            if self._lock(model.owner, model.name).locked():
                continue
            units = [None, *(a.name for a in model.aliases if a.name not in (CANARY, SHADOW))]
            for alias in units:
                ref = self.ref(model).with_alias(alias)
                last = last_activity(routes, ref)
                if last is not None and now - last > after and not self.deployer.asleep(ref):
                    await self.sleep_unit(model, alias, now - last)

    async def sleep_unit(self, model, alias, idle_seconds):
        """Release what serves the unit ``alias`` of ``model`` (None: production)."""
        ref = self.ref(model).with_alias(alias)
        async with self._lock(model.owner, model.name):
            if self.store.find_model(model.owner, model.name) is None:
                return
            await self.deployer.sleep(ref)
            version = model.current_version if alias is None else model.alias(alias).version
            self._record(
                model,
                version,
                ASLEEP,
                f"no request for {idle_seconds:.0f} s (sleep after {self.sleep_after(model)} s): "
                "its processes were released; the next request wakes it",
                alias=alias,
            )
            self._mark_asleep(model, alias, True)
        await self._sync_deployments(model)

    def _drop_unpacked(self, model, version):
        """After a failed wake: remove the unpacked folder of ``version`` unless another unit
        of the model serves it, so the next wake or publish of it unpacks the stored artifact
        again (a file removed or damaged there is then repaired; the artifact is the truth)."""
        pointers = [(None, model.current_version), *((a.name, a.version) for a in model.aliases)]
        for alias, served in pointers:
            if served == version and not self.asleep(model, alias):
                return
        shutil.rmtree(self.bundle_dir(model, version), ignore_errors=True)

    async def wake_unit(self, model, alias=None):
        """Start the sleeping unit ``alias`` (None: production) of ``model`` and return once it
        serves; every caller waiting for the same unit shares one wake. ``NotReady`` (503)
        saying why if it does not start."""
        unit = self.ref(model).with_alias(alias).unit
        failed = self._wake_failures.get(unit)
        if failed is not None and time.monotonic() < failed[0]:
            raise NotReady(failed[1], {"owner": model.owner, "name": model.name, "wake": "failed"})
        wake = self._wakes.get(unit)
        if wake is None:
            wake = asyncio.ensure_future(self._wake(model, alias))
            self._wakes[unit] = wake
            wake.add_done_callback(lambda _: self._wakes.pop(unit, None))
        await asyncio.shield(wake)

    async def _wake(self, model, alias):
        ref = self.ref(model).with_alias(alias)
        async with self._lock(model.owner, model.name):
            if not self.deployer.asleep(ref):
                return  # woken meanwhile (a publish, another request)
            version = model.current_version if alias is None else model.alias(alias).version
            started = time.monotonic()
            self._record(model, version, WAKING, "a request came: waking", alias=alias)

            def progress(step, message):
                self._record(model, version, WAKING, message, alias=alias)

            try:
                # unpacked again from its stored artifact if its folder went (or went bad)
                await self._ensure_bundle_dir(model, version)
                await self.deployer.wake(ref, progress)
            except Exception as exc:
                why = exc.message if isinstance(exc, MlhubError) else f"internal error: {exc}"
                if not isinstance(exc, MlhubError):
                    self.log.exception("waking %s failed", ref.unit)
                message = f"{ref.unit} is asleep and could not be woken: {why}"
                self._record(model, version, "failed", message, "error", alias=alias)
                self.store.commit()
                retry = time.monotonic() + self.idle_policy.wake_retry_seconds
                self._wake_failures[ref.unit] = (retry, message)
                self._drop_unpacked(model, version)
                raise NotReady(message, {"owner": model.owner, "name": model.name}) from exc
            self._wake_failures.pop(ref.unit, None)
            self._record(
                model,
                version,
                AWAKE,
                f"awake after {time.monotonic() - started:.2f} s",
                alias=alias,
            )
            self._mark_asleep(model, alias, False)
        await self._sync_deployments(model)

    def _mark_asleep(self, model, alias, asleep):
        """Store whether the unit sleeps: production's as the model's status, an alias's as
        its ``asleep``."""
        if alias is None:
            model.status = "sleeping" if asleep else "ready"
        else:
            model.alias(alias).asleep = asleep or None
        self.store.commit()
