"""Open Inference Protocol (v2) tensors in and out, mapped onto the same schema as ``/v1``.

A request either carries one 2-D tensor ``[rows, features]`` (any name) or one 1-D tensor per
input, named after the signature's inputs (``[rows]`` or ``[rows, 1]``). Both end in the same
``Schema`` conversion as ``/v1/predict``, so validation and its messages are shared.

Tensors come as JSON ``data`` or, with Triton's binary tensor data extension (tritonclient's
default), as raw little-endian bytes after a JSON header whose length the
``Inference-Header-Content-Length`` header gives; outputs go back the same way when the request
asks (``binary_data_output``, or ``binary_data`` on one output).
"""

import math
import struct
from dataclasses import dataclass

import numpy as np

from mlhub import __version__
from mlhub.bundle.signature import TYPE_TABLE
from mlhub.errors import InvalidInput

from .jsonio import JSONDecodeError, loads

HEADER_LENGTH_NAME = "Inference-Header-Content-Length"
HEADER_LENGTH = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"  # its WSGI environ key
EXTENSIONS = ("binary_tensor_data",)

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
_SIGNATURE_DATATYPE = {typ: spec["v2"] for typ, spec in TYPE_TABLE.items()}
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


def server_metadata():
    """``GET /v2``: the server's name, version and the protocol extensions it implements."""
    return {"name": "mlhub", "version": __version__, "extensions": list(EXTENSIONS)}


def split_binary(data, header_length):
    """A binary-extension body -> (its JSON header parsed, the tensors' bytes that follow it)."""
    if not header_length.isdigit() or not 0 < int(header_length) <= len(data):
        raise InvalidInput(
            f"{HEADER_LENGTH_NAME} is {header_length!r}: it must be the byte length of the "
            f"JSON header at the start of the body ({len(data)} bytes)",
            {"field": HEADER_LENGTH_NAME},
        )
    size = int(header_length)
    try:
        return loads(data[:size]), data[size:]
    except JSONDecodeError as exc:
        raise InvalidInput(
            f"the body's first {size} bytes ({HEADER_LENGTH_NAME}) are not JSON ({exc}): "
            "that header must give the length of the JSON part only, and no header may be "
            "left over from a request of another size",
            {"field": HEADER_LENGTH_NAME},
        ) from None


def _binary_values(name, datatype, chunk):
    """One input's raw bytes (Triton's layout) as a flat numpy array."""
    if datatype == "BYTES":
        values, at = [], 0
        while at + 4 <= len(chunk):
            (size,) = struct.unpack_from("<I", chunk, at)
            if at + 4 + size > len(chunk):
                break
            try:
                values.append(chunk[at + 4 : at + 4 + size].decode())
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"input {name!r}: a BYTES element is not UTF-8 text",
                    {"input": name, "datatype": datatype},
                ) from None
            at += 4 + size
        if at != len(chunk):
            raise InvalidInput(
                f"input {name!r}: its binary data is not a list of 4-byte lengths, each "
                "followed by that many bytes",
                {"input": name, "datatype": datatype},
            )
        return np.asarray(values, dtype=object)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(chunk) % dtype.itemsize:
        raise InvalidInput(
            f"input {name!r}: {len(chunk)} bytes is not a whole number of {datatype} values "
            f"({dtype.itemsize} bytes each)",
            {"input": name, "datatype": datatype},
        )
    return np.frombuffer(chunk, dtype=dtype)


def _tensor(i, spec, binary, offset):
    """Validate one request tensor -> (name, array shaped as declared, bytes of ``binary`` used)."""
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
    parameters = spec.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    used = 0
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size!r} does not fit the "
                f"{len(binary) - offset} bytes left after the JSON header",
                {"input": name, "field": "parameters.binary_data_size"},
            )
        arr, used = _binary_values(name, datatype, binary[offset : offset + size]), size
    elif not isinstance(data, list):
        raise InvalidInput(
            f"input {name!r}: 'data' must be a list (flat or nested) of the tensor's values",
            {"input": name, "field": "data"},
        )
    else:
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
    return name, arr.reshape(shape), used


def _flag(parameters, name):
    return isinstance(parameters, dict) and parameters.get(name) is True


@dataclass
class Infer:
    """A parsed infer request: what to predict, and how to answer."""

    model_input: object
    rows: int
    outputs: list  # names, in the order the answer lists them
    binary: set  # the outputs to send as raw bytes
    id: object = None


def parse_infer(schema, body, binary=b""):
    """An infer request (its JSON and the binary tensors after it) -> ``Infer``."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InvalidInput(
            'an infer request needs "inputs": [{"name", "shape", "datatype", "data"}, ...]',
            {"field": "inputs"},
        )
    tensors, offset = [], 0
    for i, spec in enumerate(body["inputs"]):
        name, arr, used = _tensor(i, spec, binary, offset)
        tensors.append((name, arr))
        offset += used
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes after the JSON header that no input's "
            "binary_data_size accounts for",
            {"field": "parameters.binary_data_size"},
        )
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
    all_binary = _flag(body.get("parameters"), "binary_data_output")
    wanted, binary_out = ["predict"], {"predict"} if all_binary else set()
    if body.get("outputs") is not None:
        outputs = body["outputs"]
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and o.get("name") in OUTPUTS for o in outputs
        ):
            raise InvalidInput(
                f'"outputs" must list objects named one of {", ".join(OUTPUTS)}',
                {"field": "outputs", "allowed": list(OUTPUTS)},
            )
        if outputs:
            wanted = [o["name"] for o in outputs]
            binary_out = {
                o["name"]
                for o in outputs
                if _flag(o.get("parameters"), "binary_data")
                or (all_binary and not _has(o.get("parameters"), "binary_data"))
            }
    return Infer(model_input, rows, wanted, binary_out, body.get("id"))


def _has(parameters, name):
    return isinstance(parameters, dict) and name in parameters


def _raw(arr):
    """An output tensor's bytes in Triton's layout (little-endian; BYTES length-prefixed)."""
    if arr.dtype.kind in "biuf":
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in arr.reshape(-1):
        item = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(item)) + item)
    return b"".join(parts)


def answer(fields, infer, results, encode):
    """The infer answer: ``(JSON bytes, binary tail)``; the tail is empty when no output is
    sent as raw bytes."""
    outputs, tail = [], []
    for name in infer.outputs:
        tensor = output_tensor(name, results[name])
        if name in infer.binary:
            raw = _raw(np.asarray(tensor.pop("data")))
            tensor["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        outputs.append(tensor)
    return encode({**fields, "outputs": outputs}), b"".join(tail)


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
