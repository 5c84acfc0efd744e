"""Standard clients, unchanged, against published models through the hub's public URL
(``/models/<user>/<name>/``, the proxy in front, as users call them), for a Python and an R
model: tritonclient's HTTP client (JSON tensors and its default binary tensor extension), plain
``curl -d`` as the README writes it, and ``requests.post(data=...)``. None of them says the body
is JSON: curl and requests declare ``application/x-www-form-urlencoded``, tritonclient declares
nothing.
"""

import json
import subprocess

import numpy as np
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from support.publishing import client
from support.rmodels import formula_bundle

from mlhub.bundle import save_bundle

pytestmark = [pytest.mark.component, pytest.mark.slow]

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
R_ROWS = {"temp": [0.5, 1.0], "pressure": [1.25, -2.0], "line": ["a", "c"], "count": [2, 7]}


def r_expected(rows):
    """The formula model's exact answer: 2*temp + pressure + code(line) + count."""
    codes = {"a": 1, "b": 2, "c": 3}
    return [2 * t + p + codes[line] + n for t, p, line, n in zip(*rows.values(), strict=True)]


@pytest.fixture(scope="module")
def models(hub, tmp_path_factory):
    """alice's Python classifier (string classes) and R formula model, published."""
    tmp = tmp_path_factory.mktemp("clients")
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, load_iris().target_names[y])
    save_bundle(model, tmp / "py", name="iris", example=X[:2])
    alice = client(hub, hub.alice)
    alice.publish(tmp / "py", "iris")
    alice.publish(formula_bundle(tmp / "r"), "lines")
    key = alice.create_key("iris", "standard clients")["key"]
    r_key = alice.create_key("lines", "standard clients")["key"]
    return {"iris": (model.predict(np.array(ROWS)).tolist(), key), "lines": (None, r_key)}


def triton(hub, name):
    from tritonclient.http import InferenceServerClient

    return InferenceServerClient(url=f"{hub.url.split('://', 1)[1]}models/alice/{name}")


def test_tritonclient_python_model(hub, models):
    from tritonclient.http import InferInput, InferRequestedOutput

    expected, key = models["iris"]
    # a fresh dict per call: tritonclient writes Inference-Header-Content-Length into the
    # headers it is given, and a dict used again sends that size with the next request
    auth = {"Authorization": f"Bearer {key}"}
    tc = triton(hub, "iris")
    assert tc.is_server_live(headers=auth) and tc.is_server_ready(headers=auth)
    assert tc.is_model_ready("iris", headers=auth)
    server = tc.get_server_metadata(headers=auth)
    assert server["name"] == "mlhub" and "binary_tensor_data" in server["extensions"]
    meta = tc.get_model_metadata("iris", headers=auth)
    version = meta["versions"][0]
    assert tc.get_model_metadata("iris", model_version=version, headers=auth)["name"] == "iris"

    for binary in (True, False):  # tritonclient's default is binary tensors
        x = InferInput("x", [2, 4], "FP32")
        x.set_data_from_numpy(np.array(ROWS, dtype=np.float32), binary_data=binary)
        result = tc.infer("iris", [x], headers=dict(auth))
        assert result.as_numpy("predict").astype(str).tolist() == expected, binary
        outputs = [
            InferRequestedOutput("predict", binary_data=binary),
            InferRequestedOutput("predict_proba", binary_data=binary),
        ]
        result = tc.infer("iris", [x], outputs=outputs, model_version=version, headers=dict(auth))
        proba = result.as_numpy("predict_proba")
        assert proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1.0)

    # a version that is not the live one, and no key: refused as JSON, through tritonclient
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="leave the version out"):
        tc.infer("iris", [x], model_version="sha256:other", headers=dict(auth))
    with pytest.raises(InferenceServerException, match="token"):
        tc.infer("iris", [x])


def test_tritonclient_r_model(hub, models):
    from tritonclient.http import InferInput

    _, key = models["lines"]
    auth = {"Authorization": f"Bearer {key}"}
    tc = triton(hub, "lines")
    assert tc.is_model_ready("lines", headers=auth)
    assert "binary_tensor_data" in tc.get_server_metadata(headers=auth)["extensions"]
    for binary in (True, False):
        inputs = []
        for name, datatype, values in (
            ("temp", "FP64", np.array(R_ROWS["temp"])),
            ("pressure", "FP64", np.array(R_ROWS["pressure"])),
            ("line", "BYTES", np.array(R_ROWS["line"], dtype=object)),
            ("count", "INT32", np.array(R_ROWS["count"], dtype=np.int32)),
        ):
            tensor = InferInput(name, [2], datatype)
            tensor.set_data_from_numpy(values, binary_data=binary)
            inputs.append(tensor)
        result = tc.infer("lines", inputs, headers=dict(auth))
        assert np.allclose(result.as_numpy("predict"), r_expected(R_ROWS)), binary


@pytest.mark.parametrize("name", ["iris", "lines"])
def test_curl_and_requests_with_no_json_type(hub, models, name):
    expected, key = models[name]
    if name == "iris":
        body = {"instances": ROWS}
    else:
        body = {
            "instances": [
                dict(zip(R_ROWS, row, strict=True)) for row in zip(*R_ROWS.values(), strict=True)
            ]
        }
        expected = r_expected(R_ROWS)
    url = f"{hub.url}models/alice/{name}/v1/predict"
    # the README's command, as written there: -d and a token header, no Content-Type
    done = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: token {key}", "-d", json.dumps(body), url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)["predictions"]
    assert got == expected if name == "iris" else np.allclose(got, expected), done.stdout
    answer = requests.post(
        url, data=json.dumps(body), headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    # a body that is not JSON, declared as a form: 415 naming the type
    answer = requests.post(url, data={"a": "1"}, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 415, answer.text
    assert "application/x-www-form-urlencoded" in answer.json()["error"]


KSERVE = "kserve==0.21.0"
KSERVE_SCRIPT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

base, name, key, tensors = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
headers = {"Authorization": f"Bearer {key}"}
DTYPES = {"FP64": np.float64, "INT32": np.int32, "BYTES": object}

async def main():
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    live = await client.is_server_live(base, headers=headers)
    ready = await client.is_server_ready(base, headers=headers)
    model_ready = await client.is_model_ready(base, name, headers=headers)
    answers = []
    for binary in (False, True):
        inputs = []
        for t in tensors:
            tensor = InferInput(t["name"], t["shape"], t["datatype"])
            data = np.array(t["data"], dtype=DTYPES[t["datatype"]])
            tensor.set_data_from_numpy(data, binary_data=binary)
            inputs.append(tensor)
        response = await client.infer(
            base, InferRequest(model_name=name, infer_inputs=inputs), model_name=name,
            headers=dict(headers),
        )
        values = response.outputs[0].as_numpy().ravel().tolist()
        answers.append([v.decode() if isinstance(v, bytes) else v for v in values])
    await client.close()
    print(json.dumps({"live": live, "ready": ready, "model_ready": model_ready,
                      "answers": answers}))

asyncio.run(main())
"""


def kserve_client(hub, name, key, tensors):
    from support.client_venvs import client_python

    done = subprocess.run(
        [
            client_python(KSERVE),
            "-c",
            KSERVE_SCRIPT,
            f"{hub.url}models/alice/{name}",
            name,
            key,
            json.dumps(tensors),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["live"] is True and result["ready"] is True and result["model_ready"] is True
    return result["answers"]


def test_kserve_sdk_rest_client(hub, models):
    """KServe's own Python SDK (its REST client, v2 protocol, JSON and binary tensors), in a
    venv of its own, against the Python and the R model."""
    expected, key = models["iris"]
    tensors = [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]
    answers = kserve_client(hub, "iris", key, tensors)
    assert answers == [expected, expected]
    _, r_key = models["lines"]
    types = {"temp": "FP64", "pressure": "FP64", "line": "BYTES", "count": "INT32"}
    tensors = [
        {"name": n, "shape": [2], "datatype": types[n], "data": values}
        for n, values in R_ROWS.items()
    ]
    for answer in kserve_client(hub, "lines", r_key, tensors):
        assert np.allclose(answer, r_expected(R_ROWS))
