"""A model's compute resources as publishers give them: Kubernetes quantities (``500m``, ``2``,
``512Mi``, ``1Gi``) in the shape of a container's ``resources`` (``{"requests": ..., "limits":
...}``). Both modes read them: the Kubernetes deployer puts them on the serving container, the
local deployer turns the limits into cgroup or rlimit bounds (``mlhub.limits``), and the
publisher checks them before anything changes. No Kubernetes client is needed for any of it.
"""

import re
from decimal import Decimal

from mlhub.errors import BadRequest

# a Kubernetes resource quantity: a non-negative decimal with an optional SI/binary suffix
QUANTITY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
SUFFIXES = {
    None: 1,
    "m": Decimal("0.001"),
    **{s: 1000**i for i, s in enumerate("kMGTPE", 1)},
    **{s + "i": 1024**i for i, s in enumerate("KMGTPE", 1)},
}
# publish parameter -> (section, resource) of a container's ``resources``
RESOURCE_PARAMS = {
    "cpu": ("requests", "cpu"),
    "memory": ("requests", "memory"),
    "cpu_limit": ("limits", "cpu"),
    "memory_limit": ("limits", "memory"),
}


def quantity(value, field="quantity"):
    """The amount a Kubernetes quantity (``500m``, ``2``, ``1Gi``, ``512Mi``) stands for, as a
    ``Decimal``; ``BadRequest`` naming ``field`` and the value for anything else (``2 GB``,
    ``abc``, negative), so a publish is refused before the API server would refuse the pod."""
    match = QUANTITY.match(value) if isinstance(value, str) else None
    if match is None:
        raise BadRequest(
            f"{field.removeprefix('resources.')} must be a Kubernetes quantity such as 500m, 2, "
            f"512Mi or 1Gi, got {value!r}",
            {"field": field},
        )
    return Decimal(match.group(1)) * SUFFIXES[match.group(2)]


def check_resources(given):
    """``{"cpu", "memory", "cpu_limit", "memory_limit"}`` (any of them) -> the
    ``{"requests": ..., "limits": ...}`` stored with a model; each value is checked with
    ``quantity`` and a request above its own limit is refused."""
    unknown = set(given) - set(RESOURCE_PARAMS)
    if unknown:
        raise BadRequest(
            f"resources take {', '.join(RESOURCE_PARAMS)}, not {', '.join(sorted(unknown))}",
            {"field": "resources"},
        )
    out = {}
    for param, value in given.items():
        quantity(value, f"resources.{param}")
        section, name = RESOURCE_PARAMS[param]
        out.setdefault(section, {})[name] = value
    check_request_within_limit(out)
    return out


def check_request_within_limit(resources):
    """``BadRequest`` if a request is above the limit of the same resource (the API server would
    refuse every pod)."""
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    for name in set(requests) & set(limits):
        if quantity(requests[name]) > quantity(limits[name]):
            raise BadRequest(
                f"the {name} request {requests[name]} is above its limit {limits[name]}",
                {"field": f"resources.{name}"},
            )


def container_resources(default, given):
    """A serving container's ``resources``: ``given`` (a model's, see ``check_resources``) over
    ``default`` (``KubernetesDeployer.resources``), request by request and limit by limit."""
    merged = {}
    for section in ("requests", "limits"):
        values = {**(default or {}).get(section, {}), **(given or {}).get(section, {})}
        if values:
            merged[section] = values
    check_request_within_limit(merged)
    return merged
