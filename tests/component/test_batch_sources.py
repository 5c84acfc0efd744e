"""``mlhub.batch.score`` for real: every kind of source and sink against a real model server.

One LogisticRegression on 20 features is served by uWSGI (``python -m mlhub.serving``); the
same rows are written to SQLite, PostgreSQL (Debian's, started here), Parquet, JSON Lines and
Redis (Debian's, started here), scored from each into a sink of the same kind, and the results
compared with the model's own ``predict`` on the same rows, key by key. Rows whose ``f5`` is
missing cannot be scored (a LogisticRegression takes no NaN, so the server refuses them): they
must come back as rejected rows with the server's reason while every other row is scored.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import redis
import sqlalchemy as sa
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from support.batchtest import Serving

from mlhub.batch import score
from mlhub.bundle import save_bundle

pytestmark = pytest.mark.component

ROWS = 2_300
FEATURES = [f"f{i}" for i in range(20)]
SETTINGS = {"chunk_size": 400, "concurrency": 3}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="module")
def model(work):
    X, y = make_classification(2_000, n_features=20, random_state=0)
    fitted = LogisticRegression().fit(X, y)
    save_bundle(fitted, work / "lr", name="lr", example=X[:5])
    return fitted


@pytest.fixture(scope="module")
def serving(model, work):
    server = Serving(work / "lr", work)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def data(model):
    """The rows (ids 1000.., 20 features; every 97th row without f5) and what each id should
    score: ``expected`` for good ids, ``bad`` the ids the model must refuse."""
    X, _ = make_classification(ROWS, n_features=20, random_state=7)
    ids = np.arange(1000, 1000 + ROWS)
    missing = np.arange(ROWS) % 97 == 5
    good = ~missing
    expected = dict(zip(ids[good].tolist(), model.predict(X[good]).tolist(), strict=True))
    columns = {"id": pa.array(ids)}
    for i, name in enumerate(FEATURES):
        columns[name] = pa.array(X[:, i], mask=missing if name == "f5" else None)
    return pa.table(columns), expected, set(ids[missing].tolist())


def _sql_load(url, table):
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    meta = sa.MetaData()
    columns = [sa.Column("id", sa.BigInteger, primary_key=True)]
    columns += [sa.Column(name, sa.Double) for name in FEATURES]
    wafers = sa.Table("wafers", meta, *columns)
    meta.drop_all(engine)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(wafers.insert(), table.to_pylist())
    return engine


def _sql_read(engine, name):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {name}"))]


def _check(report, scored, rejects, expected, bad, key=lambda k: k):
    """Every good id scored once with the model's own prediction; every bad id rejected."""
    ids = [key(row["id"] if "id" in row else row["_key"]) for row in scored]
    assert len(ids) == len(set(ids)), "a row was written twice"
    assert {k: row["prediction"] for k, row in zip(ids, scored, strict=True)} == expected
    rejected = {key(row["id"] if "id" in row else row["_key"]): row for row in rejects}
    assert set(rejected) == bad
    for row in rejected.values():
        # the server's reason: the row's missing input, named (the model takes no NaN)
        assert "'x5': a missing value" in row["error"], row
        assert row["code"] == "invalid_input"
    assert (report.rows, report.scored, report.rejected) == (ROWS, len(expected), len(bad))
    assert report.chunks == -(-ROWS // SETTINGS["chunk_size"])


@pytest.mark.parametrize("how", ["table", "query"])
def test_sqlite(serving, data, work, how):
    table, expected, bad = data
    db = work / f"fab-{how}.db"
    engine = _sql_load(f"sqlite:///{db}", table)
    source = {"table": "wafers"} if how == "table" else {"query": "SELECT * FROM wafers"}
    report = score(
        serving.url,
        f"sqlite:///{db}",
        f"sqlite:///{db}?table=scores",  # the same file: the source's read must not lock it
        key=None if how == "table" else "id",
        state=work / f"sqlite-{how}.state",
        progress=False,
        **source,
        **SETTINGS,
    )
    _check(report, _sql_read(engine, "scores"), _sql_read(engine, "scores_rejects"), expected, bad)
    engine.dispose()


@pytest.mark.parametrize("how", ["table", "query"])
def test_postgres(serving, data, postgres, work, how):
    table, expected, bad = data
    engine = _sql_load(postgres.url, table)
    source = {"table": "wafers"} if how == "table" else {"query": "SELECT * FROM wafers;"}
    report = score(
        serving.url,
        postgres.url,
        f"{postgres.url}?table=scores_{how}",
        key=None if how == "table" else "id",
        state=work / f"pg-{how}.state",
        progress=False,
        **source,
        **SETTINGS,
    )
    scored = _sql_read(engine, f"scores_{how}")
    _check(report, scored, _sql_read(engine, f"scores_{how}_rejects"), expected, bad)
    engine.dispose()


def _read_jsonl_dir(folder):
    rows = []
    for part in sorted(folder.glob("part-*.jsonl")):
        rows += [json.loads(line) for line in part.read_text().splitlines()]
    return rows


@pytest.mark.parametrize("layout", ["parquet-file", "parquet-folder", "jsonl"])
def test_files(serving, data, work, layout):
    table, expected, bad = data
    lake = work / f"lake-{layout}"
    lake.mkdir()
    if layout == "parquet-file":
        pq.write_table(table, lake / "wafers.parquet", row_group_size=300)
        source, path, dest = lake.as_uri(), "wafers.parquet", work / f"out-{layout}"
    elif layout == "parquet-folder":  # three files, read in name order
        for i, start in enumerate((0, 1000, 2000)):
            pq.write_table(table.slice(start, 1000), lake / f"part-{i}.parquet")
        source, path, dest = str(lake), None, work / f"out-{layout}"
    else:
        lines = [json.dumps(row) for row in table.to_pylist()]
        (lake / "wafers.jsonl").write_text("\n".join(lines) + "\n")
        source, path, dest = str(lake / "wafers.jsonl"), None, work / f"out-{layout}.jsonl"
    report = score(
        serving.url,
        source,
        str(dest),
        path=path,
        key="id",
        state=work / f"{layout}.state",
        progress=False,
        **SETTINGS,
    )
    if layout == "jsonl":
        scored = _read_jsonl_dir(dest)
    else:
        scored = pads.dataset(dest, format="parquet").to_table().to_pylist()  # skips _rejects
    _check(report, scored, _read_jsonl_dir(dest / "_rejects"), expected, bad)


def test_redis(serving, data, redis_server, work):
    table, expected, bad = data
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with client.pipeline() as pipe:
        for row in table.to_pylist():
            fields = {k: repr(v) for k, v in row.items() if k != "id" and v is not None}
            pipe.hset(f"wafer:{row['id']}", mapping=fields)
        pipe.execute()
    report = score(
        serving.url,
        redis_server.url,
        f"{redis_server.url}?prefix=score:",
        table="wafer:*",
        columns=FEATURES,  # hash fields have no fixed order: name the model's inputs in order
        state=work / "redis.state",
        progress=False,
        **SETTINGS,
    )
    scored = [
        {"_key": name.removeprefix("score:"), **client.hgetall(name)}
        for name in client.scan_iter("score:wafer:*")
    ]
    for row in scored:
        row["prediction"] = int(row["prediction"])
    rejects = [
        {"_key": name.removeprefix("score:rejects:"), **client.hgetall(name)}
        for name in client.scan_iter("score:rejects:*")
    ]
    _check(report, scored, rejects, expected, bad, key=lambda k: int(k.split(":")[1]))
    client.close()
