"""R models in Kubernetes mode on the real test cluster: the publisher runs them with the
serving-r image (nginx -> plumber, built from images/serving-r) through the KubernetesDeployer,
and users call them through the hub's proxy with the same contract as Python models: R's
predictions, factor levels enforced, a rolling update under load with no failed request, and a
model needing R packages the image lacks refused at publish time, naming them.

Nothing asserts how long anything takes: waits only guard against hanging.
"""

import textwrap
import threading

import pytest
import requests
from embedded_hub import EmbeddedHub, wait_for
from kubetest import serving_image
from mlhub.errors import MlhubError
from mlhub.publisher.client import PublisherClient
from rmodels import constant_bundle, formula_bundle

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BRIDGE_IP = "172.17.0.1"  # the docker bridge: pods reach the hub and the publisher there


@pytest.fixture(scope="module")
def r_hub(tmp_path_factory, kube_cluster, namespace):
    """A real ``mlhub up`` whose KubernetesDeployer serves runtime r with serving-r, 2 workers
    (plumber processes) per pod."""
    image = serving_image("r")
    config = textwrap.dedent(
        f"""
        c.MlhubSettings.internal_ip = {BRIDGE_IP!r}
        c.PublisherApp.default_workers = 1
        c.PublisherApp.deployer_class = "mlhub.deployers.kubernetes.KubernetesDeployer"
        c.KubernetesDeployer.kubeconfig = {kube_cluster.kubeconfig!r}
        c.KubernetesDeployer.namespace = {namespace!r}
        c.KubernetesDeployer.images = {{"r": {image!r}}}
        c.KubernetesDeployer.workers_per_pod = 2
        c.KubernetesDeployer.image_pull_policy = "Never"
        c.KubernetesDeployer.route_target = "pod"
        c.KubernetesDeployer.drain_seconds = 3
        c.KubernetesDeployer.termination_grace_seconds = 10
        c.KubernetesDeployer.ready_timeout = 180
        c.KubernetesDeployer.route_check_interval = 2
        c.KubernetesDeployer.resources = {{"requests": {{"cpu": "50m", "memory": "64Mi"}}}}
        """
    )
    hub = EmbeddedHub(tmp_path_factory.mktemp("kube-r-hub"), config=config)
    try:
        hub.start()
        hub.passwords = {"alice": hub.add_user("alice")}
        hub.alice = hub.token("alice", hub.passwords["alice"])
        hub.client = PublisherClient(url=hub.url, token=hub.alice, poll_interval=0.2)
        yield hub
        hub.stop()
    finally:
        hub.kill()


def predict(hub, name, rows, session=requests):
    return session.post(
        f"{hub.url}models/alice/{name}/v1/predict",
        json={"instances": rows},
        headers={"Authorization": f"token {hub.alice}"},
        timeout=30,
    )


def test_an_r_model_serves_its_predictions_through_the_proxy(r_hub, tmp_path):
    model = r_hub.client.publish(formula_bundle(tmp_path / "f"), "formula-r")
    assert model["status"] == "ready" and model["versions"][0]["runtime"] == "r"
    rows = [
        {"temp": 0.5, "pressure": 1.25, "line": "a", "count": 2},
        {"temp": -1.0, "pressure": 0.0, "line": "c", "count": 7},
    ]
    answer = wait_for(lambda: predict(r_hub, "formula-r", rows), "predictions from the pod")
    assert answer.json()["predictions"] == pytest.approx([2 * 0.5 + 1.25 + 1 + 2, -2 + 3 + 7])
    bad = predict(r_hub, "formula-r", [dict(rows[0], line="z")])
    assert bad.status_code == 400 and "'a', 'b', 'c'" in bad.json()["error"]
    assert bad.json()["detail"]["column"] == "line"


def test_rolling_update_of_an_r_model_fails_no_request(r_hub, tmp_path):
    r_hub.client.publish(constant_bundle(tmp_path / "v1", 1.0), "const-r")
    answers, failures, halt = [], [], threading.Event()

    def load():
        session = requests.Session()
        while not halt.is_set():
            try:
                resp = predict(r_hub, "const-r", [{"x": 1.0}], session)
            except requests.RequestException as exc:
                failures.append(repr(exc))
                continue
            if resp.status_code == 200:
                answers.append(resp.json()["predictions"][0])
            else:
                failures.append(f"{resp.status_code} {resp.text[:200]}")

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_for(lambda: answers.count(1.0) >= 20, "answers from v1")
        r_hub.client.publish(constant_bundle(tmp_path / "v2", 2.0), "const-r")
        wait_for(lambda: answers.count(2.0) >= 20, "answers from v2")
    finally:
        halt.set()
        thread.join()
    assert failures == []
    switch = answers.index(2.0)
    assert set(answers[:switch]) == {1.0} and set(answers[switch:]) == {2.0}


def test_a_model_needing_packages_the_image_lacks_is_refused(r_hub, tmp_path):
    packages = [{"name": "notAnRPackage", "version": "0.1"}]
    bundle = constant_bundle(tmp_path / "n", 1.0, name="needy-r", packages=packages)
    with pytest.raises(MlhubError) as caught:
        r_hub.client.publish(bundle, "needy-r")
    assert "notAnRPackage (0.1)" in caught.value.message, caught.value.message
