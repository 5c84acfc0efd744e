"""MLflow models as users have them, published with ``mlhub models publish DIR`` (the README's
command, with ``MLHUB_URL`` and ``MLHUB_TOKEN``) to a real ``mlhub up`` and called through the
hub's public URL with ``curl -d``: each answers what ``mlflow.pyfunc.load_model(DIR).predict``
gives in the notebook, served as its owner's account in multi-user mode.
"""

import json
import os
import subprocess

import numpy as np
import pytest
from sklearn.datasets import load_iris
from support.embedded_hub import MLHUB

pytestmark = [pytest.mark.component, pytest.mark.slow]
mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is a development dependency")
from support.mlflowmodels import KINDS, save  # noqa: E402 (needs mlflow)


@pytest.mark.parametrize("kind", KINDS)
def test_published_mlflow_model_answers_as_in_the_notebook(hub, tmp_path, kind):
    X, y = load_iris(return_X_y=True, as_frame=True)
    src = save(kind, tmp_path / "mlflow-model", X, y)
    expected = np.asarray(mlflow.pyfunc.load_model(str(src)).predict(X.head(5)))
    env = {**os.environ, "MLHUB_URL": hub.url, "MLHUB_TOKEN": hub.alice}
    name = f"mlflow-{kind}"
    done = subprocess.run(
        [MLHUB, "models", "publish", str(src), "--name", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.dumps({"instances": X.head(5).to_dict(orient="records")})
    answer = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: token {hub.alice}",
            "-d",
            body,
            f"{hub.url}models/alice/{name}/v1/predict",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    got = json.loads(answer.stdout)
    assert "predictions" in got, got
    np.testing.assert_allclose(np.asarray(got["predictions"]), expected)
