"""What the publisher's API shows and accepts of a model, as pure functions of their input
(no store, no deployer): the ``Model`` object (``model_view``), the ``batching`` and
``inference_log`` publish options (``check_batching``, ``check_inference_log``), a replica
count (``check_replicas``), an alias name (``check_alias``) and a canary's or shadow's share
(``check_share``)."""

import datetime
import re

from mlhub.deployers.base import ModelRef
from mlhub.errors import BadRequest
from mlhub.publisher.store import isoformat
from mlhub.serving.settings import Settings as ServingSettings
from mlhub.steps import CANARY, DEFAULT_ALIAS, SHADOW

MAX_BATCH_SIZE = 512  # one serving thread per row a batch may hold (MLHUB_THREADS)
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")


def model_view(model, public_url, sleep_after):
    """The API's ``Model`` object (openapi.yaml) of a stored model; ``public_url`` without its
    trailing slash, ``sleep_after`` the seconds of no request after which it sleeps (its own
    or the platform's; 0: never)."""
    ref = ModelRef(model.owner, model.name)
    url = f"{public_url}{ref.url_prefix}/"
    versions = sorted(model.versions, key=lambda v: v.created, reverse=True)
    default = {
        "name": DEFAULT_ALIAS,
        "version": model.current_version,
        "since": isoformat(model.version(model.current_version).live_since)
        if model.current_version
        else None,
        "url": url,
        "asleep": model.status == "sleeping",
    }
    aliases = [
        {
            "name": a.name,
            "version": a.version,
            "since": isoformat(a.since),
            "url": f"{public_url}{ref.with_alias(a.name).url_prefix}/",
            "asleep": bool(a.asleep),
        }
        for a in sorted(model.aliases, key=lambda a: a.name)
    ]
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
        "inference_log": model.inference_log,
        "sleep_after": sleep_after,
        "aliases": [default, *aliases],
        "canary": _pointer(model, CANARY, model.canary_percent),
        "shadow": _pointer(model, SHADOW, model.shadow_percent),
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


def _pointer(model, alias, percent):
    """``{"version", "percent"}`` of a running canary or shadow (its alias), or None."""
    found = model.alias(alias)
    return {"version": found.version, "percent": percent} if found and percent else None


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


MAX_SLEEP_AFTER = 366 * 86400  # a year: more is a typo, and "never" is 0


def check_sleep_after(seconds):
    """A model's ``sleep_after``: whole seconds from 0 (never sleeps) to a year, or None (the
    platform's default)."""
    if seconds is None:
        return None
    whole = isinstance(seconds, int) and not isinstance(seconds, bool)
    if not whole or not 0 <= seconds <= MAX_SLEEP_AFTER:
        raise BadRequest(
            "sleep_after must be the seconds without a request after which the model sleeps "
            f"(0: never; at most {MAX_SLEEP_AFTER}) or null (the platform's default), "
            f"got {seconds!r}",
            {"field": "sleep_after"},
        )
    return seconds


def check_inference_log(sample):
    """``True``/``"on"`` (every request), ``False``/``"off"``/``None``/0 (off) or a fraction of
    requests in (0, 1] -> what is stored (the fraction, or None for off)."""
    if sample in (None, False, "off", 0):
        return None
    if sample in (True, "on"):
        return 1.0
    if isinstance(sample, str):
        try:
            sample = float(sample)
        except ValueError:
            sample = None
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 <= sample <= 1:
        raise BadRequest(
            f"inference_log must be on, off or the fraction of requests to keep (0 to 1), "
            f"got {sample!r}",
            {"field": "inference_log"},
        )
    return float(sample) or None


def parse_time(text, field="since", now=None):
    """A time a query gives as ISO 8601 (``2026-12-07T10:00:00Z``; without a zone, UTC) or as
    an age (``90s``, ``15m``, ``2h``, ``7d``, ``1w``: that long before ``now``), as naive UTC."""
    now = now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    text = text.strip()
    if age := _AGE.match(text.lower()):
        return now - datetime.timedelta(seconds=float(age[1]) * _AGE_SECONDS[age[2]])
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"?{field}= must be a time (2026-12-07T10:00:00Z) or an age (15m, 2h, 7d), "
            f"got {text!r}",
            {"field": field},
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when


def check_alias(alias):
    """``alias`` if it is a valid alias name (lowercase letters, digits and ``-``, 1 to 32,
    starting with a letter: it is part of URLs and of Kubernetes object names); else a 400."""
    if alias in (CANARY, SHADOW):
        raise BadRequest(
            f"{alias} is the alias of a model's {alias}, moved by its own commands: "
            f"mlhub models {alias} NAME --version V --percent P",
            {"field": "alias"},
        )
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise BadRequest(
            "an alias is 1 to 32 lowercase letters, digits and '-', starting with a letter and "
            f"not ending with '-' (such as {DEFAULT_ALIAS} or staging), got {alias!r}",
            {"field": "alias"},
        )
    return alias


def check_share(percent, bounds, meaning):
    """``percent`` (a number or its text) rounded to two decimals, if it is within ``bounds``
    (``(low, high)``); else a 400 saying it is the share ``meaning``."""
    low, high = bounds
    value = None
    if not isinstance(percent, bool):
        try:
            value = float(percent)
        except (TypeError, ValueError):
            pass
    if value is None or not low <= value <= high:
        raise BadRequest(
            f"percent is the share {meaning}, from {low:g} to {high:g}, got {percent!r}",
            {"field": "percent"},
        )
    return round(value, 2)


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
