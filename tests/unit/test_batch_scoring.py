"""Scoring one chunk: bisection isolates the rows a model refuses; other failures stop.

``RowJudge`` is a fake model (a behavioural fake, as in jupyterhub's tests): it predicts the
sum of each row and refuses a whole request, as the serving runtime does, when any row in it
holds a negative value; it records every request so the cost of bisection can be checked.
"""

import math

import pyarrow as pa
import pytest

from mlhub.batch.features import Features
from mlhub.batch.scorer import Scorer
from mlhub.batch.scoring import bisect, score_chunk
from mlhub.errors import InvalidInput, MlhubError, PayloadTooLarge, Unauthorized

SIGNATURE = {"kind": "dataframe", "inputs": [{"name": "a", "type": "double"}]}


class RowJudge(Scorer):
    name = "judge"
    signature = SIGNATURE

    def __init__(self, max_rows=None, error=InvalidInput):
        self.requests = []
        self.max_rows = max_rows
        self.error = error

    def predict(self, features):
        values = features.column("a").to_pylist()
        self.requests.append(len(values))
        if self.max_rows and len(values) > self.max_rows:
            raise PayloadTooLarge("the body is too large")
        bad = [i for i, v in enumerate(values) if v < 0]
        if bad:
            raise self.error(f"row {bad[0]}: a must not be negative", {"row": bad[0]})
        return [v * 10 for v in values]


def chunk(values):
    return pa.table({"id": list(range(100, 100 + len(values))), "a": values})


def features():
    return Features(SIGNATURE, keys=["id"])


def test_a_clean_chunk_is_one_request():
    judge = RowJudge()
    result = score_chunk(judge, features(), 0, chunk([1.0, 2.0, 3.0]), ["id"])
    assert judge.requests == [3]
    assert result.output.to_pylist() == [
        {"id": 100, "prediction": 10.0},
        {"id": 101, "prediction": 20.0},
        {"id": 102, "prediction": 30.0},
    ]
    assert result.rejected == 0 and result.rows == 3


def test_bad_rows_are_isolated_and_good_rows_scored():
    values = [float(i) for i in range(64)]
    values[5] = values[40] = -1.0
    judge = RowJudge()
    result = score_chunk(judge, features(), 3, chunk(values), ["id"])
    assert [r["id"] for r in result.output.to_pylist()] == [
        100 + i for i in range(64) if i not in (5, 40)
    ]
    assert all(r["prediction"] == (r["id"] - 100) * 10 for r in result.output.to_pylist())
    rejects = result.rejects.to_pylist()
    assert [r["id"] for r in rejects] == [105, 140]
    assert rejects[0] == {
        "id": 105,
        "error": "row 0: a must not be negative",  # the message for that row alone
        "code": "invalid_input",
        "status": 400,
        "input": '{"a":-1.0}',
    }
    # Two bad rows among 64: a handful of requests per level, far fewer than one per row.
    assert len(judge.requests) <= 4 * math.ceil(math.log2(64)) + 1


def test_too_large_chunks_are_split_without_rejecting():
    judge = RowJudge(max_rows=10)
    segments, rejected = bisect(judge, chunk([1.0] * 50).select(["a"]))
    assert rejected == []
    assert sum(len(p) for _, p in segments) == 50


def test_a_failure_that_is_not_about_rows_stops():
    with pytest.raises(Unauthorized):
        bisect(RowJudge(error=Unauthorized), chunk([-1.0, 1.0]).select(["a"]))


def test_a_wrong_number_of_predictions_is_an_error():
    class Short(RowJudge):
        def predict(self, features):
            return [1]

    with pytest.raises(MlhubError, match="returned 1 predictions for 2 rows"):
        bisect(Short(), chunk([1.0, 2.0]).select(["a"]))


def test_rows_the_client_cannot_convert_never_reach_the_model():
    judge = RowJudge()
    table = pa.table({"id": [1, 2, 3], "a": ["1.5", "abc", "2"]})
    result = score_chunk(judge, features(), 0, table, ["id"])
    assert judge.requests == [2]
    assert result.output.to_pylist() == [
        {"id": 1, "prediction": 15.0},
        {"id": 3, "prediction": 20.0},
    ]
    [reject] = result.rejects.to_pylist()
    assert reject["id"] == 2 and reject["error"] == "a: 'abc' is not a number"
    assert reject["code"] == "invalid_input" and reject["input"] == '{"a":"abc"}'
