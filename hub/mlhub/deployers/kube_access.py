"""An access change reaching the running pods of a model within a second.

A model's access list (who may call it: users, groups, API key hashes) is a Secret the serving
pods mount. The kubelet refreshes mounted Secrets only at its periodic sync (about a minute); a
revoked key must stop working sooner. So after the Secret changes, every running pod of the
model gets an annotation with the new revision (``kube_objects.make_access_patch``), which makes
the kubelet sync that pod now.
"""

import asyncio

from mlhub.deployers import kube_objects as objects
from mlhub.deployers.kube_api import MERGE_PATCH, ApiException
from mlhub.deployers.kube_pods import terminating


async def push_access(kube, model, secret, log):
    """Make the model's running pods serve the access list in ``secret`` within a second:
    annotate each with its revision (``kube_objects.make_access_patch`` says why). Pods
    made later mount the Secret as it is. Without the right to patch pods the change still
    arrives, at the kubelet's next periodic sync, so that is a warning, not a failure."""
    revision = secret["metadata"]["annotations"][objects.ANNOTATION_ACCESS]
    selector = ",".join(f"{k}={v}" for k, v in objects.selector_labels(model).items())
    try:
        listed = await kube.call("GET", kube.path("v1", "pods"), query={"labelSelector": selector})
    except ApiException as exc:
        log.warning("%s: %s", model.key, kube.error("listing pods", exc).message)
        return
    stale = [
        pod["metadata"]["name"]
        for pod in listed["items"]
        if not terminating(pod)
        and (pod["metadata"].get("annotations") or {}).get(objects.ANNOTATION_ACCESS) != revision
    ]
    if not stale:
        return
    # The kubelet reads the Secret from its watch of it, fed by the API server's watch
    # cache. A GET at the new resourceVersion answers once that cache has it, so the pod
    # syncs below find the new list there, not the one before.
    name = secret["metadata"]["name"]
    try:
        await kube.call(
            "GET",
            kube.path("v1", "secrets", name),
            query={"resourceVersion": secret["metadata"]["resourceVersion"]},
        )
    except ApiException as exc:
        log.warning("%s: reading back Secret %s: %s", model.key, name, exc.reason)
    refused = await asyncio.gather(
        *(_annotate_pod(kube, pod, objects.make_access_patch(revision)) for pod in stale)
    )
    for pod, exc in zip(stale, refused, strict=True):
        if exc is not None:
            fix = " (give the publisher's Role `patch` on pods)" if exc.status == 403 else ""
            log.warning(
                "%s: the access change reaches pod %s only at the kubelet's next sync "
                "(about a minute): %s%s",
                model.key,
                pod,
                kube.error(f"annotating pod {pod}", exc).message,
                fix,
            )


async def _annotate_pod(kube, name, patch):
    """Merge-patch pod ``name``; the API's refusal, or None (done, or the pod is gone)."""
    try:
        await kube.call(
            "PATCH",
            kube.path("v1", "pods", name),
            patch,
            content_type=MERGE_PATCH,
        )
    except ApiException as exc:
        return None if exc.status == 404 else exc
    return None
