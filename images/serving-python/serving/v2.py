"""Open Inference Protocol (v2) tensors in and out, mapped onto the same schema as ``/v1``.

A request either carries one 2-D tensor ``[rows, features]`` (any name) or one 1-D tensor per
input, named after the signature's inputs (``[rows]`` or ``[rows, 1]``). Both end in the same
``Schema`` conversion as ``/v1/predict``, so validation and its messages are shared.
"""

import math

import numpy as np
from mlhub.errors import InvalidInput

DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
_SIGNATURE_DATATYPE = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "category": "BYTES",
}
OUTPUTS = ("predict", "predict_proba")


def datatype_of(arr):
    """The v2 datatype naming a numpy array's dtype (strings and objects are ``BYTES``)."""
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'U' if kind == 'u' else ''}INT{size * 8}"
    if kind == "f":
        return f"FP{size * 8}"
    return "BYTES"


def _tensor(i, spec):
    """Validate one request tensor and return ``(name, array shaped as declared)``."""
    if not isinstance(spec, dict):
        raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name, shape, datatype, data = (spec.get(k) for k in ("name", "shape", "datatype", "data"))
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{i}] needs a 'name'", {"input": i, "field": "name"})
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise InvalidInput(
            f"input {name!r}: 'shape' must be a list of sizes, e.g. [2, 4] for 2 rows of 4",
            {"input": name, "field": "shape"},
        )
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}",
            {"input": name, "field": "datatype"},
        )
    if not isinstance(data, list):
        raise InvalidInput(
            f"input {name!r}: 'data' must be a list (flat or nested) of the tensor's values",
            {"input": name, "field": "data"},
        )
    try:
        arr = np.asarray(data, dtype=DATATYPES[datatype])
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"input {name!r}: data does not hold {datatype} values ({exc})",
            {"input": name, "datatype": datatype},
        ) from exc
    if arr.size != math.prod(shape):
        raise InvalidInput(
            f"input {name!r}: shape {shape} needs {math.prod(shape)} values, data has {arr.size}",
            {"input": name, "shape": shape, "got": int(arr.size)},
        )
    return name, arr.reshape(shape)


def parse_infer(schema, body):
    """An infer request -> (model input, row count, requested output names, request id)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InvalidInput(
            'an infer request needs "inputs": [{"name", "shape", "datatype", "data"}, ...]',
            {"field": "inputs"},
        )
    tensors = [_tensor(i, spec) for i, spec in enumerate(body["inputs"])]
    if len(tensors) == 1 and tensors[0][1].ndim == 2:
        model_input, rows = schema.from_rows(tensors[0][1].tolist())
    else:
        for name, arr in tensors:
            if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != 1):
                raise InvalidInput(
                    f"input {name!r} has shape {list(arr.shape)}: send one tensor [rows, "
                    "features], or one tensor [rows] per input",
                    {"input": name, "shape": list(arr.shape)},
                )
        model_input, rows = schema.from_columns(
            {name: arr.reshape(-1).tolist() for name, arr in tensors}
        )
    wanted = ["predict"]
    if body.get("outputs") is not None:
        outputs = body["outputs"]
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and o.get("name") in OUTPUTS for o in outputs
        ):
            raise InvalidInput(
                f'"outputs" must list objects named one of {", ".join(OUTPUTS)}',
                {"field": "outputs", "allowed": list(OUTPUTS)},
            )
        wanted = [o["name"] for o in outputs] or wanted
    return model_input, rows, wanted, body.get("id")


def output_tensor(name, values):
    arr = values if isinstance(values, np.ndarray) else np.asarray(values)
    return {
        "name": name,
        "shape": list(arr.shape),
        "datatype": datatype_of(arr),
        "data": arr.reshape(-1),
    }


def model_metadata(served):
    """``GET /v2/models/{name}``: what the model takes and gives, in v2 terms."""
    schema = served.schema
    if schema.kind == "array":
        datatype = _SIGNATURE_DATATYPE[schema.types[0]] if len(set(schema.types)) == 1 else "BYTES"
        inputs = [{"name": "input-0", "datatype": datatype, "shape": [-1, schema.width]}]
    else:
        inputs = [
            {"name": n, "datatype": _SIGNATURE_DATATYPE[t], "shape": [-1]}
            for n, t in zip(schema.names, schema.types, strict=True)
        ]
    # A classifier predicts one of its classes; anything else is taken to predict numbers.
    labels = np.asarray(served.classes) if served.classes is not None else np.zeros(1)
    outputs = [{"name": "predict", "datatype": datatype_of(labels), "shape": [-1]}]
    if served.has_proba:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, -1]})
    return {
        "name": served.name,
        "versions": [served.version] if served.version else [],
        "platform": f"mlhub-python-{served.manifest.get('flavor', 'unknown')}",
        "inputs": inputs,
        "outputs": outputs,
    }
