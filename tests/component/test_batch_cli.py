"""``mlhub batch`` for real, as a user runs it: a subprocess against a real model server.

Resume: the command is SIGKILLed after a few chunks are committed, then run again. Every row
must end up in the sink exactly once with the model's own prediction, the rerun must skip the
committed chunks, and the server must have predicted no more extra rows than the chunks that
were in flight at the kill (never a committed chunk again). The model sleeps a little per
request so the kill lands mid-run.

Auth: with authentication on, an API key in ``--token`` works and a wrong one stops the run
with the server's 401 message; rejected rows leave the exit status at 0.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import cloudpickle
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
from support.embedded_hub import wait_for

from mlhub.bundle import save_bundle

pytestmark = pytest.mark.component

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # uWSGI cannot import this file

ROWS = 3_000
CHUNK = 50
CONCURRENCY = 2
FEATURES = [f"f{i}" for i in range(20)]
KEY = "mlhk_batch-component-key"


class SlowModel:
    """A fitted model that takes ``delay`` seconds per request."""

    def __init__(self, model, delay):
        self.model, self.delay = model, delay

    def predict(self, X):
        time.sleep(self.delay)
        return self.model.predict(X)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("batch-cli")


@pytest.fixture(scope="module")
def model():
    X, y = make_classification(2_000, n_features=20, random_state=0)
    return LogisticRegression().fit(X, y)


@pytest.fixture(scope="module")
def data(model):
    X, _ = make_classification(ROWS, n_features=20, random_state=3)
    ids = np.arange(ROWS) * 3 + 7
    table = pa.table({"id": ids, **{f: X[:, i] for i, f in enumerate(FEATURES)}})
    return table, dict(zip(ids.tolist(), model.predict(X).tolist(), strict=True))


@pytest.fixture(scope="module")
def slow_serving(model, work):
    save_bundle(SlowModel(model, 0.02), work / "slow", name="slow", example=np.zeros((1, 20)))
    server = Serving(work / "slow", work)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_serving(model, work):
    save_bundle(model, work / "lr", name="lr", example=np.zeros((1, 20)))
    access = work / "access.json"
    access.write_text(json.dumps({"key_hashes": [hashlib.sha256(KEY.encode()).hexdigest()]}))
    server = Serving(work / "lr", work, env={"MLHUB_AUTH": "on", "MLHUB_ACCESS_FILE": str(access)})
    yield server
    server.stop()


def batch_argv(model_url, source, dest, *extra):
    return [
        sys.executable,
        "-m",
        "mlhub.cli",
        "batch",
        "--model",
        model_url,
        "--source",
        source,
        "--dest",
        dest,
        "--no-progress",
        "--json",
        *extra,
    ]


def _env():
    return {k: v for k, v in os.environ.items() if k not in ("MLHUB_TOKEN", "JUPYTERHUB_API_TOKEN")}


def _committed(state):
    """Chunk ids the state file records (a line cut short by the kill is not a record)."""
    chunks = []
    for line in state.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            break
        if "chunk" in record:
            chunks.append(record["chunk"])
        assert not record.get("done"), "the run finished before it was killed"
    return chunks


# --------------------------------------------------------------- one store pair per case


def _sql(url, table, work):
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    pa_rows = table.to_pylist()
    meta = sa.MetaData()
    columns = [sa.Column("id", sa.BigInteger, primary_key=True)]
    wafers = sa.Table("wafers", meta, *columns, *(sa.Column(f, sa.Double) for f in FEATURES))
    meta.drop_all(engine)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(wafers.insert(), pa_rows)

    def read():
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, prediction FROM scores")).all()
        engine.dispose()
        return [tuple(r) for r in rows]

    return (url, f"{url}?table=scores", "--table", "wafers"), read


def _parquet(table, work):
    pq.write_table(table, work / "wafers.parquet", row_group_size=700)
    dest = work / "scores"

    def read():
        result = pads.dataset(dest, format="parquet").to_table()
        return list(zip(result["id"].to_pylist(), result["prediction"].to_pylist(), strict=True))

    return (str(work / "wafers.parquet"), str(dest), "--key", "id"), read


def _redis(url, table):
    client = redis.Redis.from_url(url, decode_responses=True)
    with client.pipeline() as pipe:
        for row in table.to_pylist():
            pipe.hset(f"w:{row.pop('id')}", mapping={k: repr(v) for k, v in row.items()})
        pipe.execute()

    def read():
        names = list(client.scan_iter("s:w:*"))
        pairs = [(int(n.split(":")[2]), int(client.hget(n, "prediction"))) for n in names]
        client.close()
        return pairs

    columns = ",".join(FEATURES)
    return (url, f"{url}?prefix=s:", "--table", "w:*", "--columns", columns), read


@pytest.mark.parametrize("store", ["parquet", "sqlite", "postgresql", "redis"])
def test_resume_after_kill(slow_serving, data, work, store, request):
    table, expected = data
    case = work / store
    case.mkdir()
    if store == "parquet":
        (source, dest, *selection), read = _parquet(table, case)
    elif store == "sqlite":
        (source, dest, *selection), read = _sql(f"sqlite:///{case / 'fab.db'}", table, case)
    elif store == "postgresql":
        pg = request.getfixturevalue("postgres")
        (source, dest, *selection), read = _sql(pg.url, table, case)
    else:
        (source, dest, *selection), read = _redis(
            request.getfixturevalue("redis_server").url, table
        )
    state = case / "run.state"
    argv = batch_argv(slow_serving.url, source, dest, *selection, "--state", str(state))
    argv += ["--chunk-size", str(CHUNK), "--concurrency", str(CONCURRENCY)]
    before = slow_serving.predicted_rows()

    first = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: state.exists() and len(_committed(state)) >= 4, "4 chunks", 60, 0.01)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    committed = _committed(state)
    assert len(committed) < ROWS // CHUNK

    second = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["resumed_chunks"] == len(committed)
    assert (report["rows"], report["scored"], report["rejected"]) == (ROWS, ROWS, 0)
    assert report["chunks"] == ROWS // CHUNK

    pairs = read()
    assert len(pairs) == ROWS, "a row was lost or written twice"
    assert dict(pairs) == expected
    # Only chunks in flight at the kill were predicted twice, never a committed one.
    extra = slow_serving.predicted_rows() - before - ROWS
    assert 0 <= extra <= 2 * CONCURRENCY * CHUNK


def test_api_key_and_rejected_rows(keyed_serving, data, work):
    table, expected = data
    broken = table.set_column(
        6, "f5", pa.array(table["f5"].to_numpy(), mask=np.arange(ROWS) % 500 == 1)
    )
    pq.write_table(broken, work / "broken.parquet")
    argv = batch_argv(keyed_serving.url, str(work / "broken.parquet"), str(work / "keyed"))
    argv += ["--key", "id", "--state", str(work / "keyed.state")]

    denied = subprocess.run([*argv, "--token", "mlhk_wrong"], env=_env(), capture_output=True)
    assert denied.returncode == 1
    assert b"mlhub: error:" in denied.stderr and b"key" in denied.stderr.lower()

    done = subprocess.run([*argv, "--token", KEY], env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["scored"], report["rejected"]) == (ROWS - ROWS // 500, ROWS // 500)
    scored = pads.dataset(work / "keyed", format="parquet").to_table()
    assert scored.num_rows == ROWS - ROWS // 500
    rejects = pads.dataset(work / "keyed" / "_rejects", format="json").to_table().to_pylist()
    assert sorted(r["id"] for r in rejects) == [7 + 3 * i for i in range(1, ROWS, 500)]
    # refused by the server before the model (which takes no NaN), naming the input
    assert all("'x5': a missing value" in r["error"] and r["status"] == 400 for r in rejects)
