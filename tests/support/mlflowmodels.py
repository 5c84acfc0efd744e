"""MLflow models saved the way each flavor saves them by default (real MLflow, mlflow-skinny),
for the unit tests of their conversion (tests/unit/test_mlflow_models.py) and their publish
through the hub (test_mlflow_publish.py)."""

import json
import os
import subprocess
import sys

import cloudpickle
import mlflow
from sklearn.linear_model import LogisticRegression


class Scaled(mlflow.pyfunc.PythonModel):
    """A custom pyfunc whose answer depends on an artifact it reads in load_context."""

    def load_context(self, context):
        with open(context.artifacts["factor"]) as fh:
            self.factor = float(fh.read())

    def predict(self, context, model_input, params=None):
        return model_input.sum(axis=1) * self.factor


def save(kind, path, X, y):
    """Save a model of ``kind`` the way its MLflow flavor does by default."""
    example = X.head(3)
    if kind == "sklearn-skops":  # MLflow 3's default for scikit-learn
        mlflow.sklearn.save_model(
            LogisticRegression(max_iter=500).fit(X, y), path, input_example=example
        )
    elif kind == "sklearn-cloudpickle":
        mlflow.sklearn.save_model(
            LogisticRegression(max_iter=500).fit(X, y),
            path,
            serialization_format="cloudpickle",
            input_example=example,
        )
    elif kind == "xgboost":
        import xgboost

        mlflow.xgboost.save_model(
            xgboost.XGBClassifier(n_estimators=5).fit(X, y), path, input_example=example
        )
    elif kind == "lightgbm":
        import lightgbm

        mlflow.lightgbm.save_model(
            lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y),
            path,
            input_example=example,
        )
    elif kind == "pyfunc":
        factor = path.with_name(path.name + "-factor.txt")
        factor.write_text("2.5")
        # pickled by value, as a class written in a notebook is (this module is not importable
        # where the model is served)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            mlflow.pyfunc.save_model(
                path,
                python_model=Scaled(),
                artifacts={"factor": str(factor)},
                input_example=example,
            )
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return path


KINDS = ["sklearn-skops", "sklearn-cloudpickle", "xgboost", "lightgbm", "pyfunc"]


def publish_with_the_cli(hub, src, name):
    """``mlhub models publish DIR --name NAME`` as the README shows it (``MLHUB_URL`` and
    ``MLHUB_TOKEN`` of alice); asserts it succeeded."""
    from support.embedded_hub import MLHUB

    env = {**os.environ, "MLHUB_URL": hub.url, "MLHUB_TOKEN": hub.alice}
    done = subprocess.run(
        [MLHUB, "models", "publish", str(src), "--name", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def predict_with_curl(hub, name, frame):
    """alice's ``curl -d`` of ``frame``'s rows to the model through the hub's public URL: the
    predictions it answers (asserting it answered some)."""
    body = json.dumps({"instances": frame.to_dict(orient="records")})
    answer = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: Bearer {hub.alice}",
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
    return got["predictions"]
