"""``mlhub batch`` as a Kubernetes Job or CronJob: a pure builder, no cluster needed.

In Kubernetes mode a batch run is the same command in a pod of a standard image (the
``serving-python`` image carries mlhub with its batch dependencies). ``make_batch_job`` turns
the command's arguments into a ``batch/v1`` Job, or a CronJob when a ``schedule`` is given,
as a plain dict (what ``kubernetes.client`` accepts, ``yaml.safe_dump`` prints and tests compare
as literals), in the manner of kubespawner's ``make_pod``.

Why the shape:

- ``restartPolicy: OnFailure`` with the state file on a volume: a container that dies (OOM, a
  node drain) restarts in the same pod and resumes from the state file instead of scoring
  again. With ``state_claim`` (a PersistentVolumeClaim) a new pod resumes too; without it the
  state lives in an ``emptyDir``, which survives container restarts only.
- A CronJob has ``concurrencyPolicy: Forbid``: two runs of one job must not write the same
  destination at once. Each scheduled run starts fresh, since the last one finished.
- Secrets (the model token, database passwords) come from Kubernetes Secrets as environment
  variables; ``$(VAR)`` in an argument, e.g. ``postgresql://me:$(PGPASSWORD)@db/fab``, is
  expanded by Kubernetes, so no secret is written into the manifest.
- The pod passes the ``restricted`` Pod Security Standard (``kube_objects.pod_security``), gets
  no service-link variables, and no API token unless a service account is asked for.
"""

from mlhub.deployers.kube_objects import container_security, pod_security

STATE_DIR = "/var/lib/mlhub-batch"


def _env(secret_env, env):
    items = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for name, (secret, key) in sorted(secret_env.items())
    ]
    items += [{"name": name, "value": str(value)} for name, value in sorted(env.items())]
    return items


def make_batch_job(
    name,
    *,
    image,
    model,
    source,
    dest,
    args=(),
    namespace=None,
    schedule=None,
    secret_env=None,
    env=None,
    state_claim=None,
    resources=None,
    labels=None,
    service_account=None,
    backoff_limit=6,
    ttl_seconds_after_finished=7 * 24 * 3600,
    run_as_user=1000,
):
    """A Job (or, with a cron ``schedule``, a CronJob) that runs ``mlhub batch``.

    ``name``: the Job's name (a DNS label); ``image``: a standard image with mlhub; ``model``,
    ``source``, ``dest``: as for ``mlhub batch``; ``args``: the other ``mlhub batch`` options,
    e.g. ``["--table", "wafers", "--chunk-size", "20000"]``. ``secret_env``: ``{VAR: (secret,
    key)}``, e.g. ``{"MLHUB_TOKEN": ("defect-batch", "api-key")}``; ``env``: plain variables
    (``MLHUB_URL``...). ``state_claim``: a PVC name for the state file (else an ``emptyDir``).
    ``resources``: the container's ``{"requests": ..., "limits": ...}``. The pod runs as
    ``run_as_user`` (the standard images' uid 1000) under the ``restricted`` Pod Security
    Standard.
    """
    labels = {"app.kubernetes.io/name": "mlhub-batch", "mlhub/batch-job": name, **(labels or {})}
    command = ["mlhub", "batch", "--model", model, "--source", source, "--dest", dest, *args]
    command += ["--state", f"{STATE_DIR}/{name}.jsonl"]
    container = {
        "name": "batch",
        "image": image,
        "command": command,
        "env": _env(secret_env or {}, env or {}),
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}],
    }
    if resources:
        container["resources"] = resources
    volume = (
        {"name": "state", "persistentVolumeClaim": {"claimName": state_claim}}
        if state_claim
        else {"name": "state", "emptyDir": {}}
    )
    pod_spec = {
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": bool(service_account),
        "enableServiceLinks": False,
        "securityContext": pod_security(run_as_user),
        "containers": [{**container, "securityContext": container_security()}],
        "volumes": [volume],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    job_spec = {
        "backoffLimit": backoff_limit,
        "ttlSecondsAfterFinished": ttl_seconds_after_finished,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    metadata = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    if schedule is None:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"metadata": {"labels": dict(labels)}, "spec": job_spec},
        },
    }
