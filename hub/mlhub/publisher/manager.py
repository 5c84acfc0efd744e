"""The publisher's core: what publish, rollback, scale, delete and keys *do*.

Handlers authenticate and parse; this module decides and acts, over the store (desired state and
history), the artifact store (bundles) and a deployer (running processes). Operations on one
model are serialized by a per-model lock; the slow part of a deploy runs in the background and
reports progress as events, which clients poll. The credentials it mints and checks (API keys,
bundle tokens) and the access list they feed are ``credentials``'; the API's views are
``views``'; aliases, canaries and shadows are ``releases``' (a base class of the manager).
"""

import asyncio
import datetime
import secrets
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mlhub.bundle import load_manifest, validate_name
from mlhub.bundle.parity import read_parity
from mlhub.datadir import grant_owner
from mlhub.deployers.base import Desired, ModelRef, Serving
from mlhub.errors import (
    BadRequest,
    Conflict,
    MlhubError,
    NotFound,
    NotReady,
    TooManyRequests,
)
from mlhub.input_drift import PSI_THRESHOLD, drift_table, weak_note
from mlhub.publisher.artifacts import place
from mlhub.publisher.canary import CanaryCheck
from mlhub.publisher.credentials import BundleTokens, access_list, new_key
from mlhub.publisher.idle import IdleModels, IdlePolicy
from mlhub.publisher.inference_log import MAX_READ_ROWS, rows_from_batch
from mlhub.publisher.model_calls import call
from mlhub.publisher.releases import Releases
from mlhub.publisher.shadow import Shadower, ShadowLog, chosen
from mlhub.publisher.store import isoformat, utcnow
from mlhub.publisher.views import (
    check_alias,
    check_batching,
    check_inference_log,
    check_replicas,
    check_sleep_after,
    model_view,
)
from mlhub.resources import check_resources
from mlhub.steps import (
    ALIAS_DELETED,
    CANARY,
    DEFAULT_ALIAS,
    IN_PROGRESS,
    KEY_CREATED,
    KEY_REVOKED,
    REQUESTED,
    SHADOW,
    SHARED,
    SLEEP_SETTING,
)

UNCHANGED = object()  # a publish that does not mention a setting keeps the model's
DRIFT_WINDOW = datetime.timedelta(days=1)  # the logged inputs drift compares unless told


@dataclass(frozen=True)
class Outcome:
    """What an operation did: the API's answer, and whether it started work that goes on after
    the answer (a deploy; its events say how it ends). The handler turns that into 202 or 200."""

    body: dict
    started: bool


class ModelManager(Releases, IdleModels):
    """Publish and manage models; every method assumes the caller is already authorized."""

    def __init__(
        self,
        *,
        store,
        artifacts,
        deployer,
        data_dir,
        public_url,
        default_workers,
        max_workers,
        log,
        max_keys=100,
        max_aliases=10,
        bundle_secret=None,
        system_users=None,
        inference_log=None,
        inference_log_default=None,
        inference_log_max_rows_per_minute=100_000,
        canary_check=None,
        shadower=None,
        idle_policy=None,
    ):
        self.store = store
        # multi-user mode: each owner's account may read their unpacked bundles, nobody else
        self.system_users = system_users
        self.artifacts = artifacts
        self.deployer = deployer
        self.models_dir = Path(data_dir, "models")
        self.public_url = public_url.rstrip("/")
        self.default_workers = default_workers
        self.max_workers = max_workers
        self.max_keys = max_keys
        self.max_aliases = max_aliases
        self.log = log
        self._locks = {}
        self._tasks = set()
        self.adopted = asyncio.Event()
        # the app derives the secret from its persistent one, so tokens held by running pods
        # stay valid across publisher restarts
        self.bundle_tokens = BundleTokens(bundle_secret)
        # where sampled requests are kept (inference_log.InferenceLogStore), and the sample a
        # new model gets unless its publish says
        self.inference_log = inference_log
        self.inference_log_default = inference_log_default
        # one model's log may not fill the platform's disk: rows taken per model and minute
        self.inference_log_max_rows_per_minute = inference_log_max_rows_per_minute
        self._logged_this_minute = {}  # model key -> (minute, rows)
        # how a running canary is judged (``watch_canaries``)
        self.canary_check = canary_check or CanaryCheck(log=log)
        # shadows: the compared answers, and the queue that sends requests to the shadows
        self.shadower = shadower or Shadower(ShadowLog(store.engine), log=log)
        self.shadow_log = self.shadower.store
        self._shadow_targets = {}  # shadow unit -> (when looked up, its predict URL)
        # when idle models sleep; the wakes under way and the recent failed ones, per unit
        self.idle_policy = idle_policy or IdlePolicy(log=log)
        self._wakes, self._wake_failures = {}, {}
        deployer.on_event = self._on_deployer_event
        deployer.bundle_token = self.bundle_tokens.token
        deployer.log_token = self.bundle_tokens.log_token

    # ------------------------------------------------------------ reading

    def find(self, owner, name):
        """The stored model ``owner/name``, or None."""
        return self.store.find_model(owner, name)

    def get(self, owner, name):
        """The stored model ``owner/name``; ``NotFound`` naming it if there is none."""
        return self.store.get_model(owner, name)

    def models(self, owner=None):
        """The API views of every model (of ``owner`` if given)."""
        return [self.view(m) for m in self.store.list_models(owner)]

    def all_models(self):
        """Every stored model (the caller filters what it may see)."""
        return self.store.list_models()

    def events(self, model, since=0):
        return [e.to_dict() for e in self.store.events(model, since=since)]

    def history(self, model):
        """Who changed what and when (``HISTORY_STEPS``), and which version served which alias
        when: a ``served`` interval per switch of an alias to another version (``until`` None
        while it still serves), oldest first."""
        changes = self.store.history(model)
        served, open_ = [], {}  # alias -> its interval still open
        for ev in changes:
            alias = ev.alias or DEFAULT_ALIAS
            current = open_.get(alias)
            if ev.step == ALIAS_DELETED and current is not None:
                current["until"] = isoformat(ev.time)
                del open_[alias]
            if ev.step != "switched":
                continue
            if current is not None and current["version"] == ev.version:
                continue  # the same version again (a scale): still the same interval
            if current is not None:
                current["until"] = isoformat(ev.time)
            open_[alias] = {
                "alias": alias,
                "version": ev.version,
                "since": isoformat(ev.time),
                "until": None,
            }
            served.append(open_[alias])
        return {
            "changes": [e.to_dict() for e in changes if e.step != "switched"],
            "served": served,
        }

    async def logs(self, model, tail, alias=None):
        """The last ``tail`` lines of the serving output of ``model``'s ``alias`` (default:
        production), as its deployer keeps it."""
        if alias not in (None, DEFAULT_ALIAS) and model.alias(alias) is None:
            raise NotFound(f"{model.key} has no alias {alias!r}", {"alias": alias})
        return await self.deployer.logs(self.ref(model).with_alias(alias), tail)

    def new_upload(self):
        """A spool file for a bundle upload (``ArtifactStore.new_upload``)."""
        return self.artifacts.new_upload()

    def bundle_file(self, model, version):
        """The stored ``tar.gz`` of one version of ``model``; ``NotFound`` if it has none."""
        stored = model.version(version)
        if stored is None:
            raise NotFound(f"{model.key} has no version {version!r}", {"version": version})
        return self.artifacts.path_for(stored.id)

    # ------------------------------------------------------------ views

    def ref(self, model):
        return ModelRef(model.owner, model.name)

    def units(self, model):
        """What runs for ``model``: its default alias's unit, then one per other alias."""
        ref = self.ref(model)
        return [ref, *(ref.with_alias(a.name) for a in model.aliases)]

    def view(self, model):
        """The API's ``Model`` object (``views.model_view``)."""
        return model_view(model, self.public_url, self.sleep_after(model))

    def bundle_dir(self, model, digest):
        return self.models_dir / self.ref(model).owner_dir / model.name / digest.split(":", 1)[1]

    def settings(self, model):
        """How ``model``'s owner asked it to be served (what a publish keeps or changes)."""
        return Serving(model.batching, model.resources, model.inference_log)

    def serving(self, model, alias=None, settings=None):
        """How the processes of ``model``'s unit ``alias`` run (``Deployer`` calls take it
        along): its ``settings`` (default: the model's), with production's sample raised to
        a running shadow's share (the publisher keeps the inference log's share of what it
        gets, ``log_inferences``), and no sample at all in the shadow's own processes."""
        settings = settings or self.settings(model)
        if alias == SHADOW:
            return replace(settings, inference_log=None)
        shadow = (model.shadow_percent or 0) / 100 if alias is None else 0
        shares = [s for s in (settings.inference_log, shadow) if s]
        return replace(settings, inference_log=max(shares) if shares else None)

    def _lock(self, owner, name):
        return self._locks.setdefault((owner, name), asyncio.Lock())

    # ------------------------------------------------------------ events

    def _record(self, model, version, step, message, level="info", actor=None, alias=None):
        ev = self.store.add_event(
            model, step, message, version=version, level=level, actor=actor, alias=alias
        )
        log = self.log.error if level == "error" else self.log.info
        unit = model.key + (f"@{alias}" if alias else "")
        log("%s %s %s: %s", unit, (version or "")[:19], step, message)
        return ev

    def _on_deployer_event(self, ref, version, step, message, level):
        model = self.store.find_model(ref.owner, ref.name)
        if model is None:
            return
        self._record(model, version, step, message, level, alias=ref.alias)
        if ref.alias:
            return  # ``status`` is the default alias's, the plain URL's
        # keep ``status`` saying whether the endpoint serves
        if step in ("restarted", "adopted"):
            model.status = "ready"
        elif step == "failed":
            model.status = "failed"
        self.store.commit()
        task = asyncio.ensure_future(self._sync_deployments(model))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_deployments(self, model):
        status = await self.deployer.status(self.ref(model))
        self.store.set_deployments(model, status["instances"])

    # ------------------------------------------------------------ publish

    async def publish(
        self,
        caller,
        owner,
        name,
        upload,
        *,
        workers,
        max_bundle_bytes,
        batching=UNCHANGED,
        resources=UNCHANGED,
        inference_log=UNCHANGED,
        sleep_after=UNCHANGED,
        alias=None,
    ):
        """Accept an uploaded bundle as a version of ``owner/name`` and start deploying it to
        ``alias`` (default: the default alias, the plain URL; another alias needs a model that
        serves a version already, so the plain URL always has one).

        Returns an ``Outcome``: started while deploying, not started if that version is
        already live (with the same settings). A bundle that does not load is refused here (400),
        before anything changes. ``batching`` (see ``check_batching``) is kept with the model
        for every later start; left out, the model keeps its own (off for a new one). So are
        ``resources`` (``{"cpu", "memory", "cpu_limit", "memory_limit"}``, Kubernetes
        quantities, see ``check_resources``): given, they replace the model's; what they leave
        out is the deployer's default. And ``inference_log`` (the fraction of requests kept,
        ``check_inference_log``; a new model that does not say gets ``inference_log_default``).
        ``sleep_after`` (``check_sleep_after``) is kept with the model too.
        """
        validate_name(name)
        alias = None if alias in (None, DEFAULT_ALIAS) else check_alias(alias)
        if alias is not None:
            existing = self.store.find_model(owner, name)
            if existing is None or existing.current_version is None:
                raise BadRequest(
                    f"{owner}/{name} has no {DEFAULT_ALIAS} version yet, which the plain URL "
                    f"serves: publish its first version without an alias, then to {alias!r}",
                    {"field": "alias"},
                )
        if workers is not None:
            check_replicas(workers, self.max_workers)
        if batching is not UNCHANGED:
            batching = check_batching(batching)
        if resources is not UNCHANGED:
            resources = check_resources(resources) or None
        if inference_log is not UNCHANGED:
            inference_log = check_inference_log(inference_log)
        if sleep_after is not UNCHANGED:
            sleep_after = check_sleep_after(sleep_after)
        received = utcnow()
        loop = asyncio.get_running_loop()
        ingested = await loop.run_in_executor(
            None,
            lambda: self.artifacts.ingest(upload.path, name=name, max_bytes=max_bundle_bytes),
        )
        model, placed = None, None
        ref = ModelRef(owner, name, alias)
        try:
            unpacked = utcnow()
            model = self.store.find_model(owner, name)
            if model is not None:
                stored = self.settings(model)
            else:
                stored = Serving(inference_log=self.inference_log_default or None)
            serving = Serving(
                stored.batching if batching is UNCHANGED else batching,
                stored.resources if resources is UNCHANGED else resources,
                stored.inference_log if inference_log is UNCHANGED else inference_log,
            )
            known = model is not None and model.version(ingested.digest) is not None
            if known and serving == stored and self._serves(model, alias, ingested.digest):
                ingested.discard()
                return Outcome({"model": self.view(model), "version": ingested.digest}, False)
            # the bundle goes where it is served from, and is started there (without traffic)
            # before the version is accepted: a model that does not load is refused here
            bundle_dir = place(ingested.bundle_dir, self.bundle_dir(ref, ingested.digest))
            placed = None if known else bundle_dir
            await self._give_to_owner(ref, bundle_dir)
            replicas = workers or (model.replicas if model is not None else self.default_workers)
            unit_serving = serving if model is None else self.serving(model, alias, serving)
            await self.deployer.prepare(
                ref, ingested.digest, str(bundle_dir), replicas=replicas, serving=unit_serving
            )
        except BaseException as exc:
            ingested.discard()
            if placed is not None:
                shutil.rmtree(placed, ignore_errors=True)
            if isinstance(exc, MlhubError) and model is not None:
                self._record(model, ingested.digest, "failed", exc.message, "error")
            raise
        async with self._lock(owner, name):
            model = self.store.find_model(owner, name)
            if model is None:
                model = self.store.create_model(owner, name, workers or self.default_workers)
            elif workers is not None:
                model.replicas = workers
            model.batching = serving.batching
            model.resources = serving.resources
            model.inference_log = serving.inference_log
            if sleep_after is not UNCHANGED:
                model.sleep_after = sleep_after
            artifact = self.artifacts.commit(ingested)
            self.store.add_version(
                model, ingested.digest, ingested.size, ingested.manifest, artifact, caller.name
            )
            first = self.store.add_event(
                model,
                "received",
                f"received {ingested.size} bytes from {caller.name}",
                version=ingested.digest,
                time=received,
                actor=caller.name,
            )
            manifest = ingested.manifest
            self.store.add_event(
                model,
                "unpacked",
                f"{manifest['runtime']}/{manifest['flavor']} bundle {ingested.digest[:19]} "
                "unpacked; it loads and predicts its example",
                version=ingested.digest,
                time=unpacked,
            )
            if model.current_version is None:
                model.status = "deploying"
            if alias is not None:
                self.store.add_alias(model, alias)
            self.store.commit()
        digest = ingested.digest

        self._deploy_version(model, digest, bundle_dir, alias)
        body = {"model": self.view(model), "version": ingested.digest, "event_id": first.id}
        return Outcome(body, True)

    def _serves(self, model, alias, digest):
        """Whether ``alias`` of ``model`` (None: the default) serves ``digest`` already."""
        if alias is None:
            return model.current_version == digest and model.status not in ("failed", "sleeping")
        found = model.alias(alias)
        return found is not None and found.version == digest and not found.asleep

    def _background(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _deploy_version(self, model, digest, bundle_dir, alias=None):
        """Make ``digest`` (unpacked at ``bundle_dir``) live in the background at ``alias``
        (None: the default), with the model's replicas and serving settings as they are when
        it runs (publish, configure, an alias move)."""

        async def operation(ref, progress):
            await self.deployer.deploy(
                ref,
                digest,
                str(bundle_dir),
                replicas=model.replicas,
                progress=progress,
                serving=self.serving(model, ref.alias),
            )

        self._background(self._deploy(model, digest, operation, alias))

    async def _deploy(self, model, digest, operation, alias=None):
        """Run ``operation(ref, progress)`` (a deployer call on the unit of ``alias``, None:
        the default one) and record how it ended."""
        await self.adopted.wait()
        ref = self.ref(model).with_alias(alias)

        def progress(step, message):
            self._record(model, digest, step, message, alias=alias)
            if step != "switched":
                return
            if alias is None:
                model.current_version = digest
                model.version(digest).live_since = utcnow()
                model.status = "ready"
            elif (pointer := model.alias(alias)) is not None:
                pointer.version, pointer.since, pointer.asleep = digest, utcnow(), None
            self.store.commit()

        async with self._lock(model.owner, model.name):
            if self.store.find_model(model.owner, model.name) is None:
                return  # deleted while waiting
            if alias is not None and model.alias(alias) is None:
                return  # the alias was removed while waiting
            try:
                await self.deployer.set_access(ref, self._access(model))
                await operation(ref, progress)
            except Exception as exc:
                message = exc.message if isinstance(exc, MlhubError) else f"internal error: {exc}"
                if not isinstance(exc, MlhubError):
                    self.log.exception("deploying %s %s failed", ref.unit, digest)
                self._record(model, digest, "failed", message, "error", alias=alias)
                if alias is None:
                    model.status = "ready" if model.current_version else "failed"
                elif alias in (CANARY, SHADOW) or model.alias(alias).version is None:
                    # a new alias that never served, a canary that never split, a shadow that
                    # never got requests: nothing of it is left
                    await self.deployer.delete(ref)
                    self.store.remove_alias(model, alias)
                    if alias == CANARY:
                        model.canary_percent = None
                    if alias == SHADOW:
                        model.shadow_percent = None
                        await self._push_access(model)
                self.store.commit()
            else:
                if alias is None:
                    model.status = "ready"
                self._record(
                    model,
                    digest,
                    "done",
                    f"{digest[:19]} is live at {ref.url_prefix}/",
                    alias=alias,
                )
            await self._sync_deployments(model)

    # ------------------------------------------------------------ rollback

    def resolve_version(self, model, version):
        """The stored version ``version`` names: its id, an unambiguous start of it (``sha256:``
        and at least 8 hex digits, or the hex alone), ``previous`` (the one the default alias
        served before), or an alias (the version it points to: ``staging`` promotes what
        staging serves). ``NotFound`` listing what there is, else."""
        if version == "previous":
            target = self.store.previous_version(model)
            if target is None:
                raise NotFound(
                    f"{model.key} has no previous version to roll back to", {"version": version}
                )
            return target
        if version == DEFAULT_ALIAS and model.current_version:
            return model.version(model.current_version)
        pointer = model.alias(version)
        if pointer is not None and pointer.version:
            return model.version(pointer.version)
        if (target := model.version(version)) is not None:
            return target
        hex_part = version.removeprefix("sha256:")
        if len(hex_part) >= 8:
            found = [v for v in model.versions if v.id.removeprefix("sha256:").startswith(hex_part)]
            if len(found) == 1:
                return found[0]
        known = ", ".join(v.id[:19] for v in model.versions)
        aliases = ", ".join([DEFAULT_ALIAS, *(a.name for a in model.aliases)])
        raise NotFound(
            f"{model.key} has no version or alias {version!r} (versions: {known}; "
            f"aliases: {aliases})",
            {"version": version},
        )

    async def rollback(self, caller, model, version):
        """Make ``version`` (``resolve_version``) the default alias's again."""
        return await self._move_default(
            caller, model, self.resolve_version(model, version), "rollback"
        )

    async def _move_default(self, caller, model, target, what, then=None):
        """Move the default alias to ``target`` in the background (``what`` names the
        operation in its event), then run ``then()`` (under the same lock) if given."""
        digest = target.id
        bundle_dir = await self._ensure_bundle_dir(model, digest)
        first = self._record(
            model,
            digest,
            REQUESTED,
            f"{what} to {digest[:19]} requested by {caller.name}",
            actor=caller.name,
        )

        async def operation(ref, progress):
            await self.deployer.rollback(
                ref, digest, str(bundle_dir), progress, serving=self.serving(model)
            )
            if then is not None:
                await then()

        self._background(self._deploy(model, digest, operation))
        return {"model": self.view(model), "version": digest, "event_id": first.id}

    # ------------------------------------------------------------ scale, configure

    async def scale(self, caller, model, replicas):
        """Serve the live version with ``replicas`` replicas; a scale to the number it is
        serving with already changes nothing (``event_id`` None)."""
        check_replicas(replicas, self.max_workers)
        if model.current_version is None:
            raise BadRequest(f"{model.key} has no live version to scale", {"model": model.key})
        digest = model.current_version
        if replicas == model.replicas and model.status == "ready":
            return {"model": self.view(model), "version": digest, "event_id": None}
        self.deployer.check_replicas(model.version(digest).manifest, replicas)
        first = self._record(
            model,
            digest,
            REQUESTED,
            f"scale to {replicas} replica(s) requested by {caller.name}",
            actor=caller.name,
        )
        model.replicas = replicas
        self.store.commit()

        async def operation(ref, progress):
            await self.deployer.scale(ref, replicas, progress)

        self._background(self._deploy(model, digest, operation))
        return {"model": self.view(model), "version": digest, "event_id": first.id}

    async def configure(self, caller, model, *, inference_log=UNCHANGED, sleep_after=UNCHANGED):
        """Change how the model is served: its inference log's sample
        (``check_inference_log``: a rolling restart of the live version with the new setting,
        kept for later versions) and when it sleeps (``check_sleep_after``: recorded, no
        restart). The same settings again change nothing (``event_id`` None)."""
        if sleep_after is not UNCHANGED:
            sleep_after = check_sleep_after(sleep_after)
            if sleep_after != model.sleep_after:
                model.sleep_after = sleep_after
                said = (
                    "the platform's default"
                    if sleep_after is None
                    else (
                        "never" if sleep_after == 0 else f"after {sleep_after} s without a request"
                    )
                )
                self._record(
                    model,
                    model.current_version,
                    SLEEP_SETTING,
                    f"sleeps {said}, set by {caller.name}",
                    actor=caller.name,
                )
                self.store.commit()
        if inference_log is UNCHANGED:
            return {"model": self.view(model), "version": model.current_version, "event_id": None}
        sample = check_inference_log(inference_log)
        if model.current_version is None:
            raise BadRequest(f"{model.key} has no live version", {"model": model.key})
        digest = model.current_version
        if sample == model.inference_log and model.status in ("ready", "sleeping"):
            return {"model": self.view(model), "version": digest, "event_id": None}
        said = f"keep {sample * 100:g}% of the requests" if sample else "off"
        first = self._record(
            model,
            digest,
            REQUESTED,
            f"inference log {said}, requested by {caller.name}",
            actor=caller.name,
        )
        model.inference_log = sample
        self.store.commit()
        bundle_dir = await self._ensure_bundle_dir(model, digest)

        self._deploy_version(model, digest, bundle_dir)
        return {"model": self.view(model), "version": digest, "event_id": first.id}

    async def _ensure_bundle_dir(self, model, digest):
        """The unpacked bundle of a stored version, unpacked again from its artifact if needed."""
        path = self.bundle_dir(model, digest)
        if not path.is_dir():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.artifacts.extract, digest, path)
        await self._give_to_owner(self.ref(model), path)
        return path

    async def _give_to_owner(self, ref, bundle_dir):
        """Multi-user mode: the owner's account (its serving processes) may read the unpacked
        bundle and nobody else may (``mlhub.datadir.grant_owner``)."""
        if self.system_users is None:
            return
        account = await asyncio.to_thread(self.system_users.ensure, ref.owner)
        await asyncio.to_thread(grant_owner, self.models_dir, bundle_dir, account)

    # ------------------------------------------------------------ delete

    async def delete(self, model):
        async with self._lock(model.owner, model.name):
            if model.canary_percent is not None:
                await self.deployer.unsplit(self.ref(model))
            # the default alias last: its unit takes the model's files with it
            for unit in reversed(self.units(model)):
                await self.deployer.delete(unit)
            shutil.rmtree(self.models_dir / self.ref(model).owner_dir / model.name, True)
            self.store.delete_model(model)
            if self.inference_log is not None:
                await asyncio.to_thread(self.inference_log.drop, self.ref(model))
            await asyncio.to_thread(self.shadow_log.drop, self.ref(model))
            removed = self.artifacts.remove_unreferenced(self.store.referenced_artifacts())
        self._locks.pop((model.owner, model.name), None)
        self.log.info("deleted %s (%d artifact(s) no longer referenced)", model.key, removed)

    # ------------------------------------------------------------ trying it

    async def call_model(self, model, method, path, token, body=None, timeout=60, wake=False):
        """Call the model's ``path`` as a caller holding ``token`` (``model_calls.call``). A
        sleeping model is woken first with ``wake`` (a request someone sent), else answers
        ``NotReady`` (the page's charts must not keep idle models awake)."""
        if self.asleep(model):
            if not wake:
                raise NotReady(f"{model.key} is asleep (idle): its next request wakes it")
            await self.wake_unit(model)
        return await call(self.deployer.routes, self.ref(model), method, path, token, body, timeout)

    # ------------------------------------------------------------ inference log and drift

    async def log_inferences(self, model, batch, alias=None):
        """Take a batch a serving process of ``model``'s unit ``alias`` sent (``rows_from_batch``):
        the inference log keeps its share of the requests, a running shadow gets its share of
        production's (``Shadower``). A version the model does not have is refused (a pod of a
        deleted-and-republished model)."""
        version = batch.get("version") if isinstance(batch, dict) else None
        if model.version(version) is None:
            raise BadRequest(f"{model.key} has no version {version!r}", {"field": "version"})
        rows = rows_from_batch(batch)
        sample = self.serving(model, alias).inference_log or 1.0
        if model.shadow_percent and alias is None and version == model.current_version:
            self._shadow(model, rows, model.shadow_percent / 100 / sample)
        if not model.inference_log:
            return 0
        share = model.inference_log / sample
        rows = [r for r in rows if share >= 1 or chosen(r["request"], share)]
        minute = int(time.time() // 60)
        since, taken = self._logged_this_minute.get(model.key, (minute, 0))
        taken = taken if since == minute else 0
        limit = self.inference_log_max_rows_per_minute
        if taken + len(rows) > limit:
            raise TooManyRequests(
                f"{model.key}'s inference log takes at most {limit} rows a minute "
                f"(PublisherApp.inference_log_max_rows_per_minute); these {len(rows)} were "
                "dropped: log a smaller share of the requests",
                {"limit": limit},
            )
        self._logged_this_minute[model.key] = (minute, taken + len(rows))
        await asyncio.to_thread(self.inference_log.write, self.ref(model), rows)
        return len(rows)

    async def inferences(self, model, *, since=None, until=None, version=None, limit=None):
        """``model``'s logged rows (``InferenceLogStore.read``)."""
        return await asyncio.to_thread(
            self.inference_log.read,
            self.ref(model),
            since=since,
            until=until,
            version=version,
            limit=limit or MAX_READ_ROWS,
        )

    async def drift(self, model, *, since=None, version=None, threshold=PSI_THRESHOLD):
        """The drift table (``mlhub.drift``) of the rows logged since ``since`` (default:
        ``DRIFT_WINDOW`` ago) against the parity sample of the version they were answered by
        (``version``, default the live one): what the notebook's model was published with."""
        since = since or utcnow() - DRIFT_WINDOW
        version = version or model.current_version
        if model.version(version) is None:
            raise NotFound(f"{model.key} has no version {version!r}", {"version": version})
        bundle_dir = await self._ensure_bundle_dir(model, version)
        parity = read_parity(bundle_dir, load_manifest(bundle_dir))
        reference = parity[0] if parity else []
        recent = await self.inferences(model, since=since, version=version)
        recent = [r["inputs"] for r in recent if r["status"] < 400 and r["inputs"] is not None]
        return {
            "version": version,
            "reference_rows": len(reference),
            "recent_rows": len(recent),
            "since": isoformat(since),
            "threshold": threshold,
            "note": weak_note(len(reference), len(recent)),
            "features": drift_table(reference, recent, threshold),
        }

    async def expire_inferences(self, every=3600.0):
        """Apply the inference log's retention now and then every ``every`` seconds."""
        while True:
            try:
                gone = await asyncio.to_thread(self.inference_log.expire_old)
                if gone:
                    self.log.info("inference log: %d expired row(s) deleted", gone)
                days = self.inference_log.retention_days
                if days:
                    before = utcnow() - datetime.timedelta(days=days)
                    await asyncio.to_thread(self.shadow_log.expire, before)
            except Exception:
                self.log.exception("inference log: expiring old rows failed")
            await asyncio.sleep(every)

    # ------------------------------------------------------------ access and keys

    async def share(self, caller, model, users=None, groups=None):
        """Let hub ``users`` and members of hub ``groups`` call the endpoint (each list given
        replaces the one it names; ``None`` keeps it)."""
        for field, names in (("users", users), ("groups", groups)):
            if names is not None and (
                not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
            ):
                raise BadRequest(f"{field} must be a list of names", {"field": field})
        if users is not None:
            model.shared_with = sorted(set(users) - {model.owner})
        if groups is not None:
            model.shared_groups = sorted(set(groups))
        self.store.commit()
        await self._push_access(model)
        users_text = ", ".join(model.shared_with or []) or "nobody"
        groups_text = ", ".join(model.shared_groups or []) or "none"
        message = f"shared with users {users_text} and groups {groups_text} by {caller.name}"
        self._record(model, None, SHARED, message, actor=caller.name)

    def _access(self, model):
        """``model``'s access list, with the publisher's shadow key while it has a shadow."""
        extra = [self.bundle_tokens.shadow_key(self.ref(model))] if model.shadow_percent else []
        return access_list(model, extra)

    async def _push_access(self, model):
        """Hand the access list to every unit of ``model`` (each alias's processes check it)."""
        access = self._access(model)
        for unit in self.units(model):
            await self.deployer.set_access(unit, access)

    async def create_key(self, caller, model, description):
        if not isinstance(description, str):
            raise BadRequest("description must be a string", {"field": "description"})
        if len(model.api_keys) >= self.max_keys:
            raise Conflict(
                f"{model.key} has {len(model.api_keys)} API keys, the most one model may have "
                "(PublisherApp.max_keys_per_model): revoke keys no one uses "
                f"(mlhub models keys delete {model.name} ID) before minting another",
                {"limit": self.max_keys},
            )
        key, key_hash = new_key()
        row = self.store.add_key(model, secrets.token_hex(8), key_hash, description)
        await self._push_access(model)
        message = f"API key {row.id} ({description or 'no description'}) created by {caller.name}"
        self._record(model, None, KEY_CREATED, message, actor=caller.name)
        return {**row.to_dict(), "key": key}

    async def delete_key(self, caller, model, key_id):
        self.store.delete_key(model, key_id)
        await self._push_access(model)
        message = f"API key {key_id} revoked by {caller.name}"
        self._record(model, None, KEY_REVOKED, message, actor=caller.name)

    # ------------------------------------------------------------ lifecycle

    async def adopt(self):
        """At start: hand the deployer what should be live, and close interrupted operations."""
        desired = []
        for model in self.store.list_models():
            last = self.store.last_event(model, (*IN_PROGRESS, "done", "failed"))
            if last is not None and last.step in IN_PROGRESS:
                self._record(
                    model,
                    last.version,
                    "failed",
                    "interrupted by a publisher restart; publish or roll back again",
                    "error",
                )
            asleep = {None} if model.status == "sleeping" else set()
            asleep |= {a.name for a in model.aliases if a.asleep}
            model.status = "ready" if model.current_version else "failed"
            if model.current_version:
                for alias in [a for a in model.aliases if a.version is None]:
                    self.store.remove_alias(model, alias.name)  # its first move was interrupted
                await self._push_access(model)
                pointers = [(None, model.current_version)]
                pointers += [(a.name, a.version) for a in model.aliases]
                for alias, version in pointers:
                    bundle_dir = await self._ensure_bundle_dir(model, version)
                    desired.append(
                        Desired(
                            self.ref(model).with_alias(alias),
                            version,
                            str(bundle_dir),
                            model.replicas,
                            self.serving(model, alias),
                            asleep=alias in asleep,
                        )
                    )
        self.store.commit()
        started = time.monotonic()
        try:
            await self.deployer.adopt(desired)
        except Exception:
            # still serve the API: the supervisor retries what did not start
            self.log.exception("adopting the running models failed")
        finally:
            self.adopted.set()
        for model in self.store.list_models():
            if model.canary_percent is not None and model.alias(CANARY) is not None:
                try:
                    await self.deployer.split(self.ref(model), model.canary_percent)
                except MlhubError as exc:
                    self._record(
                        model, None, "failed", f"canary not resumed: {exc.message}", "error"
                    )
        for model in self.store.list_models():
            # what the deployer found: a unit whose objects were gone was started again
            if model.current_version and self.asleep(model):
                model.status = "sleeping"
            for alias in model.aliases:
                alias.asleep = True if self.asleep(model, alias.name) else None
            await self._sync_deployments(model)
        self.store.commit()
        self.log.info("adopted %d model(s) in %.1f s", len(desired), time.monotonic() - started)

    async def shutdown(self):
        for task in list(self._tasks):
            task.cancel()
        await self.shadower.stop()
        await self.deployer.shutdown()
        for model in self.store.list_models():
            status = await self.deployer.status(self.ref(model))
            if model.current_version and status["state"] == "stopped" and not self.asleep(model):
                model.status = "stopped"  # the deployer stopped it with us
        self.store.commit()
