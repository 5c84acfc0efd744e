"""What standard clients send, in-process (Flask's test client): the body types curl, requests
and proxies declare on JSON, the whole Open Inference Protocol REST surface, and Triton's binary
tensor data extension, laid out here byte for byte as its specification gives it.

The same clients run for real, through the hub's public URL, in
tests/component/test_standard_clients.py.
"""

import json
import struct

import numpy as np
import pytest
from sklearn.datasets import load_iris
from support.serving_app import AUTH, make_client, served_model

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def classifier():
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(X, load_iris().target_names[y])


@pytest.fixture
def client(classifier, tmp_path):
    X = load_iris().data
    return make_client(served_model(classifier, X, name="iris"), tmp_path)[0]


def expected(classifier):
    return classifier.predict(np.array(ROWS)).tolist()


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "text/plain", "application/octet-stream"],
)
def test_a_json_body_is_read_as_json_whatever_type_it_is_declared_as(
    client, classifier, content_type
):
    headers = dict(AUTH, **({"Content-Type": content_type} if content_type else {}))
    body = json.dumps({"instances": ROWS})
    answer = client.post("/v1/predict", data=body, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json == {"predictions": expected(classifier)}
    v2_body = json.dumps(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}
    )
    answer = client.post("/v2/models/iris/infer", data=v2_body, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["outputs"][0]["data"] == expected(classifier)


def test_a_body_of_another_type_that_is_not_json_is_415_naming_its_type(client):
    answer = client.post(
        "/v1/predict",
        data="a=1&b=2",
        headers=AUTH,
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 415
    assert answer.json["code"] == "unsupported_media_type"
    assert "'application/x-www-form-urlencoded'" in answer.json["error"]
    assert "Content-Type: application/json" in answer.json["error"]
    # declared as JSON and broken: the JSON error, not the type's
    answer = client.post("/v1/predict", data="{nope", headers=AUTH, content_type="application/json")
    assert answer.status_code == 400 and "not valid JSON" in answer.json["error"]


def test_server_metadata_and_versioned_routes(client, classifier):
    server = client.get("/v2", headers=AUTH)
    assert server.status_code == 200
    assert server.json["name"] == "mlhub" and "binary_tensor_data" in server.json["extensions"]
    assert client.get("/v2").status_code == 401  # like every route but health
    version = "sha256:abc"
    model = client.get(f"/v2/models/iris/versions/{version}", headers=AUTH)
    assert model.status_code == 200 and model.json["versions"] == [version]
    ready = client.get(f"/v2/models/iris/versions/{version}/ready", headers=AUTH)
    assert ready.json == {"name": "iris", "ready": True}
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}
    infer = client.post(f"/v2/models/iris/versions/{version}/infer", json=body, headers=AUTH)
    assert infer.status_code == 200 and infer.json["outputs"][0]["data"] == expected(classifier)
    other = client.post("/v2/models/iris/versions/sha256:other/infer", json=body, headers=AUTH)
    assert other.status_code == 404
    assert "sha256:abc" in other.json["error"] and "leave the version out" in other.json["error"]


def binary_request(inputs, outputs=None, parameters=None):
    """A body of the binary tensor data extension: JSON header, then each tensor's raw bytes."""
    tensors, tail = [], b""
    for name, datatype, arr in inputs:
        if datatype == "BYTES":
            raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in arr.ravel())
        else:
            raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        tensors.append(
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        tail += raw
    header = {"inputs": tensors}
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    return head + tail, {"Inference-Header-Content-Length": str(len(head)), **AUTH}


def read_binary_answer(answer):
    """``{output name: numpy array}`` from a binary answer (JSON header, then raw bytes)."""
    size = int(answer.headers["Inference-Header-Content-Length"])
    data = answer.get_data()
    header, tail, at, out = json.loads(data[:size]), data[size:], 0, {}
    for output in header["outputs"]:
        if "data" in output:
            continue
        n = output["parameters"]["binary_data_size"]
        raw, at = tail[at : at + n], at + n
        if output["datatype"] == "BYTES":
            values, i = [], 0
            while i < len(raw):
                (length,) = struct.unpack_from("<I", raw, i)
                values.append(raw[i + 4 : i + 4 + length].decode())
                i += 4 + length
            out[output["name"]] = np.array(values)
        else:
            dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8"}[output["datatype"]]
            out[output["name"]] = np.frombuffer(raw, dtype=dtype).reshape(output["shape"])
    assert at == len(tail)
    return out


def test_binary_inputs_and_outputs(client, classifier):
    x = np.array(ROWS, dtype=np.float32)
    body, headers = binary_request([("x", "FP32", x)], parameters={"binary_data_output": True})
    answer = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert answer.status_code == 200, answer.get_data()
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert read_binary_answer(answer)["predict"].tolist() == expected(classifier)

    # per output: predict as JSON, probabilities as bytes
    body, headers = binary_request(
        [("x", "FP64", np.array(ROWS))],
        outputs=[
            {"name": "predict", "parameters": {"binary_data": False}},
            {"name": "predict_proba", "parameters": {"binary_data": True}},
        ],
    )
    answer = client.post("/v2/models/iris/infer", data=body, headers=headers)
    size = int(answer.headers["Inference-Header-Content-Length"])
    header = json.loads(answer.get_data()[:size])
    assert header["outputs"][0]["data"] == expected(classifier)
    proba = read_binary_answer(answer)["predict_proba"]
    assert np.allclose(proba, classifier.predict_proba(np.array(ROWS)))

    # binary inputs, JSON answer when no binary output is asked for
    body, headers = binary_request([("x", "FP64", np.array(ROWS))])
    answer = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert answer.json["outputs"][0]["data"] == expected(classifier)


def test_binary_bytes_inputs_per_column(tmp_path):
    """A model of named string and number inputs, one BYTES and one FP64 tensor."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"line": ["a", "b", "a", "c"], "temp": [1.0, 2.0, 3.0, 4.0]})
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["line"]), remainder="passthrough"),
        LinearRegression(),
    ).fit(frame, [1.0, 2.0, 3.0, 4.0])
    client = make_client(served_model(model, frame, name="lines"), tmp_path)[0]
    body, headers = binary_request(
        [
            ("line", "BYTES", np.array(["b", "c"], dtype=object)),
            ("temp", "FP64", np.array([2.0, 4.0])),
        ]
    )
    answer = client.post("/v2/models/lines/infer", data=body, headers=headers)
    assert answer.status_code == 200, answer.get_data()
    assert np.allclose(answer.json["outputs"][0]["data"], model.predict(frame.iloc[[1, 3]]))


@pytest.mark.parametrize(
    "mangle, fragment",
    [
        (lambda body, size: (body, str(size + 10_000)), "Inference-Header-Content-Length"),
        (lambda body, size: (body, "twelve"), "Inference-Header-Content-Length"),
        # a size left over from another request (tritonclient writes it into a caller's dict)
        (lambda body, size: (body, str(size - 20)), "are not JSON"),
        (lambda body, size: (body[:-3], str(size)), "binary_data_size"),
        (lambda body, size: (body + b"xyz", str(size)), "no input's binary_data_size"),
        (lambda body, size: (body[:-1] + b"", str(size)), "binary_data_size"),
    ],
)
def test_broken_binary_bodies_are_400_saying_what_is_wrong(client, mangle, fragment):
    body, headers = binary_request([("x", "FP64", np.array(ROWS))])
    body, headers["Inference-Header-Content-Length"] = mangle(
        body, int(headers["Inference-Header-Content-Length"])
    )
    answer = client.post("/v2/models/iris/infer", data=body, headers=headers)
    assert answer.status_code == 400, answer.get_data()
    assert answer.json["code"] == "invalid_input" and fragment in answer.json["error"]


def test_a_partial_float_is_400(client):
    body, headers = binary_request([("x", "FP64", np.array(ROWS))])
    head = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:head])
    header["inputs"][0]["parameters"]["binary_data_size"] = 63  # 7 doubles and 7 bytes
    new_head = json.dumps(header).encode()
    headers["Inference-Header-Content-Length"] = str(len(new_head))
    answer = client.post("/v2/models/iris/infer", data=new_head + body[head:-1], headers=headers)
    assert answer.status_code == 400 and "whole number of FP64" in answer.json["error"]


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (struct.pack("<I", 5) + b"ab", "4-byte lengths"),  # says 5 bytes, has 2
        (struct.pack("<I", 1) + b"a" + b"\x01\x00", "4-byte lengths"),  # half a length
        (struct.pack("<I", 2) + b"\xff\xfe", "not UTF-8"),
    ],
)
def test_broken_bytes_tensors_are_400(client, raw, fragment):
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "line",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)), **AUTH}
    answer = client.post("/v2/models/iris/infer", data=header + raw, headers=headers)
    assert answer.status_code == 400 and fragment in answer.json["error"], answer.json


@pytest.mark.parametrize(
    "body",
    [
        {"columns": [], "data": [[]]},
        {"columns": ["a", "a"], "data": [[1, 2]]},
        {"instances": []},
        {"instances": [[True, 1, 2.5, None]]},
        {"instances": [{"a": 1}]},
        {"columns": [0, 1, 2, 3], "data": [[False, 1.0, 2.0, 3.0]]},
    ],
)
def test_the_openapi_document_and_the_server_agree_on_every_body(client, body):
    """What the document calls valid the server takes, and what it calls invalid the server
    refuses (the document refused booleans it accepted, and allowed empty columns it refused)."""
    import jsonschema

    spec = client.get("/openapi.json", headers=AUTH).json
    schema = {**spec["components"]["schemas"]["PredictRequest"], "components": spec["components"]}
    valid = jsonschema.Draft202012Validator(schema).is_valid(body)
    answer = client.post("/v1/predict", json=body, headers=AUTH)
    # a valid body is predicted, or refused by the model itself (422: this one has no NaN)
    assert answer.status_code in ((200, 422) if valid else (400,)), (body, valid, answer.json)
