"""Autoscaling as far as this cluster can show it: the HPA object, at the API version discovery
finds (``autoscaling/v2beta2`` on 1.20), bounded by the model's replicas and the setting, kept in
step with a scale, and deleted with the model. The test cluster has no metrics-server, so the HPA
never scales (docs/internals.md says how to check that on a real cluster)."""

import pytest
from support.embedded_hub import wait_for
from support.publishing import constant_bundle, predict

from mlhub.deployers import kube_objects
from mlhub.deployers.base import ModelRef

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HUB_CONFIG = """
c.KubernetesDeployer.autoscaling = True
c.KubernetesDeployer.max_replicas = 4
c.KubernetesDeployer.cpu_utilization = 60
"""
SELECTOR = f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', 'elastic'))}"


def test_an_autoscaled_model_gets_an_hpa_that_follows_scale_and_delete(
    kube_hub, kube_api, tmp_path
):
    hub = kube_hub
    hpas = f"/apis/autoscaling/v2beta2/namespaces/{hub.namespace}/horizontalpodautoscalers"
    hub.client.publish(constant_bundle(tmp_path / "v1", 7.0), "elastic")
    assert predict(hub, "alice", "elastic", hub.alice).json()["predictions"] == [7.0]
    (hpa,) = kube_api.items(hpas, SELECTOR)
    assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 4
    assert hpa["spec"]["scaleTargetRef"]["name"] == kube_objects.object_name(
        ModelRef("alice", "elastic")
    )
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}

    hub.client.scale("elastic", 2)
    (hpa,) = kube_api.items(hpas, SELECTOR)
    assert hpa["spec"]["minReplicas"] == 2

    hub.client.delete("elastic")
    wait_for(lambda: not kube_api.items(hpas, SELECTOR), "the HPA to be deleted")
