"""MLflow models as users save them (real MLflow, mlflow-skinny): each flavor's directory
becomes a bundle that the serving runtime loads and answers with exactly what
``mlflow.pyfunc.load_model(DIR).predict`` gives, and what cannot be served is refused saying
what to do. The same directories go through ``mlhub models publish`` and the public URL in
tests/component/test_mlflow_publish.py.
"""

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris
from werkzeug.test import Client

from mlhub.bundle import load_manifest, load_model
from mlhub.bundle.mlflow_models import from_mlflow, is_mlflow_dir
from mlhub.errors import InvalidBundle
from mlhub.serving.app import create_app
from mlhub.serving.metrics import Metrics
from mlhub.serving.model import ServedModel
from mlhub.serving.settings import Settings

mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is a development dependency")
from support.mlflowmodels import KINDS, save  # noqa: E402 (needs mlflow)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.mark.parametrize("kind", KINDS)
def test_each_flavor_predicts_what_mlflow_predicts(kind, iris, tmp_path):
    X, y = iris
    src = save(kind, tmp_path / "mlflow-model", X, y)
    assert is_mlflow_dir(src)
    manifest = from_mlflow(src, tmp_path / "bundle", name="from-mlflow")
    assert manifest == load_manifest(tmp_path / "bundle")
    assert [i["name"] for i in manifest["signature"]["inputs"]] == list(X.columns)
    assert manifest["example"][0] == X.head(1).to_dict(orient="records")[0]
    assert any(r.startswith("mlflow") for r in manifest["requirements"])
    if kind.startswith("sklearn"):  # served natively, without MLflow
        assert manifest["flavor"] == "sklearn"
    else:
        assert (manifest["flavor"], manifest["serialization"]) == ("pyfunc", "mlflow")
    expected = np.asarray(mlflow.pyfunc.load_model(str(src)).predict(X.head(20)))
    for artifact in tmp_path.glob("*-factor.txt"):  # the bundle holds its own copy
        artifact.unlink()

    # through the serving app, as a caller sends rows
    served = ServedModel(
        tmp_path / "bundle", manifest=manifest, model=load_model(tmp_path / "bundle")
    )
    app = create_app(
        Settings(bundle=str(tmp_path / "bundle"), auth=False), served, metrics=Metrics()
    )
    answer = Client(app).post(
        "/v1/predict", json={"instances": X.head(20).to_dict(orient="records")}
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    np.testing.assert_allclose(np.asarray(answer.json["predictions"]), expected)


def test_a_model_without_a_python_function_flavor_is_refused_saying_what_to_do(tmp_path):
    src = tmp_path / "onnx-only"
    src.mkdir()
    (src / "MLmodel").write_text(yaml.safe_dump({"flavors": {"onnx": {"data": "model.onnx"}}}))
    with pytest.raises(InvalidBundle) as err:
        from_mlflow(src, tmp_path / "b", name="m")
    assert "['onnx']" in err.value.message and "python_function" in err.value.message
    with pytest.raises(InvalidBundle, match="MLmodel is missing"):
        from_mlflow(tmp_path, tmp_path / "c", name="m")


def test_without_mlflow_a_pyfunc_model_is_refused_naming_the_package(iris, tmp_path, monkeypatch):
    X, y = iris
    from_mlflow(save("pyfunc", tmp_path / "m", X, y), tmp_path / "bundle", name="m")
    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)
    monkeypatch.setitem(__import__("sys").modules, "mlflow.pyfunc", None)
    with pytest.raises(InvalidBundle) as err:
        load_model(tmp_path / "bundle")
    assert "the Python package 'mlflow" in err.value.message and "lacks" in err.value.message


def test_frames_keep_their_column_order(iris, tmp_path):
    """A pyfunc gets a DataFrame with the signature's columns whatever order a caller uses."""
    X, y = iris
    src = save("pyfunc", tmp_path / "m", X, y)
    manifest = from_mlflow(src, tmp_path / "bundle", name="m")
    served = ServedModel(
        tmp_path / "bundle", manifest=manifest, model=load_model(tmp_path / "bundle")
    )
    app = create_app(
        Settings(bundle=str(tmp_path / "bundle"), auth=False), served, metrics=Metrics()
    )
    cols = list(reversed(X.columns))
    answer = Client(app).post(
        "/v1/predict", json={"columns": cols, "data": X.head(2)[cols].values.tolist()}
    )
    assert answer.json["predictions"] == pytest.approx((X.head(2).sum(axis=1) * 2.5).tolist())
