"""Score one chunk: good rows get predictions, bad rows are isolated with the server's reason.

A model refuses a whole request when one row is bad (400 invalid input, 422 the model raised)
or when the body is too large (413). Rather than lose the chunk, it is split in halves and each
half sent again, down to single rows: a chunk with one bad row among n costs about 2 log2(n)
extra requests, every good row is still scored, and the bad one is reported with the message
the server gave for it alone. Other failures (401, 403, 404, a model that stays down) are not
about rows: they stop the run.
"""

from dataclasses import dataclass

import orjson
import pyarrow as pa

from mlhub.errors import InvalidInput, MlhubError

from .scorer import ROW_STATUSES

PREDICTION = "prediction"
"""The result column next to the keys."""


@dataclass
class ChunkResult:
    chunk_id: int
    output: pa.Table  # keys + prediction, one row per scored row
    rejects: pa.Table  # keys + error, code, status, input
    rows: int

    @property
    def scored(self):
        return self.output.num_rows

    @property
    def rejected(self):
        return self.rejects.num_rows


def bisect(scorer, features):
    """``(segments, rejected)``: ``[(start, predictions), ...]`` for the rows that scored, and
    ``[(row, error), ...]`` for each row the model refused on its own."""
    segments, rejected = [], []
    pending = [(0, features.num_rows)]
    while pending:
        start, stop = pending.pop()
        try:
            predictions = scorer.predict(features.slice(start, stop - start))
        except MlhubError as exc:
            if exc.status not in ROW_STATUSES:
                raise
            if stop - start == 1:
                rejected.append((start, exc))
            else:
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]  # the first half comes out first
            continue
        if len(predictions) != stop - start:
            raise MlhubError(
                f"the model returned {len(predictions)} predictions for {stop - start} rows",
                {"rows": stop - start, "predictions": len(predictions)},
            )
        segments.append((start, predictions))
    return segments, rejected


def _indices(segments):
    return pa.array([i for start, values in segments for i in range(start, start + len(values))])


def score_chunk(scorer, features, chunk_id, table, keys):
    """Score ``table`` (a chunk with its ``keys`` columns) into a ``ChunkResult``."""
    inputs, raw, unconvertible = features.prepare(table)
    good = table
    if unconvertible:  # rows the client could not convert never reach the model
        keep = pa.array([i not in unconvertible for i in range(table.num_rows)])
        good, inputs = table.filter(keep), inputs.filter(keep)
        good_rows = [i for i in range(table.num_rows) if i not in unconvertible]
    segments, refused = bisect(scorer, inputs) if inputs.num_rows else ([], [])

    key_table = good.select(keys)
    if len(segments) == 1 and not refused:
        output = key_table.append_column(PREDICTION, pa.array(segments[0][1]))
    else:
        segments.sort(key=lambda s: s[0])
        values = [v for _, predictions in segments for v in list(predictions)]
        output = key_table.take(_indices(segments)).append_column(PREDICTION, pa.array(values))

    problems = [(good_rows[row] if unconvertible else row, exc) for row, exc in refused]
    problems += [
        (row, InvalidInput(reason, {"found_by": "client"})) for row, reason in unconvertible.items()
    ]
    return ChunkResult(chunk_id, output, _rejects(table, raw, keys, problems), table.num_rows)


def _rejects(table, raw, keys, problems):
    """The rejects table: the row's keys, the reason, and the row's inputs as JSON text."""
    problems.sort(key=lambda p: p[0])
    rows = pa.array([row for row, _ in problems], pa.int64())
    result = table.select(keys).take(rows)
    inputs = raw.take(rows).to_pylist()
    columns = {
        "error": pa.array([exc.message for _, exc in problems], pa.string()),
        "code": pa.array([exc.error for _, exc in problems], pa.string()),
        "status": pa.array([exc.status for _, exc in problems], pa.int32()),
        "input": pa.array(
            [orjson.dumps(i, default=str, option=orjson.OPT_NON_STR_KEYS).decode() for i in inputs],
            pa.string(),
        ),
    }
    for name, column in columns.items():
        result = result.append_column(name, column)
    return result
