"""The bundle step of a publish: what gets captured, and the clear errors for bad input.

Each captured bundle is loaded back in a fresh interpreter, as the serving runtime would, so
"the model was captured" means "it predicts somewhere that never saw this notebook".
"""

import importlib.metadata
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlhub.bundle import load_manifest
from mlhub.errors import InvalidBundle, InvalidName
from mlhub.extension.client import bundle_model


@pytest.fixture(scope="module")
def table():
    X, y = make_classification(120, n_features=2, n_informative=2, n_redundant=0, random_state=1)
    frame = pd.DataFrame(
        {
            "temp": X[:, 0],
            "pressure": X[:, 1].astype("float32"),
            "count": np.arange(120, dtype="int64"),
            "line": np.where(y == 1, "L1", "L2"),
        }
    )
    return frame, y


@pytest.fixture(scope="module")
def pipeline(table):
    X, y = table
    pre = make_column_transformer(
        (StandardScaler(), ["temp", "pressure", "count"]), (OneHotEncoder(), ["line"])
    )
    return make_pipeline(pre, LogisticRegression()).fit(X, y)


def predict_elsewhere(bundle_dir, rows):
    """Load the bundle in a fresh interpreter (like the serving runtime) and predict ``rows``."""
    code = textwrap.dedent(
        """
        import json, sys
        import pandas as pd
        from mlhub.bundle import load_model
        model = load_model(sys.argv[1])
        rows = json.loads(sys.argv[2])
        X = pd.DataFrame(rows) if isinstance(rows[0], dict) else rows
        print(json.dumps([p.item() if hasattr(p, "item") else p for p in model.predict(X)]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bundle_dir), json.dumps(rows)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def test_pipeline_with_a_frame_records_signature_example_and_requirements(
    tmp_path, table, pipeline
):
    X, _ = table
    manifest = bundle_model(pipeline, tmp_path / "b", "defect-lr", X.head(3), description="d")
    assert manifest["flavor"] == "sklearn"
    assert manifest["signature"] == {
        "kind": "dataframe",
        "inputs": [
            {"name": "temp", "type": "double"},
            {"name": "pressure", "type": "float"},
            {"name": "count", "type": "long"},
            {"name": "line", "type": "string"},
        ],
    }
    assert manifest["example"][0]["line"] in ("L1", "L2") and len(manifest["example"]) == 3
    assert f"scikit-learn=={sklearn.__version__}" in manifest["requirements"]
    assert any(r.startswith("pandas==") for r in manifest["requirements"])
    assert manifest["description"] == "d"
    assert load_manifest(tmp_path / "b") == manifest
    rows = manifest["example"]
    assert predict_elsewhere(tmp_path / "b", rows) == pipeline.predict(X.head(3)).tolist()


def test_skops_serialization_is_offered_for_sklearn(tmp_path, table, pipeline):
    X, _ = table
    manifest = bundle_model(pipeline, tmp_path / "b", "defect-lr", X.head(2), serialization="skops")
    assert manifest["model_file"] == "model/model.skops"
    assert any(r.startswith("skops==") for r in manifest["requirements"])


def test_xgboost_model(tmp_path, table):
    xgboost = pytest.importorskip("xgboost")
    X, y = table
    X = X.drop(columns="line")
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    manifest = bundle_model(model, tmp_path / "b", "xgb", X.head(2))
    assert manifest["flavor"] == "xgboost"
    assert f"xgboost=={importlib.metadata.version('xgboost')}" in manifest["requirements"]
    assert (
        predict_elsewhere(tmp_path / "b", manifest["example"]) == model.predict(X.head(2)).tolist()
    )


def test_lightgbm_model(tmp_path, table):
    lightgbm = pytest.importorskip("lightgbm")
    X, y = table
    X = X.drop(columns="line")
    model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    manifest = bundle_model(model, tmp_path / "b", "lgbm", X.head(2))
    assert manifest["flavor"] == "lightgbm"
    assert f"lightgbm=={importlib.metadata.version('lightgbm')}" in manifest["requirements"]
    assert (
        predict_elsewhere(tmp_path / "b", manifest["example"]) == model.predict(X.head(2)).tolist()
    )


def test_plain_class_from_a_notebook_is_pickled_by_value(tmp_path):
    # a notebook's classes live in __main__, which the serving process does not have
    notebook = {"__name__": "__main__"}
    exec(
        textwrap.dedent(
            """
            OFFSET = 10

            class Scorer:
                def __init__(self, factor):
                    self.factor = factor

                def predict(self, X):
                    return [self.factor * sum(row) + OFFSET for row in X]
            """
        ),
        notebook,
    )
    model = notebook["Scorer"](3)
    manifest = bundle_model(model, tmp_path / "b", "scorer", [[1, 2], [3, 4]])
    assert manifest["flavor"] == "pyfunc"
    assert manifest["signature"]["kind"] == "array"
    assert any(r.startswith("cloudpickle==") for r in manifest["requirements"])
    assert predict_elsewhere(tmp_path / "b", [[1, 2], [3, 4]]) == [19, 31]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("thing", [pd.DataFrame({"a": [1]}), "model", LogisticRegression])
def test_an_object_without_predict_is_not_a_model(tmp_path, thing):
    with pytest.raises(InvalidBundle) as err:
        bundle_model(thing, tmp_path / "b", "m")
    assert "is not a model" in err.value.message and "predict()" in err.value.message
    assert err.value.detail["field"] == "model"


def test_an_unfitted_estimator_says_fit_it_first(tmp_path):
    with pytest.raises(InvalidBundle, match=r"not fitted: call \.fit"):
        bundle_model(RandomForestClassifier(), tmp_path / "b", "rf")


def test_example_with_other_columns_names_missing_and_unexpected(tmp_path, table, pipeline):
    X, _ = table
    bad = X.head(2).rename(columns={"temp": "temperature"})
    with pytest.raises(InvalidBundle) as err:
        bundle_model(pipeline, tmp_path / "b", "defect-lr", bad)
    assert "missing ['temp'], unexpected ['temperature']" in err.value.message
    assert err.value.detail == {
        "field": "example",
        "missing": ["temp"],
        "unexpected": ["temperature"],
    }
    assert not (tmp_path / "b").exists()


def test_example_with_columns_in_another_order_says_the_order(tmp_path, table, pipeline):
    X, _ = table
    with pytest.raises(InvalidBundle, match="another order"):
        bundle_model(pipeline, tmp_path / "b", "defect-lr", X.head(2)[["line", *X.columns[:3]]])


def test_example_with_the_wrong_width_says_how_many_columns(tmp_path):
    X, y = make_classification(40, n_features=4, random_state=0)
    model = LogisticRegression().fit(X, y)
    with pytest.raises(InvalidBundle, match="has 3 columns but the model was trained on 4"):
        bundle_model(model, tmp_path / "b", "lr", X[:2, :3])


def test_example_the_model_cannot_predict_relays_the_models_error(tmp_path):
    class Picky:
        def predict(self, X):
            raise ValueError("needs a 'temp' column")

    with pytest.raises(InvalidBundle, match="failed to predict on the example.*needs a 'temp'"):
        bundle_model(Picky(), tmp_path / "b", "picky", [[1.0]])


@pytest.mark.parametrize("name", ["My_Model", "", "-x", "a" * 64])
def test_invalid_name_says_what_a_name_must_be(tmp_path, pipeline, name):
    with pytest.raises(InvalidName, match="DNS label"):
        bundle_model(pipeline, tmp_path / "b", name)
