"""Apache Arrow IPC stream and Parquet bodies: big batches without JSON's per-value cost.

A JSON batch of a million numbers is parsed into a million Python objects before numpy sees
it; an Arrow or Parquet body already holds typed columns, so each input is checked and cast
as one array (``Schema.from_arrays``). Answers are JSON unless the client sends
``Accept: application/vnd.apache.arrow.stream``, then an Arrow stream with a ``predictions``
column (and one ``proba_<class>`` column per class with ``?proba=true``).

pyarrow is optional at run time (models served with JSON alone should not carry it): without
it these bodies get 415 and an Arrow answer 406, each saying to install pyarrow. It is
imported on the first Arrow request, never at start-up.
"""

import numpy as np

from mlhub.errors import InvalidInput, MlhubError, UnsupportedMediaType

from .batching import PREDICT, PREDICT_PROBA

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/x-parquet"
MEDIA = (ARROW_STREAM, PARQUET)
_NAMES = {ARROW_STREAM: "Arrow IPC stream", PARQUET: "Parquet file"}
_INSTALL = "install pyarrow in the model's serving environment (pip install pyarrow)"


class NotAcceptable(MlhubError):
    """The client asked for an answer format this server cannot write."""

    status = 406
    error = "not_acceptable"


def _pyarrow():
    try:
        import pyarrow
    except ImportError:
        return None
    return pyarrow


def require_for_body(media):
    """Fail with 415 before the body is read when ``media`` cannot be decoded here."""
    if _pyarrow() is None:
        raise UnsupportedMediaType(
            f"this model server cannot read {media} bodies because pyarrow is not installed: "
            f"{_INSTALL}, or send JSON with 'Content-Type: application/json'",
            {"content_type": media, "missing": "pyarrow"},
        )


def wants_arrow(accept):
    """Whether an ``Accept`` header asks for an Arrow answer (406 when pyarrow is missing)."""
    if not accept or ARROW_STREAM not in accept:
        return False
    if _pyarrow() is None:
        raise NotAcceptable(
            f"this model server cannot answer in {ARROW_STREAM} because pyarrow is not "
            f"installed: {_INSTALL}, or accept application/json",
            {"accept": accept, "missing": "pyarrow"},
        )
    return True


def read_table(data, media):
    """The body as a ``pyarrow.Table`` (an ``InvalidInput`` if it is not what it claims)."""
    pa = _pyarrow()
    try:
        if media == ARROW_STREAM:
            import pyarrow.ipc

            return pyarrow.ipc.open_stream(data).read_all()
        import pyarrow.parquet

        return pyarrow.parquet.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInput(
            f"the body is not a valid {_NAMES[media]} ({exc}): send the {_NAMES[media]} of a "
            "table with one column per input",
            {"field": "body", "content_type": media},
        ) from None


def table_input(schema, table):
    """A table -> (model input, rows): one numpy array per column, checked by the schema."""
    rows = table.num_rows
    if not rows:
        raise InvalidInput("the table has no rows: send at least one", {"field": "body"})
    if schema.kind is None:  # no signature: the model gets the table as a DataFrame
        return table.to_pandas(), rows
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.type.num_fields:  # list or struct columns cannot be model inputs
            raise InvalidInput(
                f"column {name!r} is of type {column.type}: each input must be a column of "
                "plain values",
                {"column": name, "type": str(column.type)},
            )
        columns[name] = column.to_numpy()
    return schema.from_arrays(columns), rows


def _column(pa, values):
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return pa.array(values)


def write_answer(results, classes):
    """Model outputs -> the bytes of an Arrow IPC stream holding one table."""
    pa = _pyarrow()
    import pyarrow.ipc

    predictions = results[PREDICT]
    if hasattr(predictions, "columns"):  # a DataFrame output keeps its columns
        table = pa.Table.from_pandas(predictions, preserve_index=False)
    else:
        table = pa.table({"predictions": _column(pa, predictions)})
    proba = results.get(PREDICT_PROBA)
    if proba is not None:
        proba = np.asarray(proba)
        labels = classes if classes is not None else range(proba.shape[1])
        for j, label in enumerate(labels):
            table = table.append_column(f"proba_{label}", pa.array(proba[:, j]))
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
