"""The parity check: the served model must answer what the notebook's model answered.

A model that loads is not yet the model the notebook had: a library of another version in the
serving environment (scikit-learn, numpy, an R package) can change its answers without any
error, which is how served models drift from the notebook in other tools. So a bundle carries
what the notebook's model predicted for the rows it keeps: the example's, and a sample of a
validation set (``mlhub.publish(..., validate=X_test)``). Every new serving process predicts
the same rows before it is ready (the Python runtime's ``self_test``, the R runtime's
``predict_example``); answers that differ beyond the tolerance keep it not ready, with the rows
that differ and the likely cause, so the publish is refused and the version before keeps
serving.

The rows and answers are JSON (``parity.json`` in the bundle): the notebook predicts on the rows
as they come back from JSON, exactly what the serving process will read. Numbers compare within
``rtol`` and ``atol`` (``|served - notebook| <= atol + rtol * |notebook|``); strings, booleans
and nulls (missing answers) must be equal; classes given as whole numbers differ by at least 1,
so any tolerance below that keeps them exact.
"""

import json
import math
from pathlib import Path

from mlhub.bundle.signature import EXAMPLE_ROWS
from mlhub.errors import InvalidBundle

PARITY_FILE = "parity.json"
PARITY_ROWS = 1000  # validation rows a bundle keeps (a sample, the same one every time)
RTOL = 1e-6
ATOL = 1e-9
SHOWN = 5  # differing rows a refusal shows


def json_values(result):
    """A model's answer as plain JSON values, as a serving runtime writes it: arrays and Series
    as lists, a DataFrame as one record per row, NaN as null."""
    if hasattr(result, "columns"):  # a DataFrame
        result = result.to_dict(orient="records")
    elif hasattr(result, "tolist"):  # numpy arrays and scalars, pandas Series
        result = result.tolist()
    if isinstance(result, dict):
        return {str(k): json_values(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [json_values(v) for v in result]
    if isinstance(result, float) and math.isnan(result):
        return None
    if hasattr(result, "item"):  # a numpy scalar inside a list of records
        return json_values(result.item())
    return result


def check_tolerance(rtol, atol):
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidBundle(
                f"the parity check's {name} must be a number >= 0, got {value!r}",
                {"field": name},
            )


def write_parity(path, rows, predictions, *, rtol=RTOL, atol=ATOL):
    """Write ``parity.json`` in the bundle at ``path``; return the manifest's ``parity`` entry."""
    check_tolerance(rtol, atol)
    if len(rows) != len(predictions):
        raise InvalidBundle(
            f"the model gave {len(predictions)} predictions for {len(rows)} rows: it must "
            "answer one prediction per row",
            {"field": "predictions"},
        )
    record = {"instances": rows, "predictions": predictions}
    Path(path, PARITY_FILE).write_text(json.dumps(record, allow_nan=False))
    return {"file": PARITY_FILE, "rows": len(rows), "rtol": rtol, "atol": atol}


def read_parity(bundle_dir, manifest):
    """``(rows, predictions, rtol, atol)`` of the bundle's parity record, or None without one."""
    entry = manifest.get("parity")
    if not entry:
        return None
    record = json.loads(Path(bundle_dir, entry["file"]).read_text())
    return record["instances"], record["predictions"], entry["rtol"], entry["atol"]


def same_answer(notebook, served, rtol=RTOL, atol=ATOL):
    """Whether ``served`` answers as ``notebook`` did: numbers within ``rtol``/``atol``,
    everything else (classes, strings, booleans) exactly, lists and objects item by item."""
    if isinstance(notebook, bool) or isinstance(served, bool):
        return notebook is served
    if isinstance(notebook, (int, float)) and isinstance(served, (int, float)):
        if math.isnan(served):
            return False
        return abs(served - notebook) <= atol + rtol * abs(notebook)
    if isinstance(notebook, list) and isinstance(served, list):
        return len(notebook) == len(served) and all(
            same_answer(a, b, rtol, atol) for a, b in zip(notebook, served, strict=True)
        )
    if isinstance(notebook, dict) and isinstance(served, dict):
        return notebook.keys() == served.keys() and all(
            same_answer(notebook[k], served[k], rtol, atol) for k in notebook
        )
    return notebook == served


def differences(notebook, served, rtol=RTOL, atol=ATOL):
    """The rows whose answers differ: ``[(row index, notebook's answer, served answer)]``."""
    if len(notebook) != len(served):
        return [(len(served), f"{len(notebook)} predictions", f"{len(served)} predictions")]
    return [
        (i, a, b)
        for i, (a, b) in enumerate(zip(notebook, served, strict=True))
        if not same_answer(a, b, rtol, atol)
    ]


def version_drift(requirements, installed):
    """The pinned requirements (``name==version``, the notebook's) whose installed version here
    (``installed(name)``: a version or None) differs, as readable phrases."""
    drift = []
    for requirement in requirements or []:
        name, _, wanted = requirement.partition("==")
        if not wanted:
            continue
        here = installed(name)
        if here != wanted:
            drift.append(f"{name} {wanted} in the notebook, {here or 'not installed'} here")
    return drift


def refusal(rows, diffs, total, rtol, atol, drift):
    """The not-ready reason: how many rows differ, the first few, and the likely cause."""
    shown = "; ".join(
        f"row {i}: notebook {json.dumps(a)}, served {json.dumps(b)}"
        + (f" (input {json.dumps(rows[i])})" if i < len(rows) else "")
        for i, a, b in diffs[:SHOWN]
    )
    cause = (
        "likely cause: " + ", ".join(drift)
        if drift
        else "the library versions match, so look for randomness or state in predict()"
    )
    return (
        f"its answers differ from the notebook's on {len(diffs)} of {total} rows beyond the "
        f"tolerance (rtol {rtol:g}, atol {atol:g}): {shown}; {cause}. Serve it where the "
        "notebook's versions are installed, or publish again with a tolerance that accepts "
        "the difference"
    )


def notebook_answers(predict, example, validate=None, example_rows=EXAMPLE_ROWS):
    """``(rows, predictions)``: the rows the parity check scores (the example's first
    ``example_rows``, then up to ``PARITY_ROWS`` of ``validate``, a fixed sample) as JSON, and
    what ``predict`` (the notebook's model) answers for them as a serving process will read
    them."""
    parts = [("the example", *_as_json_rows(example, example_rows))]
    if validate is not None:
        _same_inputs(example, validate)
        parts.append(("validate", *_as_json_rows(validate, PARITY_ROWS, sample=True)))
    rows, predictions = [], []
    for what, json_rows, model_input in parts:
        try:
            answer = json_values(predict(model_input))
        except Exception as exc:
            raise InvalidBundle(
                f"the model failed to predict on {what} ({type(exc).__name__}: {exc}); pass "
                f"{what} with the columns and types the model was trained on",
                {"field": "example" if what == "the example" else "validate"},
            ) from exc
        if not isinstance(answer, list) or len(answer) != len(json_rows):
            raise InvalidBundle(
                f"the model answered {type(answer).__name__} for {len(json_rows)} rows: it must "
                "give one prediction per row",
                {"field": "predictions"},
            )
        rows += json_rows
        predictions += answer
    return rows, predictions


def _same_inputs(example, validate):
    """``validate`` must have the example's columns (data frames) or width (arrays)."""
    if hasattr(example, "columns"):
        theirs = list(getattr(validate, "columns", []))
        if [str(c) for c in theirs] != [str(c) for c in example.columns]:
            raise InvalidBundle(
                f"validate has the columns {[str(c) for c in theirs]}, the example "
                f"{[str(c) for c in example.columns]}: give rows of the same inputs",
                {"field": "validate"},
            )
        return
    shape = getattr(validate, "shape", None)
    if hasattr(example, "shape") and (shape is None or shape[1:] != example.shape[1:]):
        raise InvalidBundle(
            f"validate's rows have the shape {getattr(validate, 'shape', None)}, the example's "
            f"{example.shape}: give rows of the same inputs",
            {"field": "validate"},
        )


def _as_json_rows(data, limit, sample=False):
    """``(rows as JSON values, the same rows rebuilt from that JSON for the model)``."""
    import numpy as np

    if hasattr(data, "columns"):  # a DataFrame: records, rebuilt with its dtypes
        import pandas as pd

        part = data.sample(n=limit, random_state=0) if sample and len(data) > limit else data
        part = part.head(limit)
        rows = json.loads(part.to_json(orient="records", date_format="iso", double_precision=15))
        frame = pd.DataFrame.from_records(rows, columns=list(part.columns))
        return rows, frame.astype(part.dtypes.to_dict())
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], dict):  # records
        rows = json.loads(json.dumps(list(data[:limit]), default=str))
        return rows, rows
    arr = np.asarray(data)
    if sample and len(arr) > limit:
        arr = arr[np.random.default_rng(0).choice(len(arr), limit, replace=False)]
    rows = arr[:limit].tolist()
    return rows, np.asarray(rows, dtype=arr.dtype)
