"""Kubernetes objects of a published model: pure builders, no cluster needed.

Each ``make_*`` returns the object as a plain dict (what ``kubernetes_asyncio`` accepts as a
body, what ``yaml.safe_dump`` prints, and what the unit tests compare as literals), in the
manner of kubespawner's ``objects.py``. ``KubernetesDeployer`` is the one bridge from settings to
these builders.

One model ``owner/name`` owns, all named ``object_name(model)`` in the models namespace (and
each of its other aliases, ``owner/name@alias``, the same set of its own: an alias is moved by
its own rolling update):

- a **Secret** with the access list the serving runtime reads (users, groups and the sha256 of
  each API key, never a key) and the token the pod's init container fetches its bundle with,
  annotated with the list's revision; a change is pushed to running pods by annotating them
  with that revision (``make_access_patch``);
- a **Deployment**: an init container fetches the live version's bundle from the publisher into
  an ``emptyDir`` (so no image is built per model), the serving container serves it; a rolling
  update with ``maxUnavailable: 0`` (old pods serve until new ones are ready), readiness on
  ``/readyz`` (the model is loaded), liveness on ``/healthz``, non-root, no API token;
- a **Service** in front of its pods; a **PodDisruptionBudget** (one pod may be evicted at a
  time) and, when autoscaling is on, a **HorizontalPodAutoscaler**, at the API versions the
  cluster serves (``policy/v1`` or ``v1beta1``, ``autoscaling/v2`` or ``v2beta2``).

Every object carries the same labels (``selector_labels`` finds them all) and the exact owner and
model name as annotations, since a hub user name need not be a valid label value.
"""

import hashlib
import math
import re

LABEL_MODEL = "mlhub.io/model-id"
LABEL_VERSION = "mlhub.io/version"
ANNOTATION_OWNER = "mlhub.io/owner"
ANNOTATION_MODEL = "mlhub.io/model"
ANNOTATION_ALIAS = "mlhub.io/alias"
ANNOTATION_VERSION = "mlhub.io/version"
ANNOTATION_ACCESS = "mlhub.io/access-revision"
# on a Deployment at 0 replicas because its model is idle (the publisher wakes it)
ANNOTATION_ASLEEP = "mlhub.io/asleep-since"
COMPONENT = "mlhub-model"
ACCESS_KEY = "access.json"
BUNDLE_TOKEN_KEY = "bundle-token"
LOG_TOKEN_KEY = "log-token"
BUNDLE_DIR = "/srv/mlhub/bundle"
ACCESS_DIR = "/etc/mlhub/access"
SERVING_PORT = 8080


def model_id(model):
    """A short stable id of ``owner/name`` (or ``owner/name@alias``, ``ModelRef.unit``): a
    valid label value for any hub user name."""
    return hashlib.sha256(model.unit.encode()).hexdigest()[:12]


def _slug(text, size):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:size].strip("-")


def object_name(model):
    """``m-<owner>-<name>[-<alias>]-<id>``: a DNS label (and a valid Service name) for any
    owner, name and alias; readable where they are plain, unique through the id where they
    are not."""
    parts = [_slug(model.owner, 20), _slug(model.name, 27)]
    if model.alias:  # the readable part shrinks to keep the name within 63 characters
        parts = [_slug(model.owner, 12), _slug(model.name, 20), _slug(model.alias, 12)]
    readable = "-".join(filter(None, parts))
    return f"m-{readable}-{model_id(model)}" if readable else f"m-{model_id(model)}"


def version_label(version):
    """A version digest as a label value (``sha256:<hex>`` has a colon; labels allow 63)."""
    return version.split(":", 1)[-1][:40]


def selector_labels(model):
    """The labels that select every object and pod of ``model``."""
    return {"app.kubernetes.io/component": COMPONENT, LABEL_MODEL: model_id(model)}


def _labels(model, extra=None):
    return {
        "app.kubernetes.io/name": "mlhub",
        "app.kubernetes.io/managed-by": "mlhub-publisher",
        "app.kubernetes.io/instance": object_name(model),
        **selector_labels(model),
        **(extra or {}),
    }


def _metadata(model, namespace, extra_labels=None, annotations=None):
    return {
        "name": object_name(model),
        "namespace": namespace,
        "labels": _labels(model, extra_labels),
        "annotations": {
            ANNOTATION_OWNER: model.owner,
            ANNOTATION_MODEL: model.name,
            **({ANNOTATION_ALIAS: model.alias} if model.alias else {}),
            **(annotations or {}),
        },
    }


def access_revision(access_json):
    """Which access list this is: 16 hex of the sha256 of its JSON (it names no key)."""
    return hashlib.sha256(access_json.encode()).hexdigest()[:16]


def make_secret(model, namespace, *, access_json, bundle_token, log_token=None):
    """The model's Secret: ``access.json`` (users, groups, key hashes) for the serving runtime,
    the bundle token for the init container and the log token for a serving container that
    sends an inference log; annotated with ``access_revision``."""
    data = {ACCESS_KEY: access_json, BUNDLE_TOKEN_KEY: bundle_token}
    if log_token:
        data[LOG_TOKEN_KEY] = log_token
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(
            model, namespace, annotations={ANNOTATION_ACCESS: access_revision(access_json)}
        ),
        "type": "Opaque",
        "stringData": data,
    }


def make_access_patch(revision):
    """A merge patch marking a running pod with the access revision it must serve.

    Why a pod patch: the kubelet rewrites a pod's Secret volumes only when it syncs the pod,
    which it does periodically (about every minute, plus jitter) or when the pod changes. An
    annotation change is such a change (the pod's spec stays, so no container restarts), and
    every sync re-mounts the Secret from the kubelet's watch-fed cache: the new access list
    reaches the pod within a second instead of up to a minute and a half."""
    return {"metadata": {"annotations": {ANNOTATION_ACCESS: revision}}}


def _probe(path, *, period, failure_threshold, timeout=3):
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failure_threshold,
    }


def make_deployment(
    model,
    namespace,
    *,
    version,
    replicas,
    image,
    bundle_url,
    url_prefix,
    hub_api_url,
    workers=2,
    command=None,
    resources=None,
    env=None,
    image_pull_policy="IfNotPresent",
    termination_grace_seconds=30,
    drain_seconds=5,
    progress_deadline_seconds=600,
    run_as_user=1000,
    service_account=None,
    node_selector=None,
):
    """The Deployment serving ``version`` with ``replicas`` pods.

    ``bundle_url``: where the init container GETs the version's bundle (the publisher's bundle
    endpoint); it checks the content against ``version`` before the server sees it.
    ``command``: the serving container's command (default: the image's own); it serves the
    bundle in ``$MLHUB_BUNDLE`` on port 8080 with ``$MLHUB_WORKERS`` workers.
    ``drain_seconds``: a pod told to stop keeps serving that long first (a ``preStop`` sleep),
    so a router or Service still sending it requests has time to notice; the grace period
    covers it. ``resources``: the container's ``{"requests": ..., "limits": ...}``. ``env``
    with ``MLHUB_INFERENCE_LOG_URL`` (an inference log) also gives the serving container the
    model's log token (the Secret's), which the log is sent with. Only the init container
    holds the bundle token.
    """
    vlabel = {LABEL_VERSION: version_label(version)}
    name = object_name(model)
    token_env = {
        "name": "MLHUB_BUNDLE_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": name, "key": BUNDLE_TOKEN_KEY}},
    }
    log_token_env = {
        "name": "MLHUB_INFERENCE_LOG_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": name, "key": LOG_TOKEN_KEY}},
    }
    bundle_dir = f"{BUNDLE_DIR}/{version_label(version)}"
    fetch = {
        "name": "fetch-bundle",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "command": [
            "python3",
            "-m",
            "mlhub.serving",
            "fetch",
            "--url",
            bundle_url,
            "--digest",
            version,
            "--dest",
            bundle_dir,
        ],
        "env": [token_env],
        "volumeMounts": [{"name": "bundle", "mountPath": BUNDLE_DIR}],
        "securityContext": container_security(),
    }
    serving_env = [
        {"name": "MLHUB_BUNDLE", "value": bundle_dir},
        {"name": "MLHUB_WORKERS", "value": str(workers)},
        {"name": "MLHUB_PORT", "value": str(SERVING_PORT)},
        {"name": "MLHUB_URL_PREFIX", "value": url_prefix},
        {"name": "MLHUB_MODEL_OWNER", "value": model.owner},
        {"name": "MLHUB_MODEL_NAME", "value": model.name},
        {"name": "MLHUB_MODEL_VERSION", "value": version},
        {"name": "MLHUB_ACCESS_FILE", "value": f"{ACCESS_DIR}/{ACCESS_KEY}"},
        {"name": "MLHUB_AUTH", "value": "on"},
        {"name": "JUPYTERHUB_API_URL", "value": hub_api_url},
        *({"name": k, "value": str(v)} for k, v in sorted((env or {}).items())),
    ]
    if "MLHUB_INFERENCE_LOG_URL" in (env or {}):
        serving_env.append(log_token_env)  # what the log is sent with, and all it allows
    serving = {
        "name": "serving",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "env": serving_env,
        "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        "readinessProbe": _probe(f"{url_prefix}/readyz", period=1, failure_threshold=2),
        "livenessProbe": {
            **_probe(f"{url_prefix}/healthz", period=10, failure_threshold=3),
            # a big model may take long to load; liveness only starts judging after that
            "initialDelaySeconds": 30,
        },
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", f"{drain_seconds:g}"]}}},
        "volumeMounts": [
            {"name": "bundle", "mountPath": BUNDLE_DIR, "readOnly": True},
            {"name": "access", "mountPath": ACCESS_DIR, "readOnly": True},
        ],
        "securityContext": container_security(),
    }
    if command:
        serving["command"] = list(command)
    if resources:
        serving["resources"] = resources
        fetch["resources"] = resources
    pod_spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": max(
            termination_grace_seconds, math.ceil(drain_seconds) + 1
        ),
        "securityContext": pod_security(run_as_user),
        "initContainers": [fetch],
        "containers": [serving],
        "volumes": [
            {"name": "bundle", "emptyDir": {}},
            {
                "name": "access",
                # only the access list: the bundle token stays with the init container
                "secret": {"secretName": name, "items": [{"key": ACCESS_KEY, "path": ACCESS_KEY}]},
            },
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(model, namespace, vlabel, {ANNOTATION_VERSION: version}),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": progress_deadline_seconds,
            "selector": {"matchLabels": selector_labels(model)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": _labels(model, vlabel),
                    "annotations": {ANNOTATION_VERSION: version},
                },
                "spec": pod_spec,
            },
        },
    }


def pod_security(uid):
    """The pod ``securityContext`` of every pod mlhub makes: what the ``restricted`` Pod Security
    Standard asks of a pod (https://kubernetes.io/docs/concepts/security/pod-security-standards/:
    non-root, the runtime's default seccomp profile), with ``uid`` as user, group and fsGroup."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security():
    """The container ``securityContext`` the ``restricted`` standard asks of every container
    (init containers too): no privilege escalation, every capability dropped."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def make_service(model, namespace):
    """A ClusterIP Service over the model's ready pods (port 80 -> the serving port)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(model, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(model),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def make_pdb(model, namespace, *, api_version="policy/v1"):
    """At most one pod of the model evicted at a time (node drains, cluster upgrades)."""
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(model, namespace),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(model)}},
    }


def make_hpa(
    model,
    namespace,
    *,
    min_replicas,
    max_replicas,
    cpu_utilization=70,
    api_version="autoscaling/v2",
):
    """Scale the Deployment between ``min_replicas`` and ``max_replicas`` on CPU utilisation
    (a percentage of the containers' CPU request, which must be set). ``autoscaling/v2`` and
    ``v2beta2`` share this shape."""
    return {
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(model, namespace),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": object_name(model),
            },
            "minReplicas": min_replicas,
            "maxReplicas": max(max_replicas, min_replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_utilization},
                    },
                }
            ],
        },
    }


def pick_api_version(served, preferred):
    """The first of ``preferred`` (e.g. ``["policy/v1", "policy/v1beta1"]``) the cluster
    serves (``served``: a set of ``group/version`` strings from discovery), or None."""
    return next((v for v in preferred if v in served), None)
