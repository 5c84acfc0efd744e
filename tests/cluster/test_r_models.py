"""R models in Kubernetes mode on the real test cluster: the publisher runs them with the
serving-r image (nginx -> plumber, built from images/serving-r) through the KubernetesDeployer,
and users call them through the hub's proxy with the same contract as Python models: R's
predictions, factor levels enforced, a rolling update under load with no failed request, and a
model needing R packages the image lacks refused at publish time, naming them.

Nothing asserts how long anything takes: waits only guard against hanging.
"""

import textwrap

import pytest
from support.embedded_hub import running_hub, wait_for
from support.kubetest import deployer_config, serving_image
from support.publishing import predict
from support.rmodels import constant_bundle, formula_bundle
from support.rolling_update import roll_under_load

from mlhub.errors import MlhubError

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def r_hub(tmp_path_factory, kube_cluster, namespace):
    """A real ``mlhub up`` whose KubernetesDeployer serves runtime r with serving-r, 2 workers
    (plumber processes) per pod."""
    config = deployer_config(kube_cluster.kubeconfig, namespace, serving_image("r"), "r")
    config += textwrap.dedent(
        """
        c.KubernetesDeployer.workers_per_pod = 2
        c.KubernetesDeployer.ready_timeout = 180
        """
    )
    with running_hub(tmp_path_factory.mktemp("kube-r-hub"), config) as hub:
        yield hub


def test_an_r_model_serves_its_predictions_through_the_proxy(r_hub, tmp_path):
    model = r_hub.client.publish(formula_bundle(tmp_path / "f"), "formula-r")
    assert model["status"] == "ready" and model["versions"][0]["runtime"] == "r"
    rows = [
        {"temp": 0.5, "pressure": 1.25, "line": "a", "count": 2},
        {"temp": -1.0, "pressure": 0.0, "line": "c", "count": 7},
    ]
    answer = wait_for(
        lambda: predict(r_hub, "alice", "formula-r", r_hub.alice, rows), "predictions from the pod"
    )
    assert answer.json()["predictions"] == pytest.approx([2 * 0.5 + 1.25 + 1 + 2, -2 + 3 + 7])
    bad = predict(r_hub, "alice", "formula-r", r_hub.alice, [dict(rows[0], line="z")])
    assert bad.status_code == 400 and "'a', 'b', 'c'" in bad.json()["error"]
    assert bad.json()["detail"]["column"] == "line"


def test_rolling_update_of_an_r_model_fails_no_request(r_hub, tmp_path):
    r_hub.client.publish(constant_bundle(tmp_path / "v1", 1.0), "const-r")
    roll_under_load(r_hub, "const-r", constant_bundle(tmp_path / "v2", 2.0), rows=[{"x": 1.0}])


def test_a_model_needing_packages_the_image_lacks_is_refused(r_hub, tmp_path):
    packages = [{"name": "notAnRPackage", "version": "0.1"}]
    bundle = constant_bundle(tmp_path / "n", 1.0, name="needy-r", packages=packages)
    with pytest.raises(MlhubError) as caught:
        r_hub.client.publish(bundle, "needy-r")
    assert "notAnRPackage (0.1)" in caught.value.message, caught.value.message
