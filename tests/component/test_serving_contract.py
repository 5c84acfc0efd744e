"""One serving contract, two runtimes: every test here runs against the Python runtime (uWSGI)
and the R runtime (plumber) serving the same model, started with the local deployer's own
serve commands, authenticated with the same access file and hub.

The model is the same function in both languages: ``2*temp + pressure + code(line) + count``
(``code`` = 1, 2, 3 for the levels a, b, c). In Python it is a small pyfunc class; in R an
``lm`` fitted on exact data, which recovers it. So both servers must give equal predictions
for equal requests, and equal statuses and error codes for bad ones.
"""

import json
import os
import subprocess
import sys

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import requests
from support.batchtest import _stop
from support.embedded_hub import free_port, wait_for
from support.hubstandin import KEY, write_access
from support.rmodels import formula_bundle

import mlhub
from mlhub import rlang
from mlhub.bundle import save_bundle
from mlhub.deployers.local import LocalDeployer

pytestmark = pytest.mark.component

cloudpickle.register_pickle_by_value(sys.modules[__name__])

RUNTIMES = ["python", "r"]
LEVELS = ["a", "b", "c"]
ROWS = [
    {"temp": 0.5, "pressure": 1.25, "line": "a", "count": 2},
    {"temp": -1.0, "pressure": 0.0, "line": "c", "count": 7},
    {"temp": 2.0, "pressure": -3.5, "line": "b", "count": 0},
]
COLUMNS = ["temp", "pressure", "line", "count"]


def expected(rows):
    return [2 * r["temp"] + r["pressure"] + LEVELS.index(r["line"]) + 1 + r["count"] for r in rows]


class Formula:
    """The model in Python (the R side fits the same function with ``lm``)."""

    def predict(self, frame):
        codes = frame["line"].cat.codes.to_numpy() + 1
        return 2 * frame["temp"].to_numpy() + frame["pressure"].to_numpy() + codes + frame["count"]


def example_frame():
    frame = pd.DataFrame(ROWS)
    frame["line"] = pd.Categorical(frame["line"], categories=LEVELS)
    frame["count"] = frame["count"].astype("int32")
    return frame


class ContractServer:
    """A serving process started with ``LocalDeployer.serve_commands[runtime]``."""

    def __init__(self, runtime, bundle, log_dir, env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        deployer = LocalDeployer(data_dir=str(log_dir))
        cmd = deployer.launcher.command(
            deployer.serve_commands,
            runtime,
            bundle=bundle,
            port=self.port,
            workers=1,
            host="127.0.0.1",
        )
        self.log = log_dir / f"{runtime}-{self.port}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("MLHUB_")}
        full.update(env)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=full, stdout=log, stderr=log, cwd=bundle)
        try:
            wait_for(self._started, f"the {runtime} server (log {self.log})", 60)
        except BaseException:
            self.stop()
            raise

    def _started(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self):
        _stop(self.proc)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("contract")


@pytest.fixture(scope="module", params=RUNTIMES)
def server(request, work, hub_stand_in, access_file):
    runtime = request.param
    if runtime == "r" and rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    bundle = work / f"bundle-{runtime}"
    if runtime == "r":
        formula_bundle(bundle, example=json.loads(example_frame().to_json(orient="records")))
    else:
        save_bundle(Formula(), bundle, name="formula", example=example_frame())
    served = ContractServer(
        runtime,
        bundle,
        work,
        {
            "MLHUB_URL_PREFIX": "/models/alice/formula",
            "MLHUB_ACCESS_FILE": str(access_file),
            "JUPYTERHUB_API_URL": hub_stand_in.api_url,
            "MLHUB_MODEL_OWNER": "alice",
            "MLHUB_MODEL_VERSION": f"sha256:{runtime}",
            "MLHUB_MAX_BODY_BYTES": "4000",
        },
    )
    served.runtime = runtime
    yield served
    served.stop()


def auth(token=KEY):
    return {"Authorization": f"token {token}"}


def post(server, path, body, headers=None, prefix="/models/alice/formula"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"Content-Type": "application/json", **auth(), **(headers or {})}
    return requests.post(f"{server.url}{prefix}{path}", data=data, headers=headers, timeout=30)


def error_of(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code", "detail"} and body["code"] == code, body
    assert body["error"], body
    return body


# ---------------------------------------------------------------- health and metadata


def test_health_readiness_and_metadata(server):
    base = f"{server.url}/models/alice/formula"
    assert requests.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = requests.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "name": "formula",
        "version": f"sha256:{server.runtime}",
    }
    assert requests.get(f"{base}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{base}/v2/health/ready").json() == {"ready": True}
    server_meta = requests.get(f"{base}/v2", headers=auth()).json()
    assert server_meta["name"] == "mlhub" and server_meta["version"] == mlhub.__version__
    assert server_meta["extensions"] == ["binary_tensor_data"]
    version = f"sha256:{server.runtime}"
    model_meta = requests.get(f"{base}/v2/models/formula/versions/{version}", headers=auth())
    assert model_meta.json()["versions"] == [version]
    ready = requests.get(f"{base}/v2/models/formula/versions/{version}/ready", headers=auth())
    assert ready.json() == {"name": "formula", "ready": True}
    other = requests.get(f"{base}/v2/models/formula/versions/sha256:old/ready", headers=auth())
    assert other.status_code == 404 and "leave the version out" in other.json()["error"]
    meta = requests.get(f"{base}/v1/metadata", headers=auth()).json()
    assert (meta["name"], meta["owner"], meta["runtime"]) == ("formula", "alice", server.runtime)
    assert [(i["name"], i["type"]) for i in meta["signature"]["inputs"]] == [
        ("temp", "double"),
        ("pressure", "double"),
        ("line", "category"),
        ("count", "integer"),
    ]
    assert meta["signature"]["inputs"][2]["levels"] == LEVELS
    assert meta["example"] == ROWS
    # the same routes without the prefix (the proxy keeps it; local callers may not)
    assert requests.get(f"{server.url}/v1/metadata", headers=auth()).json() == meta


# ---------------------------------------------------------------- predictions


def test_records_rows_and_columnar_give_the_function(server):
    want = expected(ROWS)
    order = ["count", "line", "temp", "pressure"]
    bodies = [
        {"instances": ROWS},
        {"instances": [[r[c] for c in COLUMNS] for r in ROWS]},
        {"columns": order, "data": [[r[c] for c in order] for r in ROWS]},
    ]
    for body in bodies:
        answer = post(server, "/v1/predict", body)
        assert answer.status_code == 200, answer.text
        assert list(answer.json()) == ["predictions"]
        assert np.allclose(answer.json()["predictions"], want, atol=1e-8)


def test_null_is_a_missing_number_for_a_model_that_takes_one(server):
    row = dict(ROWS[0], pressure=None)
    answer = post(server, "/v1/predict", {"instances": [row]})
    if server.runtime == "python":
        # a model of its own class: mlhub cannot tell, so the model decides (NaN in, NaN out)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [None]
    else:
        # lm answers NA for NA: asked at load, it does not take missing numbers
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"] == {"row": 0, "column": "pressure", "got": None}
        assert "a missing value (null)" in answer.json()["error"]


def test_open_inference_protocol_v2(server):
    base = "/v2/models/formula"
    get = lambda path: requests.get(  # noqa: E731
        f"{server.url}{path}", headers=auth(), timeout=10
    )
    assert get(f"{base}/ready").json() == {"name": "formula", "ready": True}
    meta = get(base).json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("temp", "FP64"),
        ("pressure", "FP64"),
        ("line", "BYTES"),
        ("count", "INT32"),
    ]
    per_input = [
        {"name": "temp", "shape": [3], "datatype": "FP64", "data": [r["temp"] for r in ROWS]},
        {
            "name": "pressure",
            "shape": [3],
            "datatype": "FP64",
            "data": [r["pressure"] for r in ROWS],
        },
        {"name": "line", "shape": [3, 1], "datatype": "BYTES", "data": [r["line"] for r in ROWS]},
        {"name": "count", "shape": [3], "datatype": "INT32", "data": [r["count"] for r in ROWS]},
    ]
    answer = post(server, f"{base}/infer", {"id": "q1", "inputs": per_input}, prefix="")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["model_name"]) == ("q1", "formula")
    (output,) = body["outputs"]
    assert (output["name"], output["shape"], output["datatype"]) == ("predict", [3], "FP64")
    assert np.allclose(output["data"], expected(ROWS))
    flat = [v for r in ROWS for v in (r["temp"], r["pressure"], r["line"], r["count"])]
    tensor = {"name": "input-0", "shape": [3, 4], "datatype": "BYTES", "data": flat}
    answer = post(server, f"{base}/infer", {"inputs": [tensor]})
    assert np.allclose(answer.json()["outputs"][0]["data"], expected(ROWS))
    error_of(post(server, "/v2/models/other/infer", {"inputs": [tensor]}), 404, "not_found")
    error_of(post(server, f"{base}/infer", {"inputs": []}), 400, "invalid_input")


def test_metrics_and_openapi(server):
    def count(text, route, status):
        line = f'mlhub_requests_total{{route="{route}",status="{status}"}} '
        found = [ln for ln in text.splitlines() if ln.startswith(line)]
        return int(found[0].split()[-1]) if found else 0

    before = requests.get(f"{server.url}/metrics", headers=auth()).text
    for _ in range(3):
        assert post(server, "/v1/predict", {"instances": ROWS}).status_code == 200
    post(server, "/v1/predict", {"instances": [[1]]})
    after = requests.get(f"{server.url}/metrics", headers=auth())
    assert after.headers["Content-Type"].startswith("text/plain")
    text = after.text
    assert count(text, "/v1/predict", 200) - count(before, "/v1/predict", 200) == 3
    assert count(text, "/v1/predict", 400) - count(before, "/v1/predict", 400) == 1
    assert "mlhub_model_ready 1" in text and "mlhub_predictions_total " in text
    assert 'mlhub_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"}' in text
    assert 'mlhub_model_info{name="formula"' in text
    spec = requests.get(f"{server.url}/openapi.json", headers=auth()).json()
    assert spec["openapi"].startswith("3.1")
    assert {
        "/healthz",
        "/readyz",
        "/v1/metadata",
        "/v1/predict",
        "/v2",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
        "/metrics",
        "/openapi.json",
    } <= set(spec["paths"])
    record = spec["components"]["schemas"]["Record"]
    assert list(record["properties"]) == COLUMNS
    assert record["properties"]["line"]["enum"] == [*LEVELS, None]
    assert spec["servers"] == [{"url": "/models/alice/formula"}]


# ---------------------------------------------------------------- bad input


def test_bad_payloads_get_the_same_4xx_from_both_runtimes(server):
    bad_level = dict(ROWS[0], line="z")
    body = error_of(post(server, "/v1/predict", {"instances": [bad_level]}), 400, "invalid_input")
    assert "'a', 'b', 'c'" in body["error"]
    assert body["detail"] == {"row": 0, "column": "line", "expected": "category", "got": "a string"}

    wrong_type = dict(ROWS[1], temp="hot")
    body = error_of(
        post(server, "/v1/predict", {"instances": [ROWS[0], wrong_type]}), 400, "invalid_input"
    )
    assert body["detail"] == {"row": 1, "column": "temp", "expected": "double", "got": "a string"}

    fractional = dict(ROWS[0], count=2.5)
    body = error_of(post(server, "/v1/predict", {"instances": [fractional]}), 400, "invalid_input")
    assert body["detail"]["column"] == "count" and body["detail"]["expected"] == "integer"

    missing = {k: v for k, v in ROWS[0].items() if k != "pressure"}
    body = error_of(post(server, "/v1/predict", {"instances": [missing]}), 400, "invalid_input")
    assert body["detail"]["missing"] == ["pressure"] and body["detail"]["unknown"] == []

    extra = dict(ROWS[0], colour="red")
    body = error_of(post(server, "/v1/predict", {"instances": [extra]}), 400, "invalid_input")
    assert body["detail"]["unknown"] == ["colour"]

    body = error_of(post(server, "/v1/predict", {"instances": [[1.0, 2.0]]}), 400, "invalid_input")
    assert body["detail"] == {"row": 0, "expected": 4, "got": 2}

    for payload in (b"{not json", b"[1, 2]", b'{"rows": []}', b'{"instances": []}', b""):
        error_of(post(server, "/v1/predict", payload), 400, "invalid_input")
    error_of(
        post(server, "/v1/predict", "a,b", {"Content-Type": "text/csv"}),
        415,
        "unsupported_media_type",
    )
    big = {"instances": [ROWS[0]] * 100}  # over this server's 4000-byte limit
    body = error_of(post(server, "/v1/predict", big), 413, "payload_too_large")
    assert body["detail"]["limit"] == 4000
    wrong_method = requests.get(f"{server.url}/v1/predict", headers=auth())
    assert wrong_method.status_code == 405 and "POST" in wrong_method.json()["error"]
    error_of(requests.get(f"{server.url}/nothing/here", headers=auth()), 404, "not_found")
    # and it keeps serving
    assert post(server, "/v1/predict", {"instances": ROWS[:1]}).status_code == 200


# ---------------------------------------------------------------- authentication


def test_same_credentials_work_on_both_runtimes(server, access_file):
    url = f"{server.url}/v1/predict"
    body = json.dumps({"instances": ROWS[:1]})

    def call(headers):
        return requests.post(
            url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=10
        )

    no_token = call({})
    error_of(no_token, 401, "unauthorized")
    assert no_token.headers["WWW-Authenticate"] == 'Bearer realm="mlhub"'
    assert call(auth()).status_code == 200
    assert call({"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert call({"X-Api-Key": KEY}).status_code == 200
    error_of(call(auth("mlhk_not-this-one")), 401, "unauthorized")
    error_of(call({"Authorization": f"Basic {KEY}"}), 401, "unauthorized")
    assert call(auth("hub-token-alice")).status_code == 200  # the owner
    assert call(auth("hub-token-bob")).status_code == 200  # in a shared group
    body_403 = error_of(call(auth("hub-token-eve")), 403, "forbidden")
    assert body_403["detail"] == {"user": "eve"}
    error_of(call(auth("hub-token-svc")), 403, "forbidden")  # a service named like the owner
    error_of(call(auth("not-a-token")), 401, "unauthorized")
    # health and readiness stay public
    assert requests.get(f"{server.url}/readyz").status_code == 200
    # a key added to the access file starts working within about a second
    later = "mlhk_added-later"
    write_access(access_file, groups=["analysts"], keys=[KEY, later])
    wait_for(lambda: call(auth(later)).status_code == 200, "the new key to be accepted", 10)
    write_access(access_file, groups=["analysts"], keys=[KEY])
    wait_for(lambda: call(auth(later)).status_code == 401, "the removed key to be refused", 10)
