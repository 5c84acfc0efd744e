"""Calls to the Kubernetes API for the models namespace, as kubespawner keeps them apart in
``clients.py``: one client per deployer, retries of what may pass, errors handled by status.

- **Retries.** 5xx answers and broken connections are tried again with exponential backoff
  and jitter (``retries`` attempts); 4xx answers are final and raised as ``ApiException``.
- **By status.** ``apply`` creates, and on 409 (it exists) replaces the object at its current
  resourceVersion; ``delete`` takes 404 as done; ``error`` turns a refusal into a
  ``DeployError`` that says what Kubernetes said and where.
- ``asyncio.CancelledError`` always propagates.

The callers build objects as dicts (``kube_objects``) and send them as they are, so nothing here
depends on the models' Python classes of the client library.
"""

import asyncio
import json
import random

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from mlhub.errors import DeployError

__all__ = ["ApiException", "Gone", "KubeClient"]

JSON = {200: "object", 201: "object", 202: "object"}
PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "Secret": "secrets",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
}
MERGE_PATCH = "application/merge-patch+json"


class Gone(Exception):
    """A watch's resourceVersion is too old (410): list again."""


class KubeClient:
    """The API of one namespace: ``connect`` once, then ``call``, ``apply``, ``delete``,
    ``watch`` and ``pod_log``. ``served`` holds the group/versions the cluster serves."""

    def __init__(self, namespace, *, retries, log):
        self.namespace = namespace
        self.retries = retries
        self.log = log
        self.served = set()
        self._api = None

    async def connect(self, kubeconfig):
        """Load the configuration (a kubeconfig file, else the pod's service account), check
        the namespace answers, and discover the served API versions."""
        configuration = client.Configuration()
        try:
            if kubeconfig:
                await config.load_kube_config(
                    config_file=kubeconfig, client_configuration=configuration
                )
            else:
                config.load_incluster_config(client_configuration=configuration)
        except (OSError, config.ConfigException) as exc:
            raise DeployError(
                f"cannot load the Kubernetes configuration ({exc}); set "
                "KubernetesDeployer.kubeconfig or run the publisher in a pod",
            ) from exc
        self._api = client.ApiClient(configuration)
        try:
            groups = await self.call("GET", "/apis")
            # fails here, with the reason, if the namespace is missing or out of reach
            await self.call("GET", self.path("v1", "pods"), query={"limit": "1"})
        except ApiException as exc:
            raise self.error("listing pods", exc) from exc
        self.served = {"v1"} | {
            v["groupVersion"] for g in groups.get("groups", []) for v in g["versions"]
        }

    async def close(self):
        if self._api is not None:
            await self._api.close()
            self._api = None

    def path(self, api_version, plural, name=None):
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        path = f"{base}/namespaces/{self.namespace}/{plural}"
        return f"{path}/{name}" if name else path

    async def call(self, method, path, body=None, query=None, content_type=None, types=JSON):
        """One API call with retries of what may pass (5xx, connection errors)."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in range(1, self.retries + 1):
            try:
                return await self._api.call_api(
                    path,
                    method,
                    query_params=list((query or {}).items()),
                    header_params=headers,
                    body=body,
                    response_types_map=types,
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _request_timeout=30,
                )
            except ApiException as exc:
                if exc.status < 500 or attempt == self.retries:
                    raise
                self.log.warning("%s %s: %s; retrying", method, path, exc.status)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt == self.retries:
                    raise DeployError(
                        f"cannot reach the Kubernetes API ({exc}); check "
                        "KubernetesDeployer.kubeconfig",
                    ) from exc
                self.log.warning("%s %s: %s; retrying", method, path, exc)
            await asyncio.sleep(0.5 * 2 ** (attempt - 1) * (0.5 + random.random()))

    async def apply(self, obj):
        """Create ``obj``, or replace it if it exists (409), keeping its resourceVersion."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural = PLURALS[kind]
        name = obj["metadata"]["name"]
        for attempt in range(1, self.retries + 1):
            try:
                return await self.call("POST", self.path(api_version, plural), obj)
            except ApiException as exc:
                if exc.status != 409:
                    raise self.error(f"creating {kind} {name}", exc) from exc
            try:
                current = await self.call("GET", self.path(api_version, plural, name))
                body = {**obj, "metadata": {**obj["metadata"]}}
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                if kind == "Service":  # immutable once set
                    body["spec"] = {**obj["spec"], "clusterIP": current["spec"].get("clusterIP")}
                return await self.call("PUT", self.path(api_version, plural, name), body)
            except ApiException as exc:
                # 404: deleted meanwhile, 409: changed meanwhile; both: try again
                if exc.status not in (404, 409) or attempt == self.retries:
                    raise self.error(f"replacing {kind} {name}", exc) from exc
        raise DeployError(f"could not create or replace {kind} {name}")

    async def patch(self, api_version, plural, name, patch, what):
        """Merge-patch one object; the patched object. A refusal is a ``DeployError``."""
        try:
            return await self.call(
                "PATCH", self.path(api_version, plural, name), patch, content_type=MERGE_PATCH
            )
        except ApiException as exc:
            raise self.error(what, exc) from exc

    async def delete(self, api_version, plural, name):
        """Delete one object; True if it was there (404 means it is already gone)."""
        try:
            await self.call(
                "DELETE",
                self.path(api_version, plural, name),
                {"propagationPolicy": "Background"},
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise self.error(f"deleting {plural}/{name}", exc) from exc

    def error(self, what, exc):
        """A refusal of the API as a ``DeployError`` naming what was refused, where and why."""
        try:
            message = json.loads(exc.body).get("message", exc.reason)
        except (TypeError, ValueError, AttributeError):
            message = exc.reason
        return DeployError(
            f"Kubernetes refused {what} in namespace {self.namespace}: {message}",
            {"status": exc.status},
        )

    async def watch(self, api_version, plural, selector, resource_version, handle):
        """Stream the changes after ``resource_version`` to ``handle(type, object)`` until the
        server ends the watch (5 minutes); ``Gone`` when the version is too old."""
        query = {
            "labelSelector": selector,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        response = await self._api.call_api(
            self.path(api_version, plural),
            "GET",
            query_params=list(query.items()),
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_read=330),
        )
        try:
            if response.status == 410:
                raise Gone()
            if response.status != 200:
                raise DeployError(f"watch of {plural} answered {response.status}")
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    if event["object"].get("code") == 410:
                        raise Gone()
                    raise DeployError(f"watch of {plural}: {event['object'].get('message')}")
                if event["type"] != "BOOKMARK":
                    await handle(event["type"], event["object"])
        finally:
            response.release()

    async def pod_log(self, name, container, tail, previous=False):
        """The last ``tail`` lines of a container's log (of its previous run with
        ``previous``); ``ApiException`` if there is none."""
        return await self.call(
            "GET",
            self.path("v1", "pods", name) + "/log",
            query={
                "container": container,
                "tailLines": str(tail),
                "previous": str(previous).lower(),
            },
            types={200: "str"},
        )
