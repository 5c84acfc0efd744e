"""What the panel finds in a notebook: models, example tables, names; and the small helpers.

Pure functions over plain dicts standing in for a kernel's namespace: no kernel, no network.
"""

import io
import json
import shlex
import types

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlhub.bundle import validate_name
from mlhub.extension.client import find_models
from mlhub.extension.namespace import (
    caller_namespace,
    find_examples,
    is_model,
    suggest_example,
    suggest_name,
)
from mlhub.extension.progress import STEPS, TextProgress, overall
from mlhub.snippets import KEY_ENV, curl_snippet, python_snippet


class Doubler:
    def predict(self, X):
        return [2 * row[0] for row in X]


class NotCallable:
    predict = "nope"


class Raising:
    @property
    def predict(self):
        raise RuntimeError("broken proxy")


@pytest.fixture(scope="module")
def frame():
    X, y = make_classification(60, n_features=3, n_informative=2, n_redundant=0, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c"]), y


def test_find_models_keeps_instances_with_callable_predict(frame):
    X, y = frame
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    namespace = {
        "pipe": pipe,
        "doubler": Doubler(),
        "Doubler": Doubler,  # a class is not a model
        "np": np,  # nor is a module
        "text": "predict",
        "not_callable": NotCallable(),
        "raising": Raising(),
        "_": pipe,  # IPython's last output
        "_3": pipe,
        "scaler": StandardScaler(),  # transforms, does not predict
        "fn": types.SimpleNamespace(predict=lambda X: X),  # anything with predict counts
    }
    found = find_models(namespace)
    assert list(found) == ["pipe", "doubler", "fn"]
    assert found["pipe"] is pipe


def test_is_model_rejects_pipelines_that_end_in_a_transformer():
    assert not is_model(make_pipeline(StandardScaler()))
    assert is_model(make_pipeline(StandardScaler(), LogisticRegression()))


def test_find_examples_offers_frames_and_2d_arrays(frame):
    X, y = frame
    namespace = {"X": X, "y": y, "grid": np.zeros((2, 3)), "_X": X, "rows": [[1, 2]], "s": X["a"]}
    assert list(find_examples(namespace)) == ["X", "grid"]


@pytest.mark.parametrize(
    "varname, name",
    [
        ("clf", "clf"),
        ("rf_model", "rf-model"),
        ("Model2", "model2"),
        ("__private__", "private"),
        ("a__b", "a-b"),
        ("x" * 80, "x" * 63),
        ("_", "model"),
        ("modèle", "mod-le"),
    ],
)
def test_suggest_name_makes_dns_labels(varname, name):
    assert suggest_name(varname) == name
    assert validate_name(suggest_name(varname))


def test_suggest_example_matches_training_columns_then_width(frame):
    X, y = frame
    model = LogisticRegression().fit(X, y)
    examples = {"wide": np.zeros((2, 5)), "other": X[["c", "b", "a"]], "X_test": X.head()}
    assert suggest_example(model, examples) == "X_test"
    array_model = LogisticRegression().fit(X.to_numpy(), y)
    assert suggest_example(array_model, {"wide": np.zeros((2, 5)), "X3": np.zeros((2, 3))}) == "X3"
    assert suggest_example(Doubler(), examples) is None


def test_caller_namespace_is_the_calling_module_outside_ipython():
    marker = object()
    globals()["_marker_for_namespace_test"] = marker
    try:
        assert caller_namespace()["_marker_for_namespace_test"] is marker
    finally:
        del globals()["_marker_for_namespace_test"]


def test_text_progress_rewrites_one_line_and_ends_it():
    out = io.StringIO()
    bar = TextProgress(stream=out, width=8)
    bar("bundle", 0.5, "checking the model")
    bar("upload", 1.0, "1.0 of 1.0 MB")
    bar("ready", 1.0, "done")
    text = out.getvalue()
    assert text.startswith("\r[#.......] bundle checking the model")
    assert "\r[####....] upload 1.0 of 1.0 MB" in text
    assert text.endswith(
        "\r[########] ready  done".ljust(len("\r[####....] upload 1.0 of 1.0 MB")) + "\n"
    )
    assert [overall(s, 0) for s in STEPS] == [0, 0.25, 0.5, 0.75]


def test_snippets_post_the_example_with_the_key():
    url = "http://hub.example/models/alice/iris/v1/predict"
    rows = [{"a": 1.0, "label": "it's"}, {"a": 2.0, "label": None}, {"a": 3.0, "label": "x"}]
    curl = curl_snippet(url, "iris", rows, "mlhk_secret")
    argv = shlex.split(curl.replace("\\\n", " "))
    assert argv[:5] == ["curl", "-sS", "-X", "POST", url]
    assert "Authorization: Bearer mlhk_secret" in argv
    assert json.loads(argv[argv.index("-d") + 1]) == {"instances": rows[:2]}

    code = python_snippet(url, "iris", rows, "mlhk_secret")
    compile(code, "snippet", "exec")  # valid Python (None, not null)
    assert "key = 'mlhk_secret'" in code and "None" in code


def test_snippets_without_a_key_say_how_to_mint_one():
    url = "http://hub.example/models/alice/iris/v1/predict"
    curl = curl_snippet(url, "iris", [[1, 2]])
    assert "mlhub.api_key('iris')" in curl and f"${KEY_ENV}" in curl
    code = python_snippet(url, "iris", None)
    compile(code, "snippet", "exec")
    assert f"os.environ[{KEY_ENV!r}]" in code and "mlhub.api_key('iris')" in code
