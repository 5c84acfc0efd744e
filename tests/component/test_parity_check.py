"""The parity check on a real ``mlhub up``: a new version's serving process must answer what the
notebook's model answered before it takes any traffic. Two releases that would have served
other answers are refused, each saying why, while the version before keeps serving: one whose
serving environment lacks a module its model needs, and one whose answers changed as another
library version changes them (the bundle records the notebook's answers and pinned versions,
here those of an older scikit-learn). Python and R."""

import json

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from support.publishing import as_an_older_library_answered, client, predict
from support.rmodels import constant_bundle as r_constant_bundle

from mlhub import rlang
from mlhub.bundle import save_bundle
from mlhub.errors import InvalidBundle

pytestmark = [pytest.mark.component, pytest.mark.slow]


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, LogisticRegression(max_iter=500).fit(X, y)


def test_answers_that_differ_are_refused_and_the_old_version_serves(hub, iris, tmp_path):
    X, model = iris
    alice = client(hub, hub.alice)
    save_bundle(model, tmp_path / "v1", name="flowers", example=X.head(), validate=X)
    first = alice.publish(tmp_path / "v1", "flowers")
    rows = X.iloc[[0, 60, 120]].to_dict(orient="records")
    assert predict(hub, "alice", "flowers", hub.alice, rows).json()["predictions"] == [0, 1, 2]

    save_bundle(model, tmp_path / "v2", name="flowers", example=X.head(), validate=X)
    as_an_older_library_answered(tmp_path / "v2", row=40, answer=2)  # a setosa: it is a 0
    with pytest.raises(InvalidBundle) as refused:
        alice.publish(tmp_path / "v2", "flowers")
    message = refused.value.message
    assert "differ from the notebook's on 1 of 155 rows" in message, message
    assert "likely cause: scikit-learn 0.24.2 in the notebook" in message, message
    assert alice.get("flowers")["current_version"] == first["current_version"]
    assert predict(hub, "alice", "flowers", hub.alice, rows).json()["predictions"] == [0, 1, 2]


def test_a_model_needing_a_module_the_server_lacks_is_refused(hub, iris, tmp_path, monkeypatch):
    """A class from a package installed where the notebook runs but not where the model is
    served (here: a folder only this test's Python has on its path)."""
    X, model = iris
    package = tmp_path / "site"
    package.mkdir()
    (package / "plantwrap.py").write_text(
        "class Wrapped:\n"
        "    def __init__(self, model):\n"
        "        self.model = model\n"
        "    def predict(self, X):\n"
        "        return self.model.predict(X)\n"
    )
    monkeypatch.syspath_prepend(str(package))
    from plantwrap import Wrapped

    alice = client(hub, hub.alice)
    save_bundle(model, tmp_path / "v1", name="wrapped", example=X.head())
    first = alice.publish(tmp_path / "v1", "wrapped")
    save_bundle(Wrapped(model), tmp_path / "v2", name="wrapped", example=X.head())
    with pytest.raises(InvalidBundle) as refused:
        alice.publish(tmp_path / "v2", "wrapped")
    assert "needs the Python package 'plantwrap'" in refused.value.message
    assert alice.get("wrapped")["current_version"] == first["current_version"]
    assert predict(hub, "alice", "wrapped", hub.alice, X.head(1).to_dict("records")).ok


def test_r_answers_that_differ_are_refused(hub, tmp_path):
    if rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    alice = client(hub, hub.alice)
    first = alice.publish(r_constant_bundle(tmp_path / "v1", 1.0, name="steady-r"), "steady-r")
    bundle = r_constant_bundle(tmp_path / "v2", 2.0, name="steady-r")
    (bundle / "parity.json").write_text(
        json.dumps({"instances": [{"x": 0.0}, {"x": 5.0}], "predictions": [2.0, 2.5]})
    )
    manifest = yaml.safe_load((bundle / "mlhub.yaml").read_text())
    manifest["parity"] = {"file": "parity.json", "rows": 2, "rtol": 1e-6, "atol": 1e-9}
    (bundle / "mlhub.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(InvalidBundle) as refused:
        alice.publish(bundle, "steady-r")
    message = refused.value.message
    assert "differ from the notebook's on 1 of 2 rows" in message, message
    assert 'row 1: notebook 2.5, served 2 (input {"x":5})' in message, message
    assert alice.get("steady-r")["current_version"] == first["current_version"]
    answer = predict(hub, "alice", "steady-r", hub.alice, [{"x": 1.0}]).json()
    assert np.allclose(answer["predictions"], [1.0])
