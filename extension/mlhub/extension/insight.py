"""``mlhub.inference_log``, ``mlhub.drift`` and ``mlhub.compare``: what a published model was
asked and answered, and how a shadow version answered the same, as DataFrames in the notebook.

The rows come from the publisher (``GET .../inference-log``, ``mlhub.publisher.inference_log``);
each becomes one DataFrame row with the log's columns (``time`` as UTC timestamps, ``version``,
``request``, ``row``, ``status``, ``latency_ms``, ``error``), one column per named input (a
positional input's values as ``input_0``, ``input_1``...; an input named like a log column gets
the prefix ``input.``), and ``prediction``.
"""

import pandas as pd

from mlhub.extension.client import connect
from mlhub.input_drift import PSI_THRESHOLD, drift_table, weak_note

LOG_COLUMNS = ("time", "version", "request", "row", "status", "latency_ms")


def _input_columns(inputs):
    """``{column: value}`` of one logged row's inputs."""
    if isinstance(inputs, dict):
        return {
            (f"input.{k}" if k in LOG_COLUMNS or k in ("prediction", "error") else k): v
            for k, v in inputs.items()
        }
    if isinstance(inputs, list):
        return {f"input_{i}": v for i, v in enumerate(inputs)}
    return {} if inputs is None else {"input": inputs}


def rows_frame(rows):
    """The publisher's rows as the DataFrame this module documents."""
    records = [
        {
            **{c: r[c] for c in LOG_COLUMNS},
            **_input_columns(r["inputs"]),
            "prediction": r["outputs"],
            "error": r["error"],
        }
        for r in rows
    ]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=[*LOG_COLUMNS, "prediction", "error"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame


def inference_log(name, since="1d", *, until=None, version=None, limit=None, publisher=None):
    """What model ``name`` (``"name"`` or ``"owner/name"``) was asked and answered since
    ``since`` (an age such as ``"15m"``, ``"2h"``, ``"7d"``, or an ISO time), as a DataFrame,
    oldest first: the requests its inference log sampled (``mlhub.publish(...,
    inference_log=True)``), one row per input row, refused requests with their ``error``."""
    publisher = publisher or connect()
    rows = publisher.inference_log(name, since=since, until=until, version=version, limit=limit)
    return rows_frame(rows)


def drift(
    name, since="1d", *, reference=None, version=None, threshold=PSI_THRESHOLD, publisher=None
):
    """Per input feature, how far the inputs model ``name`` got since ``since`` are from the
    data it was published with, as a DataFrame: ``psi`` (population stability index; at or
    above ``threshold``, 0.2 by default, the feature is ``drifted``), for numbers the
    Kolmogorov-Smirnov ``ks`` statistic and its ``p_value`` and both means.

    The reference is the sample the publish kept (the example and up to 1,000 rows of
    ``validate``) unless ``reference`` (a DataFrame of the model's inputs, such as the training
    data) is given; the table's ``attrs["note"]`` says when too few rows make it weak."""
    publisher = publisher or connect()
    if reference is None:
        answer = publisher.drift(name, since=since, version=version, threshold=threshold)
        table, note = answer["features"], answer["note"]
    else:
        records = (
            reference.to_dict(orient="records") if hasattr(reference, "columns") else reference
        )
        rows = publisher.inference_log(name, since=since, version=version)
        recent = [r["inputs"] for r in rows if r["status"] < 400 and r["inputs"] is not None]
        table = drift_table(list(records), recent, threshold)
        note = weak_note(len(records), len(recent))
    frame = pd.DataFrame.from_records(table)
    frame.attrs["note"] = note
    return frame


COMPARE_COLUMNS = (
    "time",
    "request",
    "row",
    "production",
    "shadow",
    "agree",
    "production_ms",
    "shadow_ms",
    "shadow_status",
    "shadow_error",
)


def compare(name, since=None, *, limit=None, publisher=None):
    """How model ``name``'s shadow answered the requests production answered (``mlhub models
    shadow``), as a DataFrame: one row per input row (its inputs as columns, as in
    ``inference_log``), ``production`` and ``shadow`` (each version's answer), ``agree``
    (numbers within a relative 1e-6, everything else exactly), each version's latency in ms
    per request, and the shadow's status and error. ``attrs["summary"]`` has the agreement
    rate, the shadow's errors, the requests dropped (its queue was full), both versions'
    p50/p95 latency; ``attrs["versions"]`` the two versions compared."""
    publisher = publisher or connect()
    answer = publisher.shadow(name, since=since, limit=limit)
    records = [
        {**{c: r[c] for c in COMPARE_COLUMNS}, **_input_columns(r["inputs"])}
        for r in answer["rows"]
    ]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=list(COMPARE_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame.attrs["summary"] = answer["summary"]
    frame.attrs["versions"] = {"production": None, "shadow": answer["version"]}
    if answer["rows"]:
        frame.attrs["versions"]["production"] = answer["rows"][-1]["production_version"]
    return frame
