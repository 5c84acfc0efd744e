"""MLflow models saved the way each flavor saves them by default (real MLflow, mlflow-skinny),
for the unit tests of their conversion (tests/unit/test_mlflow_models.py) and their publish
through the hub (test_mlflow_publish.py)."""

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
