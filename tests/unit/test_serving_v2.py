"""Open Inference Protocol v2 tensors -> the same schema conversion as /v1; outputs -> tensors."""

import numpy as np
import pytest

from mlhub.errors import InvalidInput
from mlhub.serving.v2 import datatype_of, output_tensor, parse_infer
from mlhub.serving.validation import Schema

SCHEMA = Schema({"kind": "array", "inputs": [{"name": n, "type": "double"} for n in "abc"]})


def tensor(name, shape, data, datatype="FP64"):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_one_2d_tensor_flat_or_nested():
    for data in ([1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]]):
        infer = parse_infer(SCHEMA, {"inputs": [tensor("in", [2, 3], data)]})
        assert infer.model_input.tolist() == [[1, 2, 3], [4, 5, 6]] and infer.rows == 2
        assert infer.outputs == ["predict"] and infer.id is None and infer.binary == set()


def test_one_tensor_per_input_in_any_order():
    body = {
        "id": "7",
        "inputs": [tensor("c", [1], [3]), tensor("a", [1, 1], [1]), tensor("b", [1], [2])],
        "outputs": [{"name": "predict_proba"}],
    }
    infer = parse_infer(SCHEMA, body)
    assert infer.model_input.tolist() == [[1, 2, 3]] and infer.outputs == ["predict_proba"]
    assert infer.id == "7"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, '"inputs"'),
        ({"inputs": [tensor("in", [2, 3], [1, 2, 3])]}, "needs 6 values, data has 3"),
        ({"inputs": [tensor("in", [1, 3], [1, 2, 3], "FP128")]}, "datatype 'FP128'"),
        ({"inputs": [tensor("in", [1, 3], ["x", 2, 3])]}, "does not hold FP64"),
        ({"inputs": [tensor("in", [1, 2], [1, 2])]}, "has 2 values, but the model expects 3"),
        ({"inputs": [tensor("a", [1], [1]), tensor("z", [1], [1])]}, "unknown 'z'"),
        ({"inputs": [tensor("in", "2x3", [1])]}, "'shape' must be a list"),
        (
            {"inputs": [tensor("in", [1, 3], [1, 2, 3])], "outputs": [{"name": "x"}]},
            "predict_proba",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(body, fragment):
    with pytest.raises(InvalidInput) as err:
        parse_infer(SCHEMA, body)
    assert fragment in err.value.message


def test_output_tensors_name_their_datatype():
    out = output_tensor("predict", np.array([[0.1, 0.9], [0.8, 0.2]]))
    assert (
        out["shape"] == [2, 2]
        and out["datatype"] == "FP64"
        and out["data"].tolist()
        == [
            0.1,
            0.9,
            0.8,
            0.2,
        ]
    )
    assert datatype_of(np.array(["a"])) == "BYTES"
    assert datatype_of(np.array([1], dtype=np.int32)) == "INT32"
    assert datatype_of(np.array([True])) == "BOOL"
    assert output_tensor("predict", ["x", "y"])["datatype"] == "BYTES"
