"""The WSGI app in-process (Flask's test client): routes, the error mapping, prefix, metrics.

Models are real scikit-learn estimators wrapped in ``ServedModel`` without writing bundles,
plus one bundle on disk whose pickle is corrupt. Authentication goes through the real
``Authenticator`` with an API key in an access file (hub tokens are covered in
test_serving_auth.py and the uWSGI component test).
"""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from support.serving_app import AUTH, make_client, served_model
from werkzeug.test import Client

from mlhub.bundle import save_bundle
from mlhub.serving.app import create_app
from mlhub.serving.metrics import Metrics
from mlhub.serving.model import ServedModel
from mlhub.serving.settings import Settings


class NoNegatives:
    """A model that refuses some inputs, like real models do (e.g. a log transform)."""

    def predict(self, X):
        X = np.asarray(X)
        if (X < 0).any():
            raise ValueError("negative values are not supported")
        return X.sum(axis=1)


@pytest.fixture(scope="module")
def iris():
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.columns = ["sl", "sw", "pl", "pw"]
    return frame, data.target


@pytest.fixture(scope="module")
def frame_model(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return pipe, served_model(pipe, X)


@pytest.fixture(scope="module")
def array_model(iris):
    X, y = iris
    lr = LogisticRegression(max_iter=500).fit(X.to_numpy(), y)
    return lr, served_model(lr, X.to_numpy(), name="iris-array")


def post(client, path, body, headers=AUTH, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, headers=headers, content_type="application/json", **kw)


@pytest.fixture
def frame_client(frame_model, tmp_path):
    return make_client(frame_model[1], tmp_path)[0]


# ---------------------------------------------------------------- the happy paths


def test_health_and_readiness_need_no_token(frame_client):
    assert frame_client.get("/healthz").json == {"status": "ok"}
    ready = frame_client.get("/readyz")
    assert ready.status_code == 200 and ready.json["name"] == "iris"
    assert frame_client.get("/v2/health/ready").status_code == 200


def test_predict_records_rows_and_columns_match_the_model(frame_model, frame_client, iris):
    pipe, _ = frame_model
    X, _ = iris
    expected = pipe.predict(X.iloc[:3]).tolist()
    records = X.iloc[:3].to_dict(orient="records")
    rows = X.iloc[:3].to_numpy().tolist()
    columnar = {
        "columns": ["pw", "pl", "sw", "sl"],
        "data": X.iloc[:3][["pw", "pl", "sw", "sl"]].to_numpy().tolist(),
    }
    for body in ({"instances": records}, {"instances": rows}, columnar):
        answer = post(frame_client, "/v1/predict", body)
        assert answer.status_code == 200, answer.json
        assert answer.json == {"predictions": expected}


def test_array_model_predicts_like_in_process(array_model, tmp_path, iris):
    lr, served = array_model
    client, metrics = make_client(served, tmp_path)
    rows = iris[0].to_numpy()[:10]
    answer = post(client, "/v1/predict", {"instances": rows.tolist()})
    assert answer.json["predictions"] == lr.predict(rows).tolist()
    assert "mlhub_predictions_total 10\n" in metrics.render()


def test_probabilities_on_request(frame_model, frame_client, iris):
    pipe, _ = frame_model
    rows = iris[0].to_numpy()[:2].tolist()
    answer = post(frame_client, "/v1/predict?proba=true", {"instances": rows})
    assert answer.json["classes"] == [0, 1, 2]
    expected = pipe.predict_proba(pd.DataFrame(rows, columns=["sl", "sw", "pl", "pw"]))
    assert np.allclose(answer.json["probabilities"], expected)


def test_metadata_describes_the_model(frame_client):
    meta = frame_client.get("/v1/metadata", headers=AUTH).json
    assert meta["name"] == "iris" and meta["owner"] == "alice" and meta["version"] == "sha256:abc"
    assert meta["flavor"] == "sklearn" and meta["requirements"] == ["scikit-learn"]
    assert [i["name"] for i in meta["signature"]["inputs"]] == ["sl", "sw", "pl", "pw"]
    assert len(meta["example"]) == 5


def test_v2_metadata_ready_and_infer(frame_model, frame_client, iris):
    pipe, _ = frame_model
    meta = frame_client.get("/v2/models/iris", headers=AUTH).json
    assert [i["name"] for i in meta["inputs"]] == ["sl", "sw", "pl", "pw"]
    assert frame_client.get("/v2/models/iris/ready", headers=AUTH).json["ready"] is True
    rows = iris[0].to_numpy()[:4]
    body = {
        "id": "r1",
        "inputs": [
            {"name": "x", "shape": [4, 4], "datatype": "FP64", "data": rows.ravel().tolist()}
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    answer = post(frame_client, "/v2/models/iris/infer", body).json
    assert answer["id"] == "r1" and answer["model_name"] == "iris"
    predict, proba = answer["outputs"]
    assert predict["data"] == pipe.predict(iris[0].iloc[:4]).tolist()
    assert predict["shape"] == [4] and predict["datatype"] == "INT64"
    assert proba["shape"] == [4, 3] and len(proba["data"]) == 12


def test_v2_one_tensor_per_input(frame_client, iris):
    cols = iris[0].iloc[:2]
    inputs = [{"name": c, "shape": [2], "datatype": "FP64", "data": cols[c].tolist()} for c in cols]
    answer = post(frame_client, "/v2/models/iris/infer", {"inputs": inputs})
    assert answer.status_code == 200 and len(answer.json["outputs"][0]["data"]) == 2


def test_openapi_describes_the_inputs(frame_client):
    spec = frame_client.get("/openapi.json", headers=AUTH).json
    assert spec["openapi"].startswith("3.")
    record = spec["components"]["schemas"]["Record"]
    assert record["required"] == ["sl", "sw", "pl", "pw"]
    assert "/v1/predict" in spec["paths"] and "/v2/models/{name}/infer" in spec["paths"]


def test_url_prefix_is_optional(frame_model, tmp_path):
    client, _ = make_client(frame_model[1], tmp_path, url_prefix="/models/alice/iris")
    assert client.get("/models/alice/iris/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/models/alice/iris2/healthz", headers=AUTH).status_code == 404


def test_an_alias_url_reaches_the_same_routes(frame_model, tmp_path):
    """Every unit of a model (its default alias's, another alias's) answers all its URLs."""
    client, _ = make_client(frame_model[1], tmp_path, url_prefix="/models/alice/iris")
    assert client.get("/models/alice/iris@staging/healthz").status_code == 200
    answer = post(client, "/models/alice/iris@production/v1/predict", {"instances": [[1, 2, 3, 4]]})
    assert answer.status_code == 200 and len(answer.get_json()["predictions"]) == 1
    assert client.get("/models/alice/iris@/healthz").status_code == 200
    assert client.get("/models/alice/iris@staging2x/nothere", headers=AUTH).status_code == 404


def test_metrics_count_requests_by_route_and_status(frame_model, tmp_path):
    client, _ = make_client(frame_model[1], tmp_path)
    post(client, "/v1/predict", {"instances": [[1, 2, 3, 4]]})
    post(client, "/v1/predict", {"instances": [[1, 2]]})
    client.get("/v1/metadata")  # no token
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert 'mlhub_requests_total{route="/v1/predict",status="200"} 1' in text
    assert 'mlhub_requests_total{route="/v1/predict",status="400"} 1' in text
    assert 'mlhub_requests_total{route="/v1/metadata",status="401"} 1' in text
    assert 'mlhub_request_duration_seconds_count{route="/v1/predict"} 2' in text
    assert "mlhub_predictions_total 1" in text
    assert "mlhub_model_ready 1" in text


# ---------------------------------------------------------------- errors: one mapping


def assert_error(response, status, code, fragment):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert body["code"] == code and fragment in body["error"], body
    assert set(body) == {"error", "code", "detail"}


def test_errors_are_json_with_a_message_and_a_code(frame_client):
    c = frame_client
    assert_error(c.get("/v1/metadata"), 401, "unauthorized", "needs a token")
    assert c.get("/v1/metadata").headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(
        c.get("/v1/metadata", headers={"Authorization": "token mlhk_wrong"}),
        401,
        "unauthorized",
        "not valid for this model",
    )
    assert_error(post(c, "/v1/predict", b"{nope"), 400, "invalid_input", "not valid JSON")
    assert_error(
        c.post("/v1/predict", data="a=1", headers=AUTH, content_type="text/plain"),
        415,
        "unsupported_media_type",
        "Content-Type: application/json",
    )
    assert_error(post(c, "/v1/predict", {"rows": []}), 400, "invalid_input", '"instances"')
    assert_error(
        post(c, "/v1/predict", {"instances": [[1, 2, 3]]}),
        400,
        "invalid_input",
        "has 3 values, but the model expects 4",
    )
    assert_error(
        post(c, "/v1/predict", {"instances": [[1, 2, "x", 4]]}),
        400,
        "invalid_input",
        "row 0, input 'pl'",
    )
    big = {"instances": [[1.0, 2.0, 3.0, 4.0]] * 500}
    assert_error(post(c, "/v1/predict", big), 413, "payload_too_large", "limit of 4096")
    assert_error(c.get("/nowhere", headers=AUTH), 404, "not_found", "no route /nowhere")
    response = c.get("/v1/predict", headers=AUTH)
    assert_error(response, 405, "method_not_allowed", "use POST")
    assert "POST" in response.headers["Allow"]
    assert_error(c.get("/v2/models/other", headers=AUTH), 404, "not_found", "not 'other'")
    assert_error(
        post(c, "/v2/models/iris/infer", {"inputs": [{"name": "x"}]}),
        400,
        "invalid_input",
        "'shape'",
    )
    # ... and it still serves
    assert post(c, "/v1/predict", {"instances": [[1, 2, 3, 4]]}).status_code == 200


def test_model_errors_are_422_with_the_models_message(tmp_path):
    served = served_model(NoNegatives(), np.array([[1.0, 2.0]]), name="picky")
    client, _ = make_client(served, tmp_path)
    assert_error(
        post(client, "/v1/predict", {"instances": [[1, -2]]}),
        422,
        "prediction_failed",
        "ValueError: negative values are not supported",
    )
    assert_error(
        post(client, "/v1/predict?proba=1", {"instances": [[1, 2]]}),
        400,
        "bad_request",
        "no predict_proba()",
    )
    assert post(client, "/v1/predict", {"instances": [[1, 2]]}).json == {"predictions": [3.0]}


def test_regressor_without_example_serves_untyped(tmp_path):
    X = np.arange(20.0).reshape(10, 2)
    reg = LinearRegression().fit(X, X.sum(axis=1))
    manifest = {"name": "reg", "runtime": "python", "flavor": "sklearn", "signature": None}
    client, _ = make_client(ServedModel("/b", manifest=manifest, model=reg), tmp_path)
    answer = post(client, "/v1/predict", {"instances": [[1, 2]]}).json
    assert np.allclose(answer["predictions"], [3.0])


def test_broken_bundle_is_alive_but_not_ready_and_says_why(tmp_path, iris):
    X, y = iris
    bundle = tmp_path / "broken"
    save_bundle(LogisticRegression(max_iter=500).fit(X, y), bundle, name="broken", example=X)
    (bundle / "model" / "model.pkl").write_bytes(b"\x80\x04garbage")
    served = ServedModel.load(bundle)
    assert not served.ready and "could not be loaded" in served.error
    client, metrics = make_client(served, tmp_path)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert_error(ready, 503, "not_ready", "model/model.pkl could not be loaded")
    assert_error(
        post(client, "/v1/predict", {"instances": [[1, 2, 3, 4]]}),
        503,
        "not_ready",
        "not loaded",
    )
    assert "mlhub_model_ready 0" in client.get("/metrics", headers=AUTH).get_data(as_text=True)


def test_auth_off_needs_no_token(frame_model, tmp_path):
    served = frame_model[1]
    app = create_app(Settings(bundle="/b", auth=False), served, metrics=Metrics())
    client = Client(app)
    assert post(client, "/v1/predict", {"instances": [[1, 2, 3, 4]]}, headers={}).status_code == 200
    with pytest.raises(ValueError, match="no authenticator"):
        create_app(Settings(bundle="/b"), served, metrics=Metrics())


def test_a_null_reaches_only_a_model_that_takes_missing_values(frame_model, iris, tmp_path):
    """StandardScaler + LogisticRegression cannot predict from NaN: the caller gets a 400 naming
    the row and column, not scikit-learn's 422. A pipeline that imputes gets its answer."""
    X, y = iris
    record = {**X.iloc[0].to_dict(), "pw": None}
    client, _ = make_client(frame_model[1], tmp_path)
    refused = post(client, "/v1/predict", {"instances": [X.iloc[1].to_dict(), record]})
    assert refused.status_code == 400
    body = refused.get_json()
    assert body["code"] == "invalid_input" and body["detail"]["column"] == "pw"
    assert body["detail"]["row"] == 1 and "does not accept missing values" in body["error"]

    imputing = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500)).fit(X, y)
    client, _ = make_client(served_model(imputing, X), tmp_path)
    answered = post(client, "/v1/predict", {"instances": [record]})
    assert answered.status_code == 200, answered.get_json()
    expected = imputing.predict(pd.DataFrame([record], dtype=float)).tolist()
    assert answered.get_json()["predictions"] == expected
