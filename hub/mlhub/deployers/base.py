"""The deployer contract: how the publisher starts, replaces and stops a model's serving processes.

The publisher owns the *desired* state (which version of which model is live, with how many
replicas) in its store; a deployer makes it real on one backend (local uWSGI processes, Kubernetes
Deployments) and reports what it did through ``progress(step, message)`` callbacks, which the
publisher records as events. Everything is async and may take seconds; a deployer raises
``mlhub.errors.DeployError`` (or ``InvalidBundle`` from ``check``) with a message that says why.

What a deployer does on its own (a crashed process restarted, a process re-adopted after a
publisher restart) is reported through ``on_event``.
"""

import asyncio
import json
import os
import urllib.parse
from dataclasses import dataclass

from traitlets import Callable, Dict, Float, Instance, Unicode, default
from traitlets.config import LoggingConfigurable

from mlhub.deployers.canary_front import CanaryFront
from mlhub.deployers.routes import ProxyRoutes
from mlhub.errors import DeployError
from mlhub.steps import CANARY, DEFAULT_ALIAS


def load_failure(exc):
    """Why a serving process's model does not load, from its ``/readyz`` answer (a tornado
    ``HTTPClientError``): both runtimes answer 503 ``not_ready`` with ``detail.reason`` once the
    load failed. None for anything else, including a runtime that is still starting (its
    front answers 503 with no reason): that is waited for, not refused."""
    if exc.code != 503 or exc.response is None:
        return None
    try:
        detail = json.loads(exc.response.body).get("detail") or {}
    except (ValueError, AttributeError):
        return None
    return detail.get("reason") if isinstance(detail, dict) else None


@dataclass(frozen=True)
class ModelRef:
    """Names what a deployer runs: a published model, ``/models/<owner>/<name>``, or one of its
    aliases, ``/models/<owner>/<name>@<alias>`` (``alias`` None: the default alias, which the
    plain URL serves and ``@production`` names too).

    Each alias is a unit of its own (its own processes or Deployment, moved by the same
    readiness-gated ``deploy``); what belongs to the model (``key``, its access list, its
    bundle and log tokens) is shared by all of them. Every unit's runtime strips the model's
    prefix with any ``@alias`` after it (``model_prefix``), so any unit answers any of the
    model's URLs."""

    owner: str
    name: str
    alias: str | None = None

    @property
    def key(self):
        """``owner/name``: the model, whichever alias."""
        return f"{self.owner}/{self.name}"

    @property
    def unit(self):
        """``owner/name`` or ``owner/name@alias``: this unit, unique among all a deployer runs."""
        return self.key + (f"@{self.alias}" if self.alias else "")

    def with_alias(self, alias):
        """The unit of ``alias`` (the default one for None or ``DEFAULT_ALIAS``)."""
        return ModelRef(self.owner, self.name, None if alias == DEFAULT_ALIAS else alias)

    @property
    def model_prefix(self):
        """The model's public path prefix, escaped as JupyterHub escapes user names in URLs:
        what its serving runtimes strip (with an ``@alias`` after it)."""
        return f"/models/{urllib.parse.quote(self.owner, safe='@~')}/{self.name}"

    @property
    def url_prefix(self):
        """This unit's public path prefix."""
        return self.model_prefix + (f"@{self.alias}" if self.alias else "")

    @property
    def route_prefixes(self):
        """The proxy routes that lead to this unit: the default alias has the plain URL and
        ``@production``, another alias its own."""
        if self.alias:
            return [self.url_prefix]
        return [self.url_prefix, f"{self.url_prefix}@{DEFAULT_ALIAS}"]

    @property
    def owner_dir(self):
        """The owner as one safe path component (no '/', and never '.' or '..')."""
        return urllib.parse.quote(self.owner, safe="@+").replace(".", "%2E")

    @property
    def file_stem(self):
        """This unit's file name stem below ``owner_dir``: ``name`` or ``name@alias``."""
        return self.name + (f"@{self.alias}" if self.alias else "")


@dataclass(frozen=True)
class Serving:
    """How a model's serving processes run, as its owner published it: ``batching``
    (``{"max_size", "max_wait_ms"}`` or None: micro-batching of concurrent requests,
    ``mlhub.serving.batching``), ``resources`` (``{"requests": {...}, "limits": {...}}`` in
    Kubernetes quantities, only those the publish gave, or None) and ``inference_log`` (the
    fraction of requests the inference log keeps, ``mlhub.serving.inferencelog``; None: off).
    It travels with every call that starts processes (``prepare``, ``deploy``, ``adopt``); a
    backend applies ``env()`` to the processes it starts (with ``Deployer.inference_log_env``)
    and ``resources`` where it can."""

    batching: dict | None = None
    resources: dict | None = None
    inference_log: float | None = None

    def env(self):
        """The serving runtime's environment variables for these settings (the runtime's
        defaults, off, for what is not set)."""
        env = {}
        if self.batching:
            env.update(
                {
                    "MLHUB_BATCHING": "on",
                    "MLHUB_BATCH_MAX_SIZE": str(self.batching["max_size"]),
                    "MLHUB_BATCH_MAX_WAIT_MS": str(self.batching["max_wait_ms"]),
                }
            )
        if self.inference_log:
            env["MLHUB_INFERENCE_LOG"] = f"{self.inference_log:g}"
        return env


DEFAULT_SERVING = Serving()


@dataclass(frozen=True)
class Desired:
    """A model that should be live: what ``adopt`` reconciles against at publisher start."""

    model: ModelRef
    version: str
    bundle_dir: str
    replicas: int
    serving: Serving = DEFAULT_SERVING
    asleep: bool = False  # idle: nothing runs for it until ``wake`` (``sleep``)


class Deployer(LoggingConfigurable):
    """Base class. Subclasses implement every ``async`` method below.

    ``progress`` callbacks take ``(step, message)``; a deploy reports, in order, ``starting``,
    ``ready``, ``switched`` (new requests reach the new version) and ``drained`` (the old one
    is gone). The caller records ``done`` or ``failed``.

    Every backend routes ``/models/...`` through the hub's proxy (``routes``), and its serving
    processes ask the hub API who a token belongs to, so those settings are here.
    """

    hub_api_url = Unicode(
        help="""Hub API the serving processes ask who a hub token belongs to. Default:
        ``$JUPYTERHUB_API_URL`` (it must be reachable from where they run: pods, in Kubernetes
        mode).""",
    ).tag(config=True)

    @default("hub_api_url")
    def _default_hub_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    extra_env = Dict(
        help="""Extra environment of the serving processes, e.g. ``{"MLHUB_REQUEST_TIMEOUT":
        "60"}``. Default: none. (The publisher's own secrets, its tokens, are never passed
        on.)""",
    ).tag(config=True)

    drain_seconds = Float(
        5.0,
        help="""Seconds an old version keeps serving after the new one took over, so requests
        already in flight finish (default 5; set it above your slowest prediction). Locally the
        old process runs that long after the route switched; in Kubernetes a pod told to stop
        keeps serving that long (a ``preStop`` sleep) while the route or Service moves away.""",
    ).tag(config=True)

    route_check_interval = Float(
        10.0,
        help="""Seconds between checks that the proxy still has every model route (a restarted
        proxy loses them); missing ones are re-added (default 10).""",
    ).tag(config=True)

    publisher_url = Unicode(
        help="""The publisher as the serving processes reach it: pods fetch their bundle from
        ``<publisher_url>api/models/<user>/<name>/versions/<v>/bundle``, and a model with an
        inference log sends it to ``<publisher_url>api/models/<user>/<name>/inference-log``.
        Default: ``$JUPYTERHUB_SERVICE_URL`` + ``$JUPYTERHUB_SERVICE_PREFIX``, the address the
        hub reaches it at; set it when serving processes see it elsewhere.""",
    ).tag(config=True)

    @default("publisher_url")
    def _default_publisher_url(self):
        base = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8090").rstrip("/")
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/mlhub-publisher/")
        return base + "/" + prefix.strip("/") + "/"

    fallback_target = Unicode(
        help="""Where ``/models`` requests that match no live model go (the publisher, which
        answers 404 "no such model" or 503 "deploying" in JSON). Default:
        ``$JUPYTERHUB_SERVICE_URL``; empty = no fallback route.""",
    ).tag(config=True)

    @default("fallback_target")
    def _default_fallback_target(self):
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "")

    routes = Instance(ProxyRoutes)

    @default("routes")
    def _default_routes(self):
        return ProxyRoutes(parent=self)

    front = Instance(CanaryFront)

    @default("front")
    def _default_front(self):
        data = os.environ.get("MLHUB_DATA_DIR", "mlhub-data")
        return CanaryFront(parent=self, run_dir=os.path.abspath(os.path.join(data, "front")))

    on_event = Callable(
        None,
        allow_none=True,
        help="""Called as ``on_event(model, version, step, message, level)`` for what the
        deployer does on its own: ``restarting``/``restarted`` after a crash, ``adopted`` after a
        publisher restart, ``failed``. Set by the publisher, which records them as events.
        """,
    )

    bundle_token = Callable(
        None,
        allow_none=True,
        help="""Called as ``bundle_token(model)``: the token with which the model's serving
        processes may download its bundles from the publisher (``GET .../versions/<v>/bundle``).
        Set by the publisher; used by deployers whose serving processes run elsewhere.
        """,
    )

    log_token = Callable(
        None,
        allow_none=True,
        help="""Called as ``log_token(model)``: the token with which the model's serving
        processes send its inference log to the publisher (``POST .../inference-log``), and
        nothing else. Set by the publisher.
        """,
    )

    def model_api_url(self, model, *path):
        """``<publisher_url>api/models/<owner>/<name>/<path...>``, each part URL-quoted."""
        parts = [model.owner, model.name, *path]
        return (
            self.publisher_url
            + "api/models/"
            + "/".join(urllib.parse.quote(p, safe="") for p in parts)
        )

    def inference_log_env(self, model, serving):
        """Where a serving process of ``model`` sends its inference log, when ``serving`` has
        one: ``MLHUB_INFERENCE_LOG_URL`` (its token, ``MLHUB_INFERENCE_LOG_TOKEN``, each
        backend passes its own way). Empty when the log is off."""
        if not serving.inference_log:
            return {}
        url = self.model_api_url(model, "inference-log")
        # which unit sent a batch (its URL says): a shadow takes production's requests alone
        if model.alias:
            url += "?" + urllib.parse.urlencode({"alias": model.alias})
        return {"MLHUB_INFERENCE_LOG_URL": url}

    def emit(self, model, version, step, message, level="info"):
        """Report an event: to ``on_event`` (which records and logs it), else to the log."""
        if self.on_event is not None:
            self.on_event(model, version, step, message, level)
            return
        log = self.log.error if level == "error" else self.log.info
        log("%s %s %s: %s", model.key, (version or "")[:19], step, message)

    # ------------------------------------------------------------ route keeping (shared)

    async def add_fallback_route(self):
        """Point ``/models`` at ``fallback_target`` (if any); a proxy that refuses is only a
        warning, the next ``lost_routes`` adds it again."""
        if not self.fallback_target:
            return
        try:
            await self.routes.add("/models", self.fallback_target)
        except DeployError as exc:
            self.log.warning("could not add the /models fallback route: %s", exc)

    async def lost_routes(self, expected):
        """The units of ``expected`` (``{ModelRef: target}``) whose proxy routes are missing or
        point elsewhere (a proxy restarted by the hub comes back without them), after putting
        the fallback route back if it went too. The caller re-adds each its own way."""
        routes = await self.routes.get_all()
        if self.fallback_target and "/models" not in routes:
            await self.routes.add("/models", self.fallback_target)
        lost = []
        for model, target in expected.items():
            target = self.front.routed_target(model, target)
            for prefix in model.route_prefixes:
                route = routes.get(prefix)
                if route is None or route.get("target") != target:
                    self.log.warning("re-adding the proxy route of %s", model.unit)
                    lost.append(model)
                    break
        return lost

    async def add_routes(self, model, target, **data):
        """Point every route of ``model`` (``ModelRef.route_prefixes``) at ``target``; while
        the model has a canary, its default unit's routes go to the canary front, which sends
        its share to ``target``."""
        await self.front.set_target(model, target)
        target = self.front.routed_target(model, target)
        await self._set_routes(model, target, **data)

    async def _set_routes(self, model, target, **data):
        for prefix in model.route_prefixes:
            await self.routes.add(
                prefix, target, owner=model.owner, model=model.name, alias=model.alias, **data
            )

    async def delete_routes(self, model):
        """Take every route of ``model`` away."""
        for prefix in model.route_prefixes:
            await self.routes.delete(prefix)

    # ------------------------------------------------------------ canary (shared)

    async def split(self, model, percent):
        """Send ``percent`` of the default unit ``model``'s requests to its canary unit (which
        serves already): both their routes' targets go to the canary front, the default unit's
        routes to the front. Called again, it changes the share."""
        routes = await self.routes.get_all()
        canary = model.with_alias(CANARY)
        stable = self.front.stable_target(model) or (routes.get(model.url_prefix) or {}).get(
            "target"
        )
        if stable == self.front.url:  # a route a publisher before this one left: not a unit's
            stable = None
        to = (routes.get(canary.url_prefix) or {}).get("target")
        if not stable or not to:
            raise DeployError(
                f"{model.key} cannot split its traffic: its "
                f"{'production' if not stable else 'canary'} version has no route (not serving)"
            )
        await self.front.put(model, stable, to, percent)
        await self._set_routes(model, self.front.url, split=True)

    async def unsplit(self, model):
        """Send all of ``model``'s requests to its default unit again (after ``drain_seconds``
        the front lets go of the canary's requests still in flight)."""
        stable = self.front.stable_target(model)
        if stable is None:
            return
        self.front.end(model)  # a route check from now on puts production's target back too
        await self._set_routes(model, stable)
        await asyncio.sleep(self.drain_seconds)
        await self.front.drop(model)

    # ------------------------------------------------------------ the contract

    async def check(self, manifest, bundle_dir):
        """Verify the bundle loads in this backend's runtime; raise ``InvalidBundle`` if not."""
        raise NotImplementedError

    async def prepare(self, model, version, bundle_dir, *, replicas, serving=DEFAULT_SERVING):
        """Called before the publisher accepts an uploaded version (``bundle_dir`` is where it
        stays): raise ``InvalidBundle`` if it will not serve (``BadRequest`` if ``serving``
        cannot be applied); nothing changes for the live version. A backend may start the
        version here, without traffic, so that the next ``deploy`` of it with the same
        ``serving`` only switches over. Default: ``check``."""
        from mlhub.bundle import load_manifest

        await self.check(load_manifest(bundle_dir), bundle_dir)

    def check_replicas(self, manifest, replicas):
        """Raise ``BadRequest`` saying why if this backend cannot serve a version with
        ``manifest`` by ``replicas`` replicas. The publisher asks before it records a scale,
        so a count that cannot be served is refused, never reported while fewer serve.
        Default: any count."""

    async def set_access(self, model, access):
        """Publish who may call the endpoint: ``{"users": [...], "groups": [...],
        "key_hashes": [...]}`` (sha256 hex of each API key). Called before the first deploy and
        whenever it changes; serving processes pick changes up without a restart."""
        raise NotImplementedError

    async def deploy(
        self, model, version, bundle_dir, *, replicas, progress, serving=DEFAULT_SERVING
    ):
        """Make ``version`` the live one, run as ``serving`` says, with a readiness-gated
        rolling update. Later restarts (a crash, a scale) keep that ``serving``."""
        raise NotImplementedError

    async def status(self, model):
        """``{"state": "running"|"stopped", "version", "replicas", "instances": [...]}``."""
        raise NotImplementedError

    async def scale(self, model, replicas, progress):
        """Serve the live version with ``replicas`` (a rolling replace, no failed request)."""
        raise NotImplementedError

    async def rollback(self, model, version, bundle_dir, progress, serving=DEFAULT_SERVING):
        """Make an older version live again: a deploy with the current replica count."""
        status = await self.status(model)
        await self.deploy(
            model,
            version,
            bundle_dir,
            replicas=status.get("replicas") or 1,
            progress=progress,
            serving=serving,
        )

    async def delete(self, model):
        """Stop every process of the model and remove its route and local state."""
        raise NotImplementedError

    async def sleep(self, model):
        """An idle unit releases what serves it (processes, pods) and its routes, so requests
        reach the ``/models`` fallback, which wakes it. What it serves is kept: ``wake``,
        ``deploy``, ``scale`` and ``rollback`` start it again. Nothing if it sleeps already."""
        raise NotImplementedError

    async def wake(self, model, progress):
        """Start a sleeping unit's version again as it served before it slept (its replicas and
        ``serving``) and route it once ready; raise ``DeployError`` saying why if it does not
        start (it stays asleep). Nothing if it is awake."""
        raise NotImplementedError

    def asleep(self, model):
        """Whether the unit sleeps (``sleep``, or ``Desired.asleep`` at ``adopt``)."""
        raise NotImplementedError

    async def logs(self, model, tail):
        """The last ``tail`` lines the model's serving processes wrote."""
        raise NotImplementedError

    async def adopt(self, desired):
        """At publisher start: keep what runs as desired, restart the rest, stop strays.

        ``desired`` is a list of ``Desired``. Afterwards the deployer supervises what it runs.
        """
        raise NotImplementedError

    async def shutdown(self):
        """At publisher exit: stop supervising (and, if the backend says so, serving)."""
