"""``mlhub.batch.score`` end to end with a fake model: sources, sinks, resume, reports.

``SumModel`` is a fake scorer (no HTTP): it predicts each row's sum, refuses rows holding a
negative number like the serving runtime refuses bad input, and can be told to go down after
some chunks, as an unreachable model does. The stores are real but in-process: local
Parquet/JSON Lines files, fsspec's ``memory://`` filesystem and SQLite.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from mlhub.batch import BatchSettings, Scorer, score
from mlhub.batch.errors import InvalidBatch, ModelUnreachable
from mlhub.errors import InvalidInput

ROWS = 1_000


class SumModel(Scorer):
    name = "sum"
    version = "v1"
    signature = {"kind": "array", "inputs": [{"name": f"x{i}", "type": "double"} for i in range(3)]}

    def __init__(self, fail_after=None):
        self.calls = 0
        self.rows = 0
        self.fail_after = fail_after

    def predict(self, features):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise ModelUnreachable("the fake model is down")
        X = np.column_stack([c.to_numpy() for c in features.columns])
        if (X < 0).any():
            raise InvalidInput(f"row {int(np.argmax((X < 0).any(axis=1)))} is negative")
        self.rows += len(X)
        return X.sum(axis=1)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Runs without ``state`` keep it in ``.mlhub-batch/`` of the working directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    X = rng.random((ROWS, 3))
    X[[10, 500], 1] = -1.0
    return pa.table({"id": np.arange(ROWS) + 1, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})


def expected(table):
    rows = table.to_pylist()
    return {r["id"]: r["a"] + r["b"] + r["c"] for r in rows if r["b"] >= 0}


def test_parquet_to_parquet_with_rejects_and_report(tmp_path, table):
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=333)
    report = score(
        SumModel(),
        str(tmp_path / "in.parquet"),
        str(tmp_path / "out"),
        key="id",
        state=tmp_path / "state",
        chunk_size=128,
        concurrency=3,
        progress=False,
    )
    out = pads.dataset(tmp_path / "out", format="parquet").to_table().to_pylist()
    assert {r["id"]: r["prediction"] for r in out} == pytest.approx(expected(table))
    assert len(out) == ROWS - 2
    rejects = [
        json.loads(line)
        for part in sorted((tmp_path / "out" / "_rejects").glob("*.jsonl"))
        for line in part.read_text().splitlines()
    ]
    assert [r["id"] for r in rejects] == [11, 501]
    assert rejects[0]["error"] == "row 0 is negative"
    assert (report.rows, report.scored, report.rejected, report.chunks) == (ROWS, ROWS - 2, 2, 8)
    assert "2 rows rejected" in report.summary() and "id=11: row 0 is negative" in report.summary()


def test_an_interrupted_run_resumes_without_rescoring_committed_chunks(tmp_path, table):
    pq.write_table(table.filter(pa.compute.greater_equal(table["b"], 0)), tmp_path / "in.pq")
    args = (str(tmp_path / "in.pq"), str(tmp_path / "out"))
    options = {"key": "id", "state": tmp_path / "state", "chunk_size": 100, "concurrency": 1}
    down = SumModel(fail_after=4)
    with pytest.raises(ModelUnreachable):
        score(down, *args, progress=False, **options)
    committed = len(list((tmp_path / "out").glob("part-*")))
    assert 1 <= committed <= 4

    again = SumModel()
    report = score(again, *args, progress=False, **options)
    assert report.resumed_chunks == committed
    assert again.rows == ROWS - 2 - committed * 100  # committed chunks were not sent again
    out = pads.dataset(tmp_path / "out", format="parquet").to_table()
    assert sorted(out["id"].to_pylist()) == sorted(expected(table))

    # The job is finished: the same call is a fresh run that writes the same result.
    report = score(SumModel(), *args, progress=False, **options)
    assert report.resumed_chunks == 0 and report.scored == ROWS - 2
    assert pads.dataset(tmp_path / "out", format="parquet").to_table().num_rows == ROWS - 2


def test_sqlite_query_to_table_and_rerun_replaces_rows_by_key(tmp_path, table):
    db = f"sqlite:///{tmp_path / 'fab.db'}"
    engine = sa.create_engine(db)
    table.to_pandas().to_sql("wafers", engine, index=False)
    options = {"query": "SELECT * FROM wafers WHERE id <= 600", "key": "id", "progress": False}
    for restart in (False, True):
        score(SumModel(), db, f"{db}?table=scores", restart=restart, chunk_size=64, **options)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, prediction FROM scores")).all()
        rejected = conn.execute(sa.text("SELECT id, error FROM scores_rejects")).all()
    engine.dispose()
    want = {k: v for k, v in expected(table).items() if k <= 600}
    assert dict(rows) == pytest.approx(want) and len(rows) == len(want)
    assert [r[0] for r in rejected] == [11, 501]


def test_jsonl_on_an_fsspec_filesystem(table, tmp_path):
    lines = "".join(json.dumps(r) + "\n" for r in table.slice(0, 300).to_pylist())
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/lake/in/wafers.jsonl", lines.encode())
    report = score(
        SumModel(),
        "memory://lake/in",
        "memory://lake/out.jsonl",
        key="id",
        progress=False,
        state=tmp_path / "state",
        chunk_size=100,
    )
    parts = sorted(p for p in fs.ls("/lake/out.jsonl", detail=False) if "part-" in p)
    assert len(parts) == 3 and report.scored == 299
    first = json.loads(fs.cat(parts[0]).splitlines()[0])
    assert set(first) == {"id", "prediction"}


def test_without_a_key_files_are_keyed_by_row_position(tmp_path, table):
    pq.write_table(table.drop_columns(["id"]), tmp_path / "in.parquet")
    report = score(SumModel(), "in.parquet", "out", progress=False)
    assert report.state.startswith(".mlhub-batch/")  # the default: beside where it ran
    out = pads.dataset(tmp_path / "out", format="parquet").to_table()
    assert out.column_names == ["_row", "prediction"]
    assert sorted(out["_row"].to_pylist()) == [i for i in range(ROWS) if i not in (10, 500)]


def test_bad_requests_are_explained(tmp_path, table):
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(InvalidBatch, match="unknown batch setting"):
        score(SumModel(), str(tmp_path / "in.parquet"), str(tmp_path / "o"), chunksize=5)
    assert not (tmp_path / "o").exists()
    with pytest.raises(InvalidBatch, match="needs --key"):
        score(SumModel(), "sqlite://", "sqlite://?table=t", query="SELECT 1", progress=False)
    with pytest.raises(InvalidBatch, match=r"add \?table=NAME"):
        score(SumModel(), str(tmp_path / "in.parquet"), "sqlite://", progress=False)
    with pytest.raises(InvalidBatch, match=r"key column\(s\) \['wafer'\] are not among"):
        score(SumModel(), str(tmp_path / "in.parquet"), str(tmp_path / "o"), key="wafer")
    with pytest.raises(InvalidBatch, match="no file or folder"):
        score(SumModel(), str(tmp_path / "nope.parquet"), str(tmp_path / "o"), progress=False)
    with pytest.raises(InvalidBatch, match="at least 1"):
        BatchSettings(chunk_size=0)
