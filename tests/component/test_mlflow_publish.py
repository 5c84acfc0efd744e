"""MLflow models as users have them, published with ``mlhub models publish DIR`` (the README's
command, with ``MLHUB_URL`` and ``MLHUB_TOKEN``) to a real ``mlhub up`` and called through the
hub's public URL with ``curl -d``: each answers what ``mlflow.pyfunc.load_model(DIR).predict``
gives in the notebook, served as its owner's account in multi-user mode.
"""

import numpy as np
import pytest
from sklearn.datasets import load_iris

pytestmark = [pytest.mark.component, pytest.mark.slow]
mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is a development dependency")
from support.mlflowmodels import KINDS, predict_with_curl, publish_with_the_cli, save  # noqa: E402 (needs mlflow)


@pytest.mark.parametrize("kind", KINDS)
def test_published_mlflow_model_answers_as_in_the_notebook(hub, tmp_path, kind):
    X, y = load_iris(return_X_y=True, as_frame=True)
    src = save(kind, tmp_path / "mlflow-model", X, y)
    expected = np.asarray(mlflow.pyfunc.load_model(str(src)).predict(X.head(5)))
    name = f"mlflow-{kind}"
    publish_with_the_cli(hub, src, name)
    got = predict_with_curl(hub, name, X.head(5))
    np.testing.assert_allclose(np.asarray(got), expected)
