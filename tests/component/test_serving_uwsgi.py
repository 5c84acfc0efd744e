"""The serving runtime for real: ``python -m mlhub.serving`` execs uWSGI on a free local port.

Bundles are built with ``mlhub.bundle.save_bundle`` from scikit-learn models (an array
LogisticRegression and a DataFrame Pipeline), plus a slow model (graceful shutdown) and a
bundle with a corrupt pickle. JupyterHub tokens are checked against ``HubStandIn``, a tiny HTTP
server on 127.0.0.1 that stands in for the hub's ``/hub/api/user``.
"""

import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import numpy as np
import pytest
import requests
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from support.batchtest import Serving
from support.embedded_hub import free_port, wait_for
from support.hubstandin import KEY, write_access

from mlhub.bundle import save_bundle
from mlhub.deployers.forkserver import ForkServerClient
from mlhub.errors import DeployError

pytestmark = pytest.mark.component

# The slow model class below must travel inside its pickle: uWSGI cannot import this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

LATER_KEY = "mlhk_added-later"
JSON = {"Content-Type": "application/json"}


class SlowModel:
    """Sleeps ``X[0, 0]`` seconds, after touching the file named by ``$SLOW_MODEL_MARKER``."""

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        marker = os.environ.get("SLOW_MODEL_MARKER")
        if marker and X[0, 0] > 0:
            Path(marker).touch()
            time.sleep(X[0, 0])
        return X.sum(axis=1)


class FailsWhenServed:
    """Predicts when bundled, raises under uWSGI: a model that loads but cannot serve."""

    def predict(self, X):
        if "uwsgi" in sys.modules:
            raise RuntimeError("a library this model needs is missing here")
        return np.asarray(X, dtype=float).sum(axis=1)


class Server(Serving):
    """One uWSGI instance started the way the deployer starts it, authentication on unless
    ``env`` says otherwise; started means alive (``/healthz``), so a broken bundle still starts.
    ``url`` has no trailing slash: the tests append absolute paths."""

    def __init__(self, bundle, tmp, *, workers=2, prefix=None, env=None):
        super().__init__(
            bundle, tmp, env=env or {}, workers=workers, prefix=prefix, wait_path="healthz"
        )
        self.url = self.url.rstrip("/")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def lr_bundle(work):
    X, y = make_classification(2_000, n_features=20, random_state=0)
    model = LogisticRegression().fit(X, y)
    save_bundle(model, work / "lr", name="lr", example=X[:5])
    return model, X, work / "lr"


@pytest.fixture(scope="module")
def iris_bundle(work):
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    pipe.fit(frame, data.target)
    save_bundle(pipe, work / "iris", name="iris", example=frame)
    return pipe, frame, work / "iris"


@pytest.fixture(scope="module")
def lr_server(lr_bundle, work, hub_stand_in, access_file):
    """Authenticated, behind a prefix, with a small body limit: the way the publisher runs it."""
    server = Server(
        lr_bundle[2],
        work,
        prefix="/models/alice/lr",
        env={
            "MLHUB_ACCESS_FILE": str(access_file),
            "JUPYTERHUB_API_URL": hub_stand_in.api_url,
            "MLHUB_MODEL_OWNER": "alice",
            "MLHUB_MODEL_VERSION": "sha256:feedface",
            "MLHUB_MAX_BODY_BYTES": "20000",
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def iris_server(iris_bundle, work):
    server = Server(iris_bundle[2], work, env={"MLHUB_AUTH": "off"})
    yield server
    server.stop()


def auth(token=KEY):
    return {"Authorization": f"token {token}"}


# ---------------------------------------------------------------- the contract


def test_health_readiness_and_metadata(lr_server):
    base = f"{lr_server.url}/models/alice/lr"
    assert requests.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = requests.get(f"{base}/readyz")
    assert ready.status_code == 200 and ready.json()["version"] == "sha256:feedface"
    meta = requests.get(f"{base}/v1/metadata", headers=auth()).json()
    assert (meta["name"], meta["owner"], meta["version"]) == ("lr", "alice", "sha256:feedface")
    assert meta["flavor"] == "sklearn" and meta["signature"]["kind"] == "array"
    assert len(meta["signature"]["inputs"]) == 20 and len(meta["example"]) == 5
    assert any(r.startswith("scikit-learn==") for r in meta["requirements"])
    # the same routes without the prefix (the proxy keeps it; local callers may not)
    assert requests.get(f"{lr_server.url}/v1/metadata", headers=auth()).json() == meta


def test_predictions_equal_the_model_in_process(lr_server, lr_bundle):
    model, X, _ = lr_bundle
    rows = X[:20]  # ~8 kB, under the 20 kB limit of this server
    answer = requests.post(
        f"{lr_server.url}/models/alice/lr/v1/predict",
        json={"instances": rows.tolist()},
        headers=auth(),
    )
    assert answer.status_code == 200
    assert answer.json()["predictions"] == model.predict(rows).tolist()
    records = [{f"x{i}": v for i, v in enumerate(row)} for row in rows[:3].tolist()]
    answer = requests.post(
        f"{lr_server.url}/v1/predict?proba=true", json={"instances": records}, headers=auth()
    ).json()
    assert answer["predictions"] == model.predict(rows[:3]).tolist()
    assert np.allclose(answer["probabilities"], model.predict_proba(rows[:3]))


def test_records_rows_and_columnar_on_a_dataframe_pipeline(iris_server, iris_bundle):
    pipe, frame, _ = iris_bundle
    sample = frame.iloc[[0, 60, 120]]
    expected = pipe.predict(sample).tolist()
    order = ["petal_width", "sepal_length", "petal_length", "sepal_width"]
    bodies = [
        {"instances": sample.to_dict(orient="records")},
        {"instances": sample.to_numpy().tolist()},
        {"columns": order, "data": sample[order].to_numpy().tolist()},
    ]
    for body in bodies:
        answer = requests.post(f"{iris_server.url}/v1/predict", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}
    assert len(set(expected)) == 3  # three different classes: the columns were not mixed up


def test_open_inference_protocol_v2(iris_server, iris_bundle):
    pipe, frame, _ = iris_bundle
    base = f"{iris_server.url}/v2/models/iris"
    assert requests.get(f"{base}/ready").json() == {"name": "iris", "ready": True}
    meta = requests.get(base).json()
    assert [i["name"] for i in meta["inputs"]] == list(frame.columns)
    rows = frame.iloc[[0, 60, 120]].to_numpy()
    tensor = {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": rows.ravel().tolist()}
    answer = requests.post(f"{base}/infer", json={"id": "a1", "inputs": [tensor]}).json()
    assert answer["id"] == "a1" and answer["model_name"] == "iris"
    assert answer["outputs"][0]["data"] == pipe.predict(frame.iloc[[0, 60, 120]]).tolist()
    other = requests.post(f"{iris_server.url}/v2/models/nope/infer", json={"inputs": [tensor]})
    assert other.status_code == 404 and "not 'nope'" in other.json()["error"]


def test_openapi_carries_the_signature(iris_server):
    spec = requests.get(f"{iris_server.url}/openapi.json").json()
    record = spec["components"]["schemas"]["Record"]
    assert list(record["properties"]) == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert spec["paths"]["/v1/predict"]["post"]["requestBody"]["required"] is True


def test_connections_are_kept_alive_even_after_errors(lr_server):
    conn = http.client.HTTPConnection("127.0.0.1", lr_server.port, timeout=10)

    def send(method, path, body=None, headers=None):
        conn.request(method, path, body=body, headers={**JSON, **(headers or {})})
        response = conn.getresponse()
        return response, response.read()

    for _ in range(2):
        response, body = send("GET", "/healthz")
        assert response.status == 200 and body == b'{"status":"ok"}'
        assert not response.will_close
    socket_before = conn.sock
    # a 401 answered before the body was read must not break the connection
    response, _ = send("POST", "/v1/predict", json.dumps({"instances": [[0.1] * 20]}))
    assert response.status == 401 and not response.will_close
    response, _ = send("GET", "/readyz")
    assert response.status == 200 and conn.sock is socket_before
    # a body over the limit is not read: the server says it closes the connection
    response, _ = send("POST", "/v1/predict", b"[" + b"0.5," * 8000 + b"0]", auth())
    assert response.status == 413 and response.will_close
    response, _ = send("GET", "/healthz")  # http.client reconnects
    assert response.status == 200
    conn.close()


def test_metrics_count_across_workers(lr_server, lr_bundle):
    def count(text, route, status):
        line = f'mlhub_requests_total{{route="{route}",status="{status}"}} '
        found = [ln for ln in text.splitlines() if ln.startswith(line)]
        return int(found[0].split()[-1]) if found else 0

    before = requests.get(f"{lr_server.url}/metrics", headers=auth()).text
    rows = lr_bundle[1][:2].tolist()
    for _ in range(10):  # spread over both workers by uWSGI
        requests.post(f"{lr_server.url}/v1/predict", json={"instances": rows}, headers=auth())
    requests.post(f"{lr_server.url}/v1/predict", json={"instances": [[1]]}, headers=auth())
    after = requests.get(f"{lr_server.url}/metrics", headers=auth()).text
    assert count(after, "/v1/predict", 200) - count(before, "/v1/predict", 200) == 10
    assert count(after, "/v1/predict", 400) - count(before, "/v1/predict", 400) == 1
    predicted = [int(ln.split()[-1]) for ln in after.splitlines() if ln.startswith("mlhub_pred")]
    assert predicted and predicted[0] >= 20
    assert "mlhub_model_load_seconds" in after and "mlhub_model_ready 1" in after
    assert 'mlhub_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"}' in after


# ---------------------------------------------------------------- bad input


def error_of(response, status, code, *fragments):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for fragment in fragments:
        assert fragment in body["error"], body
    return body


def test_every_bad_input_gets_a_precise_4xx_and_the_server_keeps_serving(iris_server, iris_bundle):
    url = f"{iris_server.url}/v1/predict"
    good = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    error_of(requests.post(url, data="{oops", headers=JSON), 400, "invalid_input", "not valid JSON")
    # a CSV body declared as CSV: refused naming the type (a JSON one is read whatever its type)
    error_of(
        requests.post(url, data="5.1,3.5,1.4,0.2", headers={"Content-Type": "text/csv"}),
        415,
        "unsupported_media_type",
        "application/json",
    )
    json_as_csv = requests.post(url, data=json.dumps(good), headers={"Content-Type": "text/csv"})
    assert json_as_csv.status_code == 200, json_as_csv.text
    error_of(requests.post(url, json={"rows": [[1]]}), 400, "invalid_input", '"instances"')
    error_of(
        requests.post(url, json={"instances": [[1, 2, 3]]}),
        400,
        "invalid_input",
        "has 3 values, but the model expects 4",
    )
    body = error_of(
        requests.post(url, json={"instances": [[1, 2, 3, 4], [1, "big", 3, 4]]}),
        400,
        "invalid_input",
        "row 1, input 'sepal_width'",
    )
    assert body["detail"]["row"] == 1 and body["detail"]["column"] == "sepal_width"
    bad_keys = dict(record, petal_colour="blue")
    del bad_keys["petal_width"]
    body = error_of(
        requests.post(url, json={"instances": [bad_keys]}),
        400,
        "invalid_input",
        "misses 'petal_width'",
        "unknown keys 'petal_colour'",
    )
    # a missing number for a model that cannot take one: refused before the model, named
    error_of(
        requests.post(url, json={"instances": [dict(record, petal_width=None)]}),
        400,
        "invalid_input",
        "row 0, input 'petal_width': a missing value",
    )
    error_of(requests.get(url), 405, "method_not_allowed", "use POST")
    for _ in range(4):  # every worker is still fine
        assert requests.post(url, json=good).status_code == 200


def test_body_over_the_limit_is_413(lr_server):
    body = {"instances": [[0.5] * 20] * 300}  # ~ 26 kB, the limit is 20 kB
    response = requests.post(f"{lr_server.url}/v1/predict", json=body, headers=auth())
    error_of(response, 413, "payload_too_large", "limit of 20000 bytes")
    assert requests.get(f"{lr_server.url}/healthz").status_code == 200


# ---------------------------------------------------------------- authentication


def test_api_keys(lr_server, access_file):
    url = f"{lr_server.url}/models/alice/lr/v1/metadata"
    error_of(requests.get(url), 401, "unauthorized", "needs a token")
    error_of(requests.get(url, headers=auth("mlhk_wrong")), 401, "unauthorized", "not valid")
    assert requests.get(url, headers=auth()).status_code == 200
    assert requests.get(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert requests.get(url, headers={"X-Api-Key": KEY}).status_code == 200
    # healthz and readyz stay open
    assert requests.get(f"{lr_server.url}/readyz").status_code == 200


def test_a_key_added_to_the_access_file_starts_working(lr_server, access_file):
    url = f"{lr_server.url}/v1/metadata"
    assert requests.get(url, headers=auth(LATER_KEY)).status_code == 401
    write_access(access_file, groups=["analysts"], keys=[KEY, LATER_KEY])
    # every worker re-reads the changed file within about a second
    wait_for(
        lambda: all(requests.get(url, headers=auth(LATER_KEY)).ok for _ in range(4)),
        "the new key to be accepted",
        15,
    )


def test_hub_tokens_by_owner_group_and_stranger(lr_server, hub_stand_in):
    url = f"{lr_server.url}/v1/metadata"
    assert requests.get(url, headers=auth("hub-token-alice")).status_code == 200  # owner
    assert requests.get(url, headers=auth("hub-token-bob")).status_code == 200  # group
    error_of(requests.get(url, headers=auth("hub-token-eve")), 403, "forbidden", "'eve'")
    error_of(requests.get(url, headers=auth("not-a-token")), 401, "unauthorized", "neither")
    calls = hub_stand_in.calls
    for _ in range(6):
        requests.get(url, headers=auth("hub-token-bob"))
    assert hub_stand_in.calls - calls <= 2  # cached: at most one question per worker


# ---------------------------------------------------------------- lifecycle


def test_sigterm_lets_the_running_request_finish(work):
    bundle = work / "slow"
    save_bundle(SlowModel(), bundle, name="slow", example=[[0.0, 1.0]])
    marker = work / "slow-started"
    server = Server(bundle, work, env={"MLHUB_AUTH": "off", "SLOW_MODEL_MARKER": str(marker)})
    try:
        result = {}

        def call():
            result["response"] = requests.post(
                f"{server.url}/v1/predict", json={"instances": [[2.0, 1.0]]}, timeout=60
            )

        caller = threading.Thread(target=call)
        caller.start()
        wait_for(marker.exists, "the slow request to reach the model")
        server.proc.send_signal(signal.SIGTERM)
        caller.join(timeout=60)
        assert result["response"].status_code == 200
        assert result["response"].json() == {"predictions": [3.0]}
        assert server.proc.wait(timeout=60) is not None
        assert "graceful shutdown" in server.log.read_text()
    finally:
        server.stop()


def test_broken_bundle_is_alive_not_ready_and_check_rejects_it(work, iris_bundle):
    pipe, frame, _ = iris_bundle
    bundle = work / "broken"
    save_bundle(pipe, bundle, name="broken", example=frame)
    (bundle / "model" / "model.pkl").write_bytes(b"\x80\x04this is not a pickle")
    server = Server(bundle, work, env={"MLHUB_AUTH": "off"})
    try:
        assert requests.get(f"{server.url}/healthz").status_code == 200
        body = error_of(requests.get(f"{server.url}/readyz"), 503, "not_ready", "model/model.pkl")
        assert "could not be loaded" in body["detail"]["reason"]
        predict = requests.post(f"{server.url}/v1/predict", json={"instances": [[1, 2, 3, 4]]})
        assert predict.status_code == 503
        assert "cannot be served" in server.log.read_text()
    finally:
        server.stop()
    check = subprocess.run(
        [sys.executable, "-m", "mlhub.serving", "check", "--bundle", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1
    assert "will not serve" in check.stderr and "could not be loaded" in check.stderr


def test_a_model_that_cannot_predict_its_example_is_not_ready(work):
    bundle = work / "fails"
    save_bundle(FailsWhenServed(), bundle, name="fails", example=[[1.0, 2.0]])
    server = Server(bundle, work, env={"MLHUB_AUTH": "off"})
    try:
        body = error_of(requests.get(f"{server.url}/readyz"), 503, "not_ready")
        assert body["detail"]["reason"] == (
            "it cannot predict its own example: the model could not predict on this input: "
            "RuntimeError: a library this model needs is missing here"
        )
        assert "mlhub_model_ready 0" in requests.get(f"{server.url}/metrics").text
    finally:
        server.stop()


def test_check_accepts_a_good_bundle(iris_bundle):
    pipe, frame, bundle = iris_bundle
    check = subprocess.run(
        [sys.executable, "-m", "mlhub.serving", "check", "--bundle", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    summary = json.loads(check.stdout)
    assert summary["ok"] is True and summary["name"] == "iris"
    assert summary["predictions"] == pipe.predict(frame.head(5)).tolist()


# ---------------------------------------------------------------- micro-batching, Arrow, Parquet


class BatchReporter:
    """Answers ``[row id, rows in this model call]`` per row and refuses negative ids. Each
    call sleeps a little, so concurrent requests queue up and share calls."""

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        time.sleep(0.02)
        if (X[:, 0] < 0).any():
            raise ValueError("negative ids are refused")
        return np.column_stack([X[:, 0], np.full(len(X), len(X))])


def concurrently(n, call):
    """``call(i)`` from ``n`` threads released together; the results by ``i``."""
    results = {}
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == n
    return results


@pytest.fixture(scope="module")
def batching_server(work):
    """Batches of at most 8 rows, with 32 threads per worker, so batches must be cut."""
    bundle = work / "reporter"
    save_bundle(BatchReporter(), bundle, name="reporter", example=[[1.0, 0.0]])
    server = Server(
        bundle,
        work,
        env={
            "MLHUB_AUTH": "off",
            "MLHUB_BATCHING": "on",
            "MLHUB_BATCH_MAX_SIZE": "8",
            "MLHUB_THREADS": "32",
            "MLHUB_BATCH_MAX_WAIT_MS": "5",
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lr_batching_server(lr_bundle, work, access_file):
    """The LR bundle with micro-batching on (default sizes) and an API key."""
    server = Server(
        lr_bundle[2],
        work,
        env={"MLHUB_ACCESS_FILE": str(access_file), "MLHUB_BATCHING": "on"},
    )
    yield server
    server.stop()


def test_micro_batching_answers_each_caller_with_its_own_row(lr_batching_server, lr_bundle):
    model, X, _ = lr_bundle
    url = f"{lr_batching_server.url}/v1/predict?proba=true"
    before = requests.get(f"{lr_batching_server.url}/metrics", headers=auth()).text

    def call(i):
        return requests.post(url, json={"instances": [X[i].tolist()]}, headers=auth(), timeout=60)

    answers = concurrently(64, call)
    expected = model.predict_proba(X[:64])
    for i, answer in answers.items():
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["predictions"] == [model.predict(X[i : i + 1])[0]]
        assert np.allclose(body["probabilities"], expected[i : i + 1], rtol=0, atol=1e-12)
    after = requests.get(f"{lr_batching_server.url}/metrics", headers=auth()).text

    def served(text):
        line = 'mlhub_requests_total{route="/v1/predict",status="200"} '
        return sum(int(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(line))

    assert served(after) - served(before) == 64  # request threads count without losses


def test_micro_batches_never_exceed_the_max_size(batching_server):
    url = f"{batching_server.url}/v1/predict"

    def call(i):
        rows = [[float(i), 0.0]] * (1 + i % 3)  # 1 to 3 rows per request
        return requests.post(url, json={"instances": rows}, timeout=60)

    sizes = []
    for i, answer in concurrently(64, call).items():
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [row_id for row_id, _ in predictions] == [i] * (1 + i % 3)
        sizes += [size for _, size in predictions]
    assert max(sizes) <= 8
    assert max(sizes) > 3, "concurrent requests should have shared model calls"


def test_a_bad_request_does_not_fail_the_others_in_its_batch(batching_server):
    url = f"{batching_server.url}/v1/predict"

    def call(i):
        if i % 8 == 1:  # valid input the model refuses
            row = [-float(i), 0.0]
        elif i % 8 == 5:  # input that does not fit the signature
            row = [float(i), "zero"]
        else:
            row = [float(i), 0.0]
        return requests.post(url, json={"instances": [row]}, timeout=60)

    for i, answer in concurrently(48, call).items():
        if i % 8 == 1:
            error_of(answer, 422, "prediction_failed", "negative ids are refused")
        elif i % 8 == 5:
            error_of(answer, 400, "invalid_input", "row 0, input 'x1'")
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"][0][0] == i


@pytest.mark.parametrize("server_name", ["lr_server", "lr_batching_server"])
def test_arrow_and_parquet_bodies_equal_json(server_name, request, lr_bundle):
    pa = pytest.importorskip("pyarrow")
    import io

    import pyarrow.parquet as pq

    from mlhub.batch.endpoint import encode_arrow

    server = request.getfixturevalue(server_name)
    model, X, _ = lr_bundle
    rows = X[:40]  # ~ 7 kB as Arrow, under lr_server's 20 kB limit
    url = f"{server.url}/v1/predict"
    table = pa.table({f"x{j}": rows[:, j] for j in range(rows.shape[1])})
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    as_json = requests.post(url, json={"instances": rows.tolist()}, headers=auth()).json()
    assert as_json == {"predictions": model.predict(rows).tolist()}
    for body, media in (
        (encode_arrow(table), "application/vnd.apache.arrow.stream"),
        (parquet.getvalue(), "application/x-parquet"),
    ):
        answer = requests.post(url, data=body, headers={**auth(), "Content-Type": media})
        assert answer.status_code == 200, answer.text
        assert answer.json() == as_json
    answer = requests.post(
        url + "?proba=true",
        data=encode_arrow(table),
        headers={
            **auth(),
            "Content-Type": "application/vnd.apache.arrow.stream",
            "Accept": "application/vnd.apache.arrow.stream",
        },
    )
    assert answer.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    answered = pa.ipc.open_stream(answer.content).read_all()
    assert answered.column("predictions").to_pylist() == as_json["predictions"]
    assert np.allclose(answered.column("proba_1").to_numpy(), model.predict_proba(rows)[:, 1])


def _ppid(pid):
    return int(re.search(r"PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def test_the_fork_server_forks_each_model_and_they_outlive_it(work, lr_bundle, iris_bundle):
    """The local deployer's fork server (``mlhub.serving.forkserver``, through the deployer's
    client): each model's uWSGI master is its child, serves its own bundle from its directory
    with its own environment and log, and keeps serving when the fork server stops; how a
    model ended is known (its exit status), and a child that cannot start says why."""
    settings = SimpleNamespace(
        data_dir=str(work / "fs-data"),
        log=logging.getLogger("test-fork-server"),
        fork_server=True,
        fork_server_imports=["numpy", "sklearn.linear_model", "no_such_module"],  # skipped
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLHUB_")}
    server = ForkServerClient(settings, lambda: dict(base))
    server.start()
    forked = []
    try:
        socket_made = lambda: server.socket.exists()  # noqa: E731
        wait_for(socket_made, "the fork server to listen", 60)
        for name, (model, X, bundle) in {"lr": lr_bundle, "iris": iris_bundle}.items():
            port, log = free_port(), work / f"fs-{name}.log"
            env = {**base, "MLHUB_AUTH": "off", "MLHUB_MODEL_VERSION": f"v-{name}"}
            proc = server.fork(bundle, port, 2, "127.0.0.1", env, log)
            forked.append((proc, port, model, X))
            ready = f"http://127.0.0.1:{port}/readyz"
            wait_for(lambda u=ready: requests.get(u, timeout=5).ok, f"{name} to serve", 60)
            assert requests.get(ready).json()["version"] == f"v-{name}"
            assert _ppid(proc.pid) == server.proc.pid and proc.poll() is None
            assert os.readlink(f"/proc/{proc.pid}/cwd") == str(Path(bundle).resolve())
            assert f"loaded model '{name}'" in log.read_text()
        assert "cannot import no_such_module" in (server.dir / "forkserver.log").read_text()
        with pytest.raises(DeployError, match="could not start the model"):
            server.fork(work / "no-such-bundle", free_port(), 2, "127.0.0.1", base, work / "x.log")
        assert "FileNotFoundError" in (work / "x.log").read_text()
        iris, *_ = forked[1]
        os.kill(iris.pid, signal.SIGKILL)
        wait_for(lambda: iris.poll() is not None, "the killed master to be seen ended", 30)
        assert iris.returncode == -signal.SIGKILL
        server.stop()
        lr, port, model, X = forked[0]
        answer = requests.post(
            f"http://127.0.0.1:{port}/v1/predict", json={"instances": X[:3].tolist()}
        )
        assert answer.json()["predictions"] == model.predict(X[:3]).tolist()
        server.start()  # the models it forked before it stopped are left alone
        assert lr.poll() is None
        # a fork server that died: that start is a fresh process, the next ones forked again
        wait_for(socket_made, "the fork server to listen", 60)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        assert server.fork(lr_bundle[2], free_port(), 2, "127.0.0.1", base, work / "y.log") is None
        wait_for(socket_made, "a new fork server to listen", 60)
        again = server.fork(lr_bundle[2], free_port(), 2, "127.0.0.1", base, work / "y.log")
        forked.append((again, None, None, None))
        assert _ppid(again.pid) == server.proc.pid
    finally:
        server.stop()
        for proc, *_ in forked:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
