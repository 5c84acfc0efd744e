"""The parity check: a bundle records what the notebook's model answered (its example and a
validation sample) and the served model must answer the same before it takes traffic. Here the
recording (``save_bundle``), the comparison's rules, and a real ``ServedModel`` that passes, and
one whose answers changed as another library version would change them, refused with the rows
and the versions that differ."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from support.publishing import as_an_older_library_answered

from mlhub.bundle import save_bundle
from mlhub.bundle.parity import PARITY_ROWS, differences, json_values, version_drift
from mlhub.errors import InvalidBundle
from mlhub.serving.model import ParityFailed, ServedModel


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y, LogisticRegression(max_iter=500).fit(X, y)


def parity_of(bundle):
    return json.loads((bundle / "parity.json").read_text())


def test_a_bundle_records_the_example_and_a_fixed_validation_sample(iris, tmp_path):
    X, _y, model = iris
    big = pd.concat([X] * 10, ignore_index=True)  # 1,500 rows: more than are kept
    manifest = save_bundle(model, tmp_path / "b", name="iris", example=X.head(), validate=big)
    record = parity_of(tmp_path / "b")
    assert manifest["parity"] == {
        "file": "parity.json",
        "rows": 5 + PARITY_ROWS,
        "rtol": 1e-6,
        "atol": 1e-9,
    }
    assert record["instances"][:5] == json.loads(X.head().to_json(orient="records"))
    assert record["predictions"][:5] == model.predict(X.head()).tolist()
    again = save_bundle(model, tmp_path / "c", name="iris", example=X.head(), validate=big)
    assert parity_of(tmp_path / "c") == record and again["parity"] == manifest["parity"]
    # the answers are the model's on the rows as JSON gives them back
    rows = pd.DataFrame(record["instances"][5:])
    assert record["predictions"][5:] == model.predict(rows).tolist()


def test_arrays_and_records_are_recorded_too(tmp_path):
    X = np.arange(20.0).reshape(10, 2)
    model = LinearRegression().fit(X, X @ [1.0, 2.0])
    save_bundle(model, tmp_path / "a", name="arr", example=X[:3], validate=X)
    record = parity_of(tmp_path / "a")
    assert record["instances"][:3] == X[:3].tolist() and len(record["instances"]) == 13
    assert record["predictions"] == pytest.approx(model.predict(np.array(record["instances"])))


def test_validate_must_match_the_example(iris, tmp_path):
    X, _y, model = iris
    with pytest.raises(InvalidBundle, match="validate has the columns") as err:
        save_bundle(model, tmp_path / "b", name="iris", example=X.head(), validate=X.iloc[:, :2])
    assert err.value.detail == {"field": "validate"}
    with pytest.raises(InvalidBundle, match="validate needs an example too"):
        save_bundle(model, tmp_path / "b", name="iris", validate=X)
    with pytest.raises(InvalidBundle, match="rtol must be a number >= 0"):
        save_bundle(model, tmp_path / "b", name="iris", example=X.head(), rtol=-1)


def test_numbers_within_the_tolerance_classes_and_strings_exact():
    assert differences([1.0, 2.0], [1.0 + 1e-9, 2.0]) == []
    assert differences([1.0], [1.001]) == [(0, 1.0, 1.001)]
    assert differences([1.0], [1.001], rtol=0.01) == []
    assert differences([0.0], [1e-10]) == []  # atol: nothing is relative to zero
    assert differences([2, 1], [2, 2]) == [(1, 1, 2)]  # a class given as a number
    assert differences(["setosa"], ["versicolor"]) == [(0, "setosa", "versicolor")]
    assert differences([True], [1]) == [(0, True, 1)]
    assert differences([None], [None]) == [] and differences([None], [1.0]) != []
    assert differences([[0.2, 0.8]], [[0.2, 0.81]]) != []  # probabilities, per value
    assert differences([{"a": 1.0}], [{"a": 1.0}]) == []
    assert differences([1, 2], [1]) == [(1, "2 predictions", "1 predictions")]
    assert json_values(np.array([1.5, np.nan])) == [1.5, None]
    assert json_values(pd.DataFrame({"p": [np.float32(0.5)]})) == [{"p": 0.5}]


def test_drift_names_the_versions_that_differ():
    installed = {"scikit-learn": "1.5.2", "numpy": "2.1.0"}.get
    drift = version_drift(["scikit-learn==1.4.0", "numpy==2.1.0", "lonely==1.0", "x"], installed)
    assert drift == [
        "scikit-learn 1.4.0 in the notebook, 1.5.2 here",
        "lonely 1.0 in the notebook, not installed here",
    ]


def test_a_served_model_that_answers_as_the_notebook_is_ready(iris, tmp_path):
    X, _y, model = iris
    save_bundle(model, tmp_path / "b", name="iris", example=X.head(), validate=X)
    served = ServedModel.load(tmp_path / "b")
    assert np.asarray(served.self_test()).tolist() == model.predict(X.head()).tolist()


def test_answers_that_changed_refuse_the_model_with_rows_and_versions(iris, tmp_path):
    """As if the notebook had another scikit-learn whose model answered otherwise: the
    recorded answers and the notebook's pinned version both differ from what is here."""
    X, _y, model = iris
    bundle = tmp_path / "b"
    save_bundle(model, bundle, name="iris", example=X.head(), validate=X)
    as_an_older_library_answered(
        bundle, row=7, answer=(parity_of(bundle)["predictions"][7] + 1) % 3
    )
    served = ServedModel.load(bundle)
    with pytest.raises(ParityFailed) as err:
        served.self_test()
    message = err.value.message
    assert "differ from the notebook's on 1 of 155 rows" in message
    assert "row 7: notebook " in message and '"sepal length (cm)"' in message
    assert "likely cause: scikit-learn 0.24.2 in the notebook" in message
    assert err.value.detail["differ"] == 1
