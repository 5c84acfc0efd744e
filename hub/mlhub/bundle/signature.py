"""A model's input signature: the column types a bundle declares and how they are inferred
from an example.

``signature_types.json`` beside this module is the one table of those types: what each accepts
in words (error messages), and its numpy dtype, Arrow type, Open Inference Protocol datatype
and JSON Schema. Every Python reader of signatures (validation and OIP v2 in the serving
runtime, batch scoring, the OpenAPI document) builds its mapping from ``TYPE_TABLE``; the R
runtime's copy (``serving_r/runtime/types.R``) is generated from it by
``scripts/signature-types``, and a unit test keeps the two equal."""

import importlib.resources
import json

from mlhub.errors import InvalidBundle

TYPE_TABLE = json.loads(
    importlib.resources.files("mlhub.bundle").joinpath("signature_types.json").read_text()
)
TYPES = tuple(TYPE_TABLE)
SIGNATURE_KINDS = ("dataframe", "array")
EXAMPLE_ROWS = 5  # rows of the example a bundle keeps


def _column_type(dtype):
    kind = getattr(dtype, "kind", None)
    name = str(dtype)
    if name == "category":
        return "category"
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "long" if dtype.itemsize >= 8 else "integer"
    if kind == "f":
        return "double" if dtype.itemsize >= 8 else "float"
    return "string"


def _python_type(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    return "string"


def infer_signature(example):
    """Describe the model input from an example: a DataFrame, an array, rows or records.

    Returns ``(signature, example_json)``: the signature dict stored in the manifest and the
    first rows of the example in JSON form (records for data frames, rows for arrays).
    """
    import numpy as np

    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None

    if pd is not None and isinstance(example, pd.Series):
        example = example.to_frame().T
    if pd is not None and isinstance(example, pd.DataFrame):
        inputs = []
        for col in example.columns:
            entry = {"name": str(col), "type": _column_type(example[col].dtype)}
            if entry["type"] == "category":
                entry["levels"] = [str(v) for v in example[col].cat.categories]
            inputs.append(entry)
        head = example.head(EXAMPLE_ROWS)
        rows = json.loads(head.to_json(orient="records", date_format="iso"))
        return {"kind": "dataframe", "inputs": inputs}, rows
    if isinstance(example, (list, tuple)) and example and isinstance(example[0], dict):
        names = list(example[0])
        for i, rec in enumerate(example):
            if not isinstance(rec, dict) or list(rec) != names:
                got = list(rec) if isinstance(rec, dict) else rec
                raise InvalidBundle(
                    f"example record {i} has columns {got!r}, but record 0 has {names}: "
                    "every record needs the same columns",
                    {"field": "example", "row": i},
                )
        inputs = [{"name": str(n), "type": _python_type(example[0][n])} for n in names]
        return {"kind": "dataframe", "inputs": inputs}, [dict(r) for r in example[:EXAMPLE_ROWS]]
    try:
        arr = np.asarray(example)
    except Exception as exc:  # ragged lists and the like
        raise InvalidBundle(
            f"the example could not be read as a table ({exc}); pass a DataFrame, a 2-D array, "
            "a list of rows or a list of records",
            {"field": "example"},
        ) from exc
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InvalidBundle(
            f"the example has shape {arr.shape}; a model input must be 2-D (rows x features)",
            {"field": "example", "shape": list(arr.shape)},
        )
    col_type = _column_type(arr.dtype)
    inputs = [{"name": f"x{i}", "type": col_type} for i in range(arr.shape[1])]
    return {"kind": "array", "inputs": inputs}, arr[:EXAMPLE_ROWS].tolist()
