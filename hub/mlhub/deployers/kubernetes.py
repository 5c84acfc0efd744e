"""The Kubernetes mode's deployer: a Deployment, Service, Secret, PDB (and HPA) per model.

Objects come from the pure builders in ``kube_objects``; this module is the bridge from settings
(traits) to those builders and the cluster. What it relies on:

- **Shared watches, no per-model polling.** One watch on the models namespace's Deployments and
  one on its pods (label ``app.kubernetes.io/component=mlhub-model``) keep a local cache; every
  change wakes the operations waiting on it (a rollout's progress) and re-checks the model's
  proxy route. A broken watch is listed again with backoff.
- **Rolling updates by Kubernetes.** A new version is a new pod template (``maxUnavailable: 0``,
  readiness on ``/readyz``): old pods serve until new ones are ready. A version that never gets
  ready (it does not load, its image is missing, the bundle cannot be fetched) fails the deploy
  with the pod's reason and log, and the previous template is put back, so the old version
  keeps serving.
- **Routing through the hub's proxy.** ``/models/<user>/<name>`` points at the model's Service
  (``route_target = "service"``, for clusters with kube-proxy) or at one ready pod of the live
  version (``"pod"``, for clusters whose ClusterIPs do not route, like the test cluster); the
  pod target moves to another ready pod as soon as its pod stops being ready or starts
  terminating (pods keep serving ``drain_seconds`` after they are told to stop).
- **Re-adoption.** Everything is labelled and annotated with its owner and model, so a restarted
  publisher finds what runs (``adopt``), keeps what matches the store, deploys what is missing
  and deletes what nobody published.

The API calls (retries, errors by status) are ``kube_api.KubeClient``'s, the shared watches
``kube_reflector.Reflector``'s, what a watched pod or Deployment says ``kube_pods``' (pure), the
proxy routes ``kube_routing.ModelRoutes``', the access push to running pods ``kube_access``'.
This module decides what to do with them: the settings, the rollout with its diagnosis and undo,
and the deployer contract. It is longer than most modules because each operation waits on the
shared caches under the model's lock and marks the model busy (so pod events during it are not
taken for a crash); those must stay together.
"""

import asyncio
import datetime
import json
import os
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, default

from mlhub.bundle import load_manifest
from mlhub.deployers import kube_objects as objects
from mlhub.deployers import serving_log
from mlhub.deployers.base import DEFAULT_SERVING, Deployer, load_failure
from mlhub.deployers.kube_access import push_access
from mlhub.deployers.kube_api import ApiException, KubeClient
from mlhub.deployers.kube_pods import (
    pod_state,
    ready,
    rolled_out,
    rollout_failure,
    serving_pods,
    started,
    template_version,
    terminating,
    version_of,
)
from mlhub.deployers.kube_reflector import Reflector
from mlhub.deployers.kube_routing import ModelRoutes
from mlhub.errors import DeployError, InvalidBundle
from mlhub.resources import container_resources

_SELECTOR = f"app.kubernetes.io/component={objects.COMPONENT}"


def isoformat_now():
    """When a model fell asleep, for its Deployment's annotation."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class KubernetesDeployer(Deployer):
    """Serve models as Kubernetes Deployments in one namespace."""

    namespace = Unicode(
        help="""Namespace the models' objects are created in (it must exist; the publisher's
        service account needs rights there only). Default: ``$MLHUB_MODELS_NAMESPACE``, else
        ``mlhub-models``.""",
    ).tag(config=True)

    @default("namespace")
    def _default_namespace(self):
        return os.environ.get("MLHUB_MODELS_NAMESPACE", "mlhub-models")

    kubeconfig = Unicode(
        help="""Kubeconfig file to reach the cluster with. Default: ``$KUBECONFIG``; if that is
        unset too, the in-cluster service account (the publisher running in a pod).""",
    ).tag(config=True)

    @default("kubeconfig")
    def _default_kubeconfig(self):
        return os.environ.get("KUBECONFIG", "")

    images = Dict(
        {
            "python": "mlhub/serving-python:latest",
            "r": "mlhub/serving-r:latest",
            "mlflow": "mlhub/serving-mlflow:latest",
        },
        help="""Serving image per bundle runtime. Default ``{"python":
        "mlhub/serving-python:latest", "r": "mlhub/serving-r:latest", "mlflow":
        "mlhub/serving-mlflow:latest"}`` (built by ``mlhub images build serving-python
        serving-r serving-mlflow``). ``mlflow`` serves the MLflow models mlhub runs whole
        through ``mlflow.pyfunc`` (``serialization: mlflow``: custom ``python_model``, xgboost,
        lightgbm); without that key they get the ``python`` image, which must then have MLflow.
        A bundle whose runtime has no image is refused at publish time.""",
    ).tag(config=True)

    serving_command = List(
        help="""Command of the serving container; it must serve ``$MLHUB_BUNDLE`` on
        ``$MLHUB_PORT`` (8080) with ``$MLHUB_WORKERS`` workers under ``$MLHUB_URL_PREFIX``.
        Default: empty, the image's own entrypoint (the standard serving images do exactly
        that). Example: ``["python3", "-m", "mlhub.serving", "--host", "0.0.0.0"]``.""",
    ).tag(config=True)

    image_pull_policy = Enum(
        ["IfNotPresent", "Always", "Never"],
        "IfNotPresent",
        help="""``imagePullPolicy`` of the serving pods. Default ``IfNotPresent``; ``Never``
        for images loaded straight into the node's container engine.""",
    ).tag(config=True)

    workers_per_pod = Integer(
        2, help="Serving worker processes in each pod (``MLHUB_WORKERS``). Default 2."
    ).tag(config=True)

    resources = Dict(
        {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        help="""``resources`` of each serving container (requests and limits) for what a
        publish does not give (``?cpu=``, ``memory``, ``cpu_limit``, ``memory_limit``). Default:
        requests 100m CPU and 256Mi, limit 2Gi memory. The CPU request is what the HPA's
        utilisation target is a percentage of.""",
    ).tag(config=True)

    route_target = Enum(
        ["service", "pod"],
        "service",
        help="""What the proxy route ``/models/<user>/<name>`` points at: ``service`` (the
        model's Service ClusterIP; clusters with kube-proxy, the default) or ``pod`` (one
        ready pod's IP, moved when that pod stops; clusters whose ClusterIPs do not route from
        the proxy, such as the test cluster of ``scripts/kube-cluster``).""",
    ).tag(config=True)

    ready_timeout = Float(
        300.0,
        help="""Seconds a new version's pods may take to be ready (fetch, start, load) before
        the deploy fails and the previous version is put back (default 300).""",
    ).tag(config=True)

    termination_grace_seconds = Integer(
        30,
        help="""``terminationGracePeriodSeconds`` of serving pods: the drain plus the time the
        server gets to finish requests after SIGTERM before it is killed (default 30).""",
    ).tag(config=True)

    autoscaling = Bool(
        False,
        help="""Give each model a HorizontalPodAutoscaler between its replicas (the minimum)
        and ``max_replicas``, on CPU utilisation. Needs the cluster's metrics-server. Default
        False: the replica count is what the owner asked for.""",
    ).tag(config=True)

    max_replicas = Integer(
        8, help="Most pods the HPA may scale a model to (with ``autoscaling``). Default 8."
    ).tag(config=True)

    cpu_utilization = Integer(
        70, help="The HPA's CPU utilisation target, percent of the CPU request. Default 70."
    ).tag(config=True)

    api_retries = Integer(
        6,
        help="""Attempts of one Kubernetes API call that fails with a 5xx, a 409 or a broken
        connection; the wait doubles from 0.5 s between them (default 6).""",
    ).tag(config=True)

    delete_timeout = Float(
        10.0,
        help="""Seconds a delete waits for the model's pods to be gone before it answers
        (default 10). Its objects are deleted at once; pods still stopping after that finish
        their graceful stop and are removed by Kubernetes on its own.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kube = KubeClient(self.namespace, retries=self.api_retries, log=self.log)
        # the shared caches: the models' Deployments and pods, grouped by model id
        self.deployments = Reflector(
            self.kube,
            "apps/v1",
            "deployments",
            _SELECTOR,
            objects.LABEL_MODEL,
            self._on_deployments,
            self.log,
        )
        self.pods = Reflector(
            self.kube, "v1", "pods", _SELECTOR, objects.LABEL_MODEL, self._on_pods, self.log
        )
        self._models = {}  # model id -> ModelRef we manage
        self.routing = ModelRoutes(self)
        self._locks = {}
        self._busy = set()  # model ids with an operation running (their pod changes are ours)
        self._healing = set()  # model ids that lost a pod outside our operations
        self._asleep = {}  # model id -> replicas to wake with (its Deployment is at 0)
        self._load_errors = {}  # pod name -> why its model will not load (from its /readyz)
        self._changed = asyncio.Condition()
        self._tasks = []
        self._started = None

    # ------------------------------------------------------------ the cluster

    async def _start(self):
        """Connect, discover API versions and start the shared watches (once; again after a
        failed attempt)."""
        if self._started is None or (self._started.done() and self._started.exception()):
            self._started = asyncio.ensure_future(self._connect())
        await self._started

    async def _connect(self):
        # the settings as they are now: a deployer configured after it was made connects with
        # what it was given
        self.kube.namespace, self.kube.retries = self.namespace, self.api_retries
        await self.kube.connect(self.kubeconfig)
        await asyncio.gather(self.deployments.start(), self.pods.start())

    def _deployment_of(self, mid):
        """The model's Deployment from the watch, or None."""
        return next(iter(self.deployments.of(mid).values()), None)

    async def _on_deployments(self, changes):
        await self._notify()

    async def _on_pods(self, changes):
        touched = set()
        for kind, pod, previous in changes:
            mid = pod["metadata"]["labels"][objects.LABEL_MODEL]
            stopping = kind == "DELETED" or terminating(pod)
            if stopping and previous is not None and not terminating(previous):
                self._on_pod_stopping(mid, pod)
            if kind == "DELETED":
                self._load_errors.pop(pod["metadata"]["name"], None)
            touched.add(mid)
        await self._notify()
        for mid in touched & set(self._models):
            if self.route_target == "pod":
                await self.routing.follow_pods(self._models[mid])
            self._check_healed(mid)

    def _on_pod_stopping(self, mid, pod):
        """A pod of a live model is stopping outside our own operations (deleted, evicted):
        say so. Kubernetes starts a replacement; the route moves off it at this event."""
        model = self._models.get(mid)
        if model is None or mid in self._busy or self._deployment_of(mid) is None:
            return
        if mid in self._asleep:
            return  # the pods of a model put to sleep
        if version_of(pod) != self.routing.wanted.get(mid):
            return  # an old or failed version being cleaned up
        self._healing.add(mid)
        self.emit(
            model,
            version_of(pod),
            "restarting",
            f"pod {pod['metadata']['name']} is stopping; Kubernetes starts a replacement",
        )

    def _check_healed(self, mid):
        dep = self._deployment_of(mid)
        if mid not in self._healing or dep is None:
            return
        live = template_version(dep)
        ready = self._serving_pods(mid, live)
        if len(ready) >= dep["spec"].get("replicas", 1):
            self._healing.discard(mid)
            self.emit(self._models[mid], live, "restarted", f"{len(ready)} pod(s) ready again")

    async def _notify(self):
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, check, timeout, what):
        """Until ``check()`` returns something truthy (re-checked at every watch event)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                result = check()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(what)
                try:
                    await asyncio.wait_for(self._changed.wait(), min(left, 5))
                except TimeoutError:
                    pass

    def _serving_pods(self, mid, version=None):
        return serving_pods(self.pods.of(mid).values(), version)

    # ------------------------------------------------------------ building

    def _image(self, manifest):
        """The image of a bundle: its runtime's, or the ``mlflow`` one for a whole MLflow
        model."""
        runtime = manifest["runtime"]
        if manifest.get("serialization") == "mlflow" and "mlflow" in self.images:
            return self.images["mlflow"]
        if runtime not in self.images:
            raise InvalidBundle(
                f"runtime {runtime!r} cannot be served here (KubernetesDeployer.images has "
                f"{', '.join(sorted(self.images)) or 'no image'})",
                {"field": "runtime"},
            )
        return self.images[runtime]

    def _bundle_url(self, model, version):
        return self.model_api_url(model, "versions", version, "bundle")

    def _deployment(self, model, version, manifest, replicas, serving):
        runtime = manifest["runtime"]
        return objects.make_deployment(
            model,
            self.namespace,
            version=version,
            replicas=replicas,
            image=self._image(manifest),
            bundle_url=self._bundle_url(model, version),
            url_prefix=model.model_prefix,
            hub_api_url=self.hub_api_url,
            workers=self.workers_per_pod,
            command=self.serving_command if runtime == "python" else None,
            resources=container_resources(self.resources, serving.resources),
            env={**self.extra_env, **serving.env(), **self.inference_log_env(model, serving)},
            image_pull_policy=self.image_pull_policy,
            termination_grace_seconds=self.termination_grace_seconds,
            drain_seconds=self.drain_seconds,
            progress_deadline_seconds=max(int(self.ready_timeout), 60),
        )

    async def _apply_companions(self, model, replicas):
        """Service, PDB and (with ``autoscaling``) HPA, at the versions the cluster serves."""
        await self.kube.apply(objects.make_service(model, self.namespace))
        pdb = objects.pick_api_version(self.kube.served, ["policy/v1", "policy/v1beta1"])
        if pdb:
            await self.kube.apply(objects.make_pdb(model, self.namespace, api_version=pdb))
        if self.autoscaling:
            hpa = objects.pick_api_version(
                self.kube.served, ["autoscaling/v2", "autoscaling/v2beta2"]
            )
            if hpa is None:
                raise DeployError("the cluster serves neither autoscaling/v2 nor v2beta2")
            await self.kube.apply(
                objects.make_hpa(
                    model,
                    self.namespace,
                    min_replicas=replicas,
                    max_replicas=self.max_replicas,
                    cpu_utilization=self.cpu_utilization,
                    api_version=hpa,
                )
            )

    # ------------------------------------------------------------ rollout checks

    def _failure(self, mid, version):
        """A pod of ``version`` that cannot become ready, as ``(pod, reason)``."""
        pods = self.pods.of(mid).values()
        return rollout_failure(pods, self._deployment_of(mid), version, self._load_errors)

    async def _diagnose(self, model, mid, version, interval=2.0):
        """While a rollout waits: ask the running, not ready pods of the new version why. A
        serving runtime whose model failed to load stays up and says so in its ``/readyz``
        (503 with ``detail.reason``); that ends the wait at once instead of at
        ``ready_timeout``. Pods the publisher cannot reach are simply waited for."""
        http = AsyncHTTPClient()
        while True:
            await asyncio.sleep(interval)
            for pod in list(self.pods.of(mid).values()):
                ip, name = pod["status"].get("podIP"), pod["metadata"]["name"]
                if version_of(pod) != version or ready(pod) or not ip:
                    continue
                url = f"http://{ip}:{objects.SERVING_PORT}{model.model_prefix}/readyz"
                try:
                    await http.fetch(url, request_timeout=3)
                except HTTPClientError as exc:
                    reason = load_failure(exc)
                    if reason:
                        self._load_errors[name] = f"the new version cannot serve: {reason}"
                        await self._notify()
                except OSError:
                    pass

    def _rolled_out(self, mid, generation, replicas):
        return rolled_out(self._deployment_of(mid), generation, replicas)

    async def _pod_log(self, pod, tail=20):
        containers = [c["name"] for c in pod["spec"].get("initContainers", [])]
        containers += [c["name"] for c in pod["spec"]["containers"]]
        parts = []
        for container in containers:
            for previous in (True, False):
                try:
                    text = await self.kube.pod_log(
                        pod["metadata"]["name"], container, tail, previous=previous
                    )
                except (ApiException, DeployError):
                    continue
                if text and text.strip():
                    parts.append(f"[{container}]\n{text.rstrip()}")
                    break
        return "\n".join(parts)

    async def _fail(self, mid, version, what):
        found = self._failure(mid, version)
        pod, reason = found if found else (None, None)
        if pod is None:
            candidates = [p for p in self.pods.of(mid).values() if version_of(p) == version]
            pod = candidates[0] if candidates else None
        tail = await self._pod_log(pod) if pod else ""
        message = f"{what}: {reason}" if reason else what
        if tail:
            message += f"; last lines of pod {pod['metadata']['name']}:\n{tail}"
        return DeployError(message, {"log_tail": tail, "reason": reason})

    # ------------------------------------------------------------ the contract

    def _lock(self, model):
        return self._locks.setdefault(objects.model_id(model), asyncio.Lock())

    async def check(self, manifest, bundle_dir):
        # The bundle is loaded in its pod, never in the publisher: a bundle that does not
        # load fails its rollout (readiness) and the previous version keeps serving.
        self._image(manifest)

    async def prepare(self, model, version, bundle_dir, *, replicas, serving=DEFAULT_SERVING):
        """As the contract says; ``serving`` resources that cannot be combined with
        ``resources`` (a request above the limit) are refused here, before anything changes.
        The version starts in its pods at ``deploy`` (its readiness gates the rollout)."""
        container_resources(self.resources, serving.resources)
        await super().prepare(model, version, bundle_dir, replicas=replicas, serving=serving)

    async def set_access(self, model, access):
        await self._start()
        if self.bundle_token is None:
            raise DeployError("KubernetesDeployer needs the publisher's bundle tokens")
        secret = await self.kube.apply(
            objects.make_secret(
                model,
                self.namespace,
                access_json=json.dumps(access, sort_keys=True),
                bundle_token=self.bundle_token(model),
                log_token=self.log_token(model) if self.log_token is not None else None,
            )
        )
        await push_access(self.kube, model, secret, self.log)

    async def deploy(
        self, model, version, bundle_dir, *, replicas, progress, serving=DEFAULT_SERVING
    ):
        await self._start()
        mid = objects.model_id(model)
        manifest = load_manifest(bundle_dir)
        async with self._lock(model):
            self._models[mid] = model
            self._busy.add(mid)
            try:
                await self._rollout(model, mid, version, manifest, replicas, serving, progress)
            finally:
                self._busy.discard(mid)

    async def _rollout(self, model, mid, version, manifest, replicas, serving, progress):
        previous = self._deployment_of(mid)
        self.routing.wanted[mid] = version
        self._asleep.pop(mid, None)  # the Deployment applied below has its replicas
        await self._apply_companions(model, replicas)
        progress("starting", f"rolling out {version[:19]} to {replicas} pod(s)")
        applied = await self.kube.apply(
            self._deployment(model, version, manifest, replicas, serving)
        )
        generation = applied["metadata"].get("generation", 1)
        started = time.monotonic()

        def left():
            return self.ready_timeout - (time.monotonic() - started)

        diagnose = asyncio.ensure_future(self._diagnose(model, mid, version))
        try:
            first = await self._wait(
                lambda: self._serving_pods(mid, version) or self._failure(mid, version),
                left(),
                "a ready pod",
            )
            if isinstance(first, tuple):
                raise await self._fail(mid, version, f"{version[:19]} did not start")
            progress("ready", f"pod {first[0]['metadata']['name']} is ready")
            if self.route_target == "pod":
                await self.routing.follow_pods(self._models[mid])
                progress("switched", f"{model.url_prefix} now goes to {version[:19]}")
            await self._wait(
                lambda: self._rolled_out(mid, generation, replicas) or self._failure(mid, version),
                left(),
                "the rollout",
            )
            found = self._failure(mid, version)
            if found and not self._rolled_out(mid, generation, replicas):
                raise await self._fail(mid, version, f"{version[:19]} did not roll out")
        except TimeoutError:
            error = await self._fail(
                mid,
                version,
                f"{version[:19]} was not ready after {self.ready_timeout:g} s "
                "(KubernetesDeployer.ready_timeout)",
            )
            await self._undo(model, mid, previous)
            raise error from None
        except DeployError:
            await self._undo(model, mid, previous)
            raise
        finally:
            diagnose.cancel()
        if self.route_target == "service":
            await self.routing.ensure(model)
            progress("switched", f"{model.url_prefix} now goes to {version[:19]}")
        else:
            await self.routing.follow_pods(self._models[mid])
        try:
            await self._wait(
                lambda: not [p for p in self.pods.of(mid).values() if version_of(p) != version],
                self.termination_grace_seconds + 30,
                "old pods to stop",
            )
        except TimeoutError:
            self.log.warning("%s: old pods still stopping", model.key)
        progress("drained", "no pod of an earlier version is left")

    async def _undo(self, model, mid, previous):
        """Put the previous pod template back (the old version keeps serving), or remove the
        Deployment of a first version that never served."""
        name = objects.object_name(model)
        if previous is None:
            self.routing.wanted.pop(mid, None)
            await self.kube.delete("apps/v1", "deployments", name)
            return
        self.routing.wanted[mid] = template_version(previous)
        current = await self.kube.call("GET", self.kube.path("apps/v1", "deployments", name))
        current["spec"]["template"] = previous["spec"]["template"]
        current["spec"]["replicas"] = previous["spec"]["replicas"]
        current["metadata"]["annotations"] = previous["metadata"].get("annotations", {})
        try:
            await self.kube.call("PUT", self.kube.path("apps/v1", "deployments", name), current)
        except ApiException as exc:
            raise self.kube.error(f"restoring the previous version of {name}", exc) from exc

    async def status(self, model):
        mid = objects.model_id(model)
        dep = self._deployment_of(mid)
        pods = sorted(self.pods.of(mid).values(), key=lambda p: p["metadata"]["name"])
        live = template_version(dep) if dep else None
        instances = [
            {
                "version": version_of(p),
                "state": pod_state(p, live),
                "pid": None,
                "port": objects.SERVING_PORT,
                "workers": self.workers_per_pod,
                "started": started(p),
                "pod": p["metadata"]["name"],
                "ip": p["status"].get("podIP"),
            }
            for p in pods
        ]
        return {
            "state": "running" if self._serving_pods(mid, live) else "stopped",
            "version": live,
            "replicas": dep["spec"].get("replicas") if dep else None,
            "instances": instances,
        }

    async def scale(self, model, replicas, progress):
        await self._start()
        mid = objects.model_id(model)
        name = objects.object_name(model)
        async with self._lock(model):
            if self._deployment_of(mid) is None:
                raise DeployError(f"{model.key} has no live version to scale", {"model": model.key})
            self._busy.add(mid)
            self._asleep.pop(mid, None)
            try:
                progress("starting", f"scaling to {replicas} pod(s)")
                await self._apply_companions(model, replicas)
                patched = await self.kube.patch(
                    "apps/v1",
                    "deployments",
                    name,
                    {"spec": {"replicas": replicas}},
                    f"scaling {name}",
                )
                generation = patched["metadata"].get("generation", 1)
                try:
                    await self._wait(
                        lambda: self._rolled_out(mid, generation, replicas),
                        self.ready_timeout,
                        "the scale",
                    )
                except TimeoutError:
                    live = template_version(self._deployment_of(mid))
                    raise await self._fail(
                        mid, live, f"not {replicas} ready pod(s) after {self.ready_timeout:g} s"
                    ) from None
                progress("ready", f"{replicas} pod(s) ready")
            finally:
                self._busy.discard(mid)

    async def delete(self, model):
        await self._start()
        mid = objects.model_id(model)
        name = objects.object_name(model)
        async with self._lock(model):
            self._busy.add(mid)
            self._asleep.pop(mid, None)
            try:
                await self.routing.delete(model)
                self._models.pop(mid, None)
                await self._delete_objects(name)
                try:
                    await self._wait(
                        lambda: not self.pods.of(mid) and self._deployment_of(mid) is None,
                        self.delete_timeout,
                        "the model's pods to stop",
                    )
                except TimeoutError:
                    # the objects are gone: the rest is the pods' graceful stop
                    self.log.info("%s deleted; its pods are still stopping", model.key)
            finally:
                self._busy.discard(mid)

    async def sleep(self, model):
        await self._start()
        mid = objects.model_id(model)
        async with self._lock(model):
            dep = self._deployment_of(mid)
            if mid in self._asleep or dep is None:
                return
            await self.routing.delete(model)  # first: no caller is sent to a stopping pod
            self._asleep[mid] = dep["spec"].get("replicas") or 1
            # an HPA leaves a Deployment at 0 replicas alone (Kubernetes disables it there)
            await self._patch_replicas(model, 0, isoformat_now())

    async def _patch_replicas(self, model, replicas, asleep_since=None):
        name = objects.object_name(model)
        patch = {
            "metadata": {"annotations": {objects.ANNOTATION_ASLEEP: asleep_since}},
            "spec": {"replicas": replicas},
        }
        return await self.kube.patch("apps/v1", "deployments", name, patch, f"scaling {name}")

    async def wake(self, model, progress):
        await self._start()
        mid = objects.model_id(model)
        async with self._lock(model):
            if mid not in self._asleep:
                return
            dep = self._deployment_of(mid)
            if dep is None:
                raise DeployError(
                    f"the Deployment of {model.unit} is gone: publish the model again",
                    {"model": model.key},
                )
            replicas, version = self._asleep[mid], template_version(dep)
            self._busy.add(mid)
            try:
                progress("starting", f"waking: starting {replicas} pod(s) of {version[:19]}")
                await self._patch_replicas(model, replicas)
                try:
                    first = await self._wait(
                        lambda: self._serving_pods(mid, version) or self._failure(mid, version),
                        self.ready_timeout,
                        "a ready pod",
                    )
                except TimeoutError:
                    first = None
                if not isinstance(first, list):
                    await self._patch_replicas(model, 0, isoformat_now())
                    raise await self._fail(mid, version, f"{version[:19]} did not wake")
                del self._asleep[mid]
                self.routing.wanted[mid] = version
                if self.route_target == "service":
                    await self.routing.ensure(model)
                else:
                    await self.routing.follow_pods(model)
                progress("ready", f"awake: pod {first[0]['metadata']['name']} is ready")
            finally:
                self._busy.discard(mid)

    def asleep(self, model):
        return objects.model_id(model) in self._asleep

    async def _delete_objects(self, name):
        kinds = [("apps/v1", "deployments"), ("v1", "services"), ("v1", "secrets")]
        for api_version in ("policy/v1", "policy/v1beta1"):
            if api_version in self.kube.served:
                kinds.append((api_version, "poddisruptionbudgets"))
                break
        for api_version in ("autoscaling/v2", "autoscaling/v2beta2"):
            if api_version in self.kube.served:
                kinds.append((api_version, "horizontalpodautoscalers"))
                break
        for api_version, plural in kinds:
            await self.kube.delete(api_version, plural, name)

    async def logs(self, model, tail):
        await self._start()
        mid = objects.model_id(model)
        parts = []
        for pod in sorted(self.pods.of(mid).values(), key=lambda p: p["metadata"]["name"]):
            try:
                # the banner uWSGI writes at start is dropped: ask for that much more
                text = await self.kube.pod_log(pod["metadata"]["name"], "serving", tail + 64)
            except ApiException:
                continue
            parts.append(f"--- pod {pod['metadata']['name']} ({(version_of(pod) or '')[:19]})\n")
            parts.append(serving_log.readable(text or "", tail))
        return "".join(parts)

    async def adopt(self, desired):
        await self._start()
        wanted = {objects.model_id(d.model): d for d in desired}
        for d in desired:
            self._models[objects.model_id(d.model)] = d.model
        await asyncio.gather(*(self._adopt_one(d) for d in desired))
        for mid in self.deployments.groups():
            dep = self._deployment_of(mid)
            if mid not in wanted and dep is not None:
                annotations = dep["metadata"].get("annotations") or {}
                self.log.info(
                    "deleting the objects of unpublished model %s/%s",
                    annotations.get(objects.ANNOTATION_OWNER),
                    annotations.get(objects.ANNOTATION_MODEL),
                )
                await self._delete_objects(dep["metadata"]["name"])
        await self.add_fallback_route()
        self._tasks.append(asyncio.ensure_future(self.routing.keep(self._models)))

    async def _adopt_one(self, d):
        mid = objects.model_id(d.model)
        dep = self._deployment_of(mid)
        if d.asleep and dep is not None and template_version(dep) == d.version:
            self._asleep[mid] = d.replicas  # it slept when the publisher stopped: it sleeps on
            if dep["spec"].get("replicas"):
                await self._patch_replicas(d.model, 0, isoformat_now())
            await self.routing.delete(d.model)
            return
        if dep is not None and template_version(dep) == d.version:
            self.routing.wanted[mid] = d.version
            if dep["spec"].get("replicas") != d.replicas:
                await self.scale(d.model, d.replicas, lambda step, message: None)
            await self.routing.ensure(d.model)
            ready = len(self._serving_pods(mid, d.version))
            self.emit(
                d.model,
                d.version,
                "adopted",
                f"re-adopted Deployment {dep['metadata']['name']} ({ready} ready pod(s))",
            )
            return
        why = "it was not running" if dep is None else "another version was running"
        self.emit(d.model, d.version, "restarting", f"{why}; deploying it again", "info")
        try:
            await self.deploy(
                d.model,
                d.version,
                d.bundle_dir,
                replicas=d.replicas,
                progress=lambda step, message: None,
                serving=d.serving,
            )
        except (DeployError, InvalidBundle) as exc:
            self.emit(d.model, d.version, "failed", exc.message, "error")
            return
        self.emit(d.model, d.version, "restarted", "serving again")

    async def shutdown(self):
        # Pods keep serving: Kubernetes supervises them, and the next publisher adopts them.
        # The canary front is the publisher's: it stops with it, and the next one starts it.
        await self.front.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await asyncio.gather(self.deployments.stop(), self.pods.stop())
        await self.kube.close()
        self._started = None
