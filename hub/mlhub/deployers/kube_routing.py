"""Where each model's route in the hub's proxy points, in Kubernetes mode.

``/models/<user>/<name>`` (each unit's ``ModelRef.route_prefixes``) goes to the unit's Service
(``route_target = "service"``, clusters with kube-proxy) or to one ready pod of the version that
should serve (``"pod"``, clusters whose ClusterIPs do not route from the proxy). In pod mode the
route stays on its pod while that pod serves the wanted version and moves, at the watch event
that says so, to the oldest ready pod of that version when it stops or starts terminating (a
terminating pod serves its drain, so nothing in flight fails). A proxy restarted by the hub
loses the routes; ``keep`` re-adds them.
"""

import asyncio

from mlhub.deployers import kube_objects as objects
from mlhub.deployers.kube_pods import serving_pods
from mlhub.errors import DeployError


class ModelRoutes:
    """The proxy routes of one ``KubernetesDeployer`` (its settings, proxy and pod watch)."""

    def __init__(self, deployer):
        self.deployer = deployer
        self.routed = {}  # model id -> proxy target we set
        self.wanted = {}  # model id -> the version that should serve (what routes prefer)

    def forget(self, mid):
        self.routed.pop(mid, None)
        self.wanted.pop(mid, None)

    def pod_target(self, mid):
        """Where the route of a model points in pod mode: the current pod while it serves the
        wanted version, else the oldest ready pod of that version, else any ready pod."""
        pods = self.deployer.pods.of(mid).values()
        wanted = self.wanted.get(mid)
        ready = (serving_pods(pods, wanted) if wanted else []) or serving_pods(pods)
        targets = [f"http://{p['status']['podIP']}:{objects.SERVING_PORT}" for p in ready]
        current = self.routed.get(mid)
        return current if current in targets else (targets[0] if targets else None)

    async def follow_pods(self, model):
        """Pod mode: move the route if its pod no longer serves (at every pod event)."""
        target = self.pod_target(objects.model_id(model))
        if target and target != self.routed.get(objects.model_id(model)):
            await self.set(model, target)

    async def set(self, model, target):
        """Point the model's route at ``target``; False (logged) if the proxy refused."""
        d = self.deployer
        try:
            await d.add_routes(model, target)
        except DeployError as exc:
            d.log.warning("route of %s not set yet: %s", model.unit, exc)
            return False
        self.routed[objects.model_id(model)] = target
        return True

    async def ensure(self, model):
        """Route the model as ``route_target`` says; the target, or None (no ready pod)."""
        d = self.deployer
        if d.route_target == "pod":
            target = self.pod_target(objects.model_id(model))
        else:
            svc = await d.kube.call(
                "GET", d.kube.path("v1", "services", objects.object_name(model))
            )
            target = f"http://{svc['spec']['clusterIP']}:80"
        if target:
            await self.set(model, target)
        return target

    async def delete(self, model):
        await self.deployer.delete_routes(model)
        self.forget(objects.model_id(model))

    async def keep(self, models):
        """Every ``route_check_interval``: re-add the routes (of ``models``, model id ->
        ``ModelRef``) and the fallback a restarted proxy lost. Runs until cancelled."""
        d = self.deployer
        while True:
            await asyncio.sleep(d.route_check_interval)
            try:
                expected = {
                    model: self.routed[mid]
                    for mid, model in list(models.items())
                    if self.routed.get(mid)
                }
                for model in await d.lost_routes(expected):
                    await self.set(model, expected[model])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.deployer.log.warning("route check failed: %s", exc)
