"""What the publisher's API shows and accepts of a model, as pure functions of their input
(no store, no deployer): the ``Model`` object (``model_view``), the ``batching`` publish
option (``check_batching``) and a replica count (``check_replicas``)."""

from mlhub.deployers.base import ModelRef
from mlhub.errors import BadRequest
from mlhub.publisher.store import isoformat
from mlhub.serving.settings import Settings as ServingSettings

MAX_BATCH_SIZE = 512  # one serving thread per row a batch may hold (MLHUB_THREADS)


def model_view(model, public_url):
    """The API's ``Model`` object (openapi.yaml) of a stored model; ``public_url`` without its
    trailing slash."""
    url = f"{public_url}{ModelRef(model.owner, model.name).url_prefix}/"
    versions = sorted(model.versions, key=lambda v: v.created, reverse=True)
    return {
        "owner": model.owner,
        "name": model.name,
        "status": model.status,
        "current_version": model.current_version,
        "replicas": model.replicas,
        "url": url,
        "predict_url": url + "v1/predict",
        "shared_with": list(model.shared_with or []),
        "shared_groups": list(model.shared_groups or []),
        "batching": model.batching,
        "resources": model.resources,
        "versions": [
            {
                "id": v.id,
                "created": isoformat(v.created),
                "live_since": isoformat(v.live_since),
                "flavor": v.manifest.get("flavor"),
                "runtime": v.manifest.get("runtime"),
                "size": v.size,
                "published_by": v.published_by,
                "requirements": v.manifest.get("requirements") or [],
                "signature": v.manifest.get("signature"),
                "example": v.manifest.get("example"),
            }
            for v in versions
        ],
        "instances": [
            {
                "version": d.version,
                "state": d.state,
                "pid": d.pid,
                "port": d.port,
                "workers": d.workers,
                "started": isoformat(d.started),
            }
            for d in model.deployments
        ],
        "created": isoformat(model.created),
        "updated": isoformat(model.updated),
    }


def check_batching(batching):
    """``True``/``"on"`` (the serving runtime's defaults), ``False``/``"off"``/``None``, or
    ``{"max_size": rows, "max_wait_ms": ms}`` -> what is stored (a dict, or None for off)."""
    if batching in (None, False, "off"):
        return None
    if batching in (True, "on"):
        batching = {}
    if not isinstance(batching, dict) or set(batching) - {"max_size", "max_wait_ms"}:
        raise BadRequest(
            "batching must be on, off or {max_size, max_wait_ms}", {"field": "batching"}
        )
    size = batching.get("max_size", ServingSettings.batch_max_size)
    wait = batching.get("max_wait_ms", ServingSettings.batch_max_wait_ms)
    for field, value, low, high in (
        ("max_size", size, 1, MAX_BATCH_SIZE),
        ("max_wait_ms", wait, 0, 1000),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise BadRequest(
                f"batching {field} must be a whole number from {low} to {high}, got {value!r}",
                {"field": f"batching.{field}"},
            )
    return {"max_size": size, "max_wait_ms": wait}


def check_replicas(replicas, max_workers):
    """``replicas`` if it is a whole number from 1 to ``max_workers``; else a 400 saying so."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise BadRequest(
            f"replicas must be a positive integer, got {replicas!r}", {"field": "replicas"}
        )
    if replicas > max_workers:
        raise BadRequest(
            f"replicas {replicas} is above the limit of {max_workers} (PublisherApp.max_workers)",
            {"field": "replicas", "limit": max_workers},
        )
    return replicas
