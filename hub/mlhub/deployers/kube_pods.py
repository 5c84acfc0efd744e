"""What the API server's pod and Deployment objects say, read as the Kubernetes deployer needs
it: pure functions of the watched dicts (``kube_reflector``), no API calls, so each decision
(which pods serve, whether a rollout is done, whether a pod will never get ready) is tested on
literal objects (tests/unit/test_kubernetes_deployer.py)."""

import time

from mlhub.deployers import kube_objects as objects

# container states that will not get better by waiting
_FATAL_WAITING = {
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


def ready(pod):
    """Whether the pod's Ready condition is true."""
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def terminating(pod):
    """Whether the pod has been told to stop (it may still serve its drain)."""
    return bool(pod["metadata"].get("deletionTimestamp"))


def version_of(obj):
    """The model version an object (pod, pod template) runs, from its annotation."""
    return (obj.get("metadata", {}).get("annotations") or {}).get(objects.ANNOTATION_VERSION)


def template_version(deployment):
    """The version a Deployment's pod template runs: the live one once it rolled out."""
    return version_of(deployment["spec"]["template"])


def pod_problem(pod):
    """Why a pod will not become ready by waiting, or None while it still might."""
    status = pod.get("status", {})
    for kind in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(kind) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _FATAL_WAITING:
                return f"{cs['name']}: {waiting['reason']}: {waiting.get('message', '')}".strip()
            last = (cs.get("lastState") or {}).get("terminated") or {}
            now = (cs.get("state") or {}).get("terminated") or {}
            ended = now or last
            if ended and ended.get("exitCode", 0) != 0 and cs.get("restartCount", 0) >= 1:
                return f"{cs['name']} exited with code {ended['exitCode']} ({ended.get('reason')})"
            if kind == "initContainerStatuses" and now and now.get("exitCode", 0) != 0:
                return f"{cs['name']} exited with code {now['exitCode']}"
    return None


def pod_state(pod, live):
    """A pod as ``status`` reports it: terminating, other (not the live version), live or
    starting."""
    if terminating(pod):
        return "terminating"
    if version_of(pod) != live:
        return "other"
    return "live" if ready(pod) else "starting"


def started(pod):
    """When the pod started (epoch seconds), or None."""
    text = pod.get("status", {}).get("startTime")
    if not text:
        return None
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


def serving_pods(pods, version=None):
    """Ready, not terminating pods with an IP (of ``version`` if given), oldest first."""
    found = [
        p
        for p in pods
        if ready(p)
        and not terminating(p)
        and p["status"].get("podIP")
        and (version is None or version_of(p) == version)
    ]
    return sorted(found, key=lambda p: (p["status"].get("startTime", ""), p["metadata"]["name"]))


def rolled_out(deployment, generation, replicas):
    """Whether ``deployment`` (None: gone) has seen ``generation`` and runs exactly
    ``replicas`` available pods of its template."""
    if deployment is None:
        return False
    status = deployment.get("status", {})
    return (
        status.get("observedGeneration", 0) >= generation
        and status.get("updatedReplicas", 0) == replicas
        and status.get("availableReplicas", 0) >= replicas
        and status.get("replicas", 0) == replicas
    )


def rollout_failure(pods, deployment, version, load_errors):
    """``(pod, reason)`` for a pod of ``version`` that cannot become ready (its containers, or
    ``load_errors``: pod name -> why its model does not load), ``(None, reason)`` for a
    Deployment that made no progress, else None."""
    for pod in pods:
        if version_of(pod) == version and not terminating(pod):
            problem = pod_problem(pod) or load_errors.get(pod["metadata"]["name"])
            if problem:
                return pod, problem
    for cond in (deployment or {}).get("status", {}).get("conditions") or []:
        if cond["type"] == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return None, cond.get("message", "the rollout made no progress")
    return None
