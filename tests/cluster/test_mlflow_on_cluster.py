"""MLflow models as users have them, published with ``mlhub models publish DIR`` to a publisher
whose KubernetesDeployer runs them on the real test cluster, and called through the hub's proxy
with ``curl -d`` as the README shows: each answers what ``mlflow.pyfunc.load_model(DIR).predict``
gives in the notebook. scikit-learn models become native bundles and run in serving-python;
the rest (custom ``python_model`` with an artifact, xgboost, lightgbm) are served whole through
``mlflow.pyfunc`` in serving-mlflow, which has MLflow (serving-python does not, to stay small).

Nothing asserts how long anything takes: waits only guard against hanging.
"""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from support.kubetest import serving_image

from mlhub import __version__ as VERSION
from mlhub.deployers import kube_objects
from mlhub.deployers.base import ModelRef

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is a development dependency")
from support.mlflowmodels import KINDS, predict_with_curl, publish_with_the_cli, save  # noqa: E402 (needs mlflow)

HUB_CONFIG = f"""
c.KubernetesDeployer.images["mlflow"] = "mlhub/serving-mlflow:{VERSION}"
c.KubernetesDeployer.ready_timeout = 180
"""
# what each kind of MLflow model runs in
IMAGE = {
    "sklearn-skops": f"mlhub/serving-python:{VERSION}",
    "xgboost": f"mlhub/serving-mlflow:{VERSION}",
    "lightgbm": f"mlhub/serving-mlflow:{VERSION}",
    "pyfunc": f"mlhub/serving-mlflow:{VERSION}",
}


@pytest.fixture(scope="module")
def mlflow_image(kube_cluster):
    return serving_image("mlflow")


# (cloudpickle takes the skops path's route on the cluster; the component test covers both)
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "sklearn-cloudpickle"])
def test_an_mlflow_model_answers_on_the_cluster_as_in_the_notebook(
    mlflow_image, kube_hub, kube_api, tmp_path, kind
):
    X, y = load_iris(return_X_y=True, as_frame=True)
    src = save(kind, tmp_path / "mlflow-model", X, y)
    expected = np.asarray(mlflow.pyfunc.load_model(str(src)).predict(X.head(5)))
    name = f"mlflow-{kind}"
    publish_with_the_cli(kube_hub, src, name)

    selector = f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', name))}"
    path = f"/apis/apps/v1/namespaces/{kube_hub.namespace}/deployments"
    (deployment,) = kube_api.items(path, selector)
    (serving,) = deployment["spec"]["template"]["spec"]["containers"]
    assert serving["image"] == IMAGE[kind]

    got = predict_with_curl(kube_hub, name, X.head(5))
    np.testing.assert_allclose(np.asarray(got), expected)
    kube_hub.client.delete(name)
