"""Publish resources: Kubernetes quantities checked before anything changes, turned into a
container's requests and limits, merged over a deployer's default."""

from decimal import Decimal

import pytest

from mlhub import resources
from mlhub.errors import BadRequest


@pytest.mark.parametrize(
    "value, amount",
    [("500m", "0.5"), ("2", "2"), ("1Gi", str(2**30)), ("512Mi", str(512 * 2**20)), ("1.5", "1.5")],
)
def test_kubernetes_quantities_are_read(value, amount):
    assert resources.quantity(value) == Decimal(amount)


@pytest.mark.parametrize("value", ["2 GB", "abc", "-1", "-500m", "", "1GB", "1gi", "1e3"])
def test_a_bad_quantity_is_refused_naming_the_value(value):
    with pytest.raises(BadRequest) as err:
        resources.check_resources({"memory": value})
    assert repr(value) in err.value.message and err.value.detail == {"field": "resources.memory"}


def test_publish_resources_become_requests_and_limits():
    given = {"cpu": "500m", "memory": "512Mi", "cpu_limit": "2", "memory_limit": "1Gi"}
    assert resources.check_resources(given) == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    with pytest.raises(BadRequest, match="the cpu request 3 is above its limit 2"):
        resources.check_resources({"cpu": "3", "cpu_limit": "2"})
    with pytest.raises(BadRequest, match="not gpu"):
        resources.check_resources({"gpu": "1"})


def test_container_resources_fill_what_a_publish_leaves_out_from_the_default():
    default = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    given = {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}
    assert resources.container_resources(default, given) == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"memory": "2Gi", "cpu": "1"},
    }
    assert resources.container_resources(default, None) == default
    assert resources.container_resources({}, None) == {}
    # a request above the default limit cannot be served: refused, not silently changed
    with pytest.raises(BadRequest, match="memory request 4Gi is above its limit 2Gi"):
        resources.container_resources(default, {"requests": {"memory": "4Gi"}})
