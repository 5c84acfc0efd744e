"""Publish a model from a notebook running in a pod, and get its predictions through the proxy.

One real ``mlhub up`` in Kubernetes mode on the test cluster: KubeSpawner runs the user's
python-profile server in a pod of the notebook-python image, and the publisher runs models with
the KubernetesDeployer. The test runs code in the user's kernel in that pod, through the hub's
proxy, as JupyterLab does: it fits a scikit-learn model and calls ``mlhub.publish``, which
reaches the publisher from the pod (``MLHUB_PUBLISHER_URL`` on ``MlhubSettings.internal_ip``).
The model then answers on ``/models/<user>/pod-model/v1/predict`` from a serving pod.
"""

import json

import pytest
import requests
from support.embedded_hub import wait_for
from support.kernel_channel import execute
from support.kube_hub import USER, kube_mode_hub, stop_server
from support.kubetest import deployer_config
from support.standard_images import standard_images

from mlhub.deployers import kube_objects
from mlhub.deployers.base import ModelRef
from mlhub.profiles import load_profiles
from mlhub.publisher.client import PublisherClient

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    # a cold machine builds the notebook image first (cached by content afterwards)
    pytest.mark.timeout(3600),
]

MODEL = "pod-model"
# Runs in the user's kernel, in the pod: fit, publish, print what the model itself predicts.
NOTEBOOK_CODE = f"""
import json
import numpy as np
import mlhub
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(7)
X = rng.normal(size=(60, 3))
y = (X[:, 0] + X[:, 1] > 0).astype(int)
model = LogisticRegression().fit(X, y)
result = mlhub.publish(model, name={MODEL!r}, example=X[:2], progress=lambda *a: None)
print(json.dumps({{"rows": X[:8].tolist(), "predictions": model.predict(X[:8]).tolist()}}))
"""


@pytest.fixture(scope="module")
def python_profile(kube_cluster):
    [profile] = [p for p in load_profiles() if p.slug == "python"]
    assert standard_images([profile.image]) == [profile.image], (
        f"`mlhub images build` made no {profile.image}"
    )
    return profile


@pytest.fixture(scope="module")
def pod_hub(tmp_path_factory, kube_cluster, kube_api, image, namespace, python_profile):
    """KubeSpawner for the notebook servers and the KubernetesDeployer for the models, in one
    hub (the models in ``namespace``, the servers in a namespace of their own)."""
    models = deployer_config(kube_cluster.kubeconfig, namespace, image)
    with kube_mode_hub(tmp_path_factory, kube_cluster, kube_api, models) as hub:
        yield hub


def test_publish_from_a_notebook_in_a_pod_and_predict_through_the_proxy(
    pod_hub, kube_api, namespace, python_profile
):
    hub = pod_hub
    session = hub.login(USER, hub.password)
    token = hub.token(USER, hub.password)
    auth = {"Authorization": f"token {token}"}
    start = hub.hub_api(
        session, "POST", f"/users/{USER}/server", json={"profile": python_profile.slug}
    )
    assert start.status_code in (201, 202), start.text
    hub.wait_ready(session, USER)
    # the server is a pod of the profile's image
    pod = kube_api.get(f"/api/v1/namespaces/{hub.namespace}/pods/jupyter-{USER}")
    assert pod["spec"]["containers"][0]["image"] == python_profile.image

    server = f"{hub.url}user/{USER}"
    kernel = requests.post(
        f"{server}/api/kernels", json={"name": "python3"}, headers=auth, timeout=60
    )
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    client = PublisherClient(url=hub.url, token=token, poll_interval=0.5)
    url = f"{hub.url}models/{USER}/{MODEL}/v1/predict"
    try:
        printed = execute(server, kernel_id, NOTEBOOK_CODE, token, timeout=600)
        last = printed.splitlines()[-1] if printed else ""
        assert last.startswith("{"), printed
        seen = json.loads(last)

        # the model runs in a serving pod of the models' namespace
        assert client.get(MODEL)["status"] == "ready"
        assert pods(kube_api, namespace), "no serving pod of the model"

        body = {"instances": seen["rows"]}
        resp = requests.post(url, json=body, headers=auth, timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.json()["predictions"] == seen["predictions"]
        # no token: refused
        assert requests.post(url, json=body, timeout=60).status_code == 401
    finally:
        requests.delete(f"{server}/api/kernels/{kernel_id}", headers=auth, timeout=60)
        client.delete(MODEL)
        stop_server(hub, session)

    # deleted: no serving pod left, and the endpoint says the model is not there
    wait_for(lambda: not pods(kube_api, namespace), "the model's pods to go")
    resp = requests.post(url, json={"instances": seen["rows"]}, headers=auth, timeout=60)
    assert resp.status_code == 404 and MODEL in resp.json()["error"], resp.text


def pods(kube_api, namespace):
    """The pods of ``USER``'s ``MODEL`` (by the deployer's label)."""
    selector = f"mlhub.io/model-id={kube_objects.model_id(ModelRef(USER, MODEL))}"
    return kube_api.items(f"/api/v1/namespaces/{namespace}/pods", selector)
