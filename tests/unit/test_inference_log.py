"""The inference log: the runtime's sampling buffer (the real serving app in process, its
sender replaced by a list: a fake for the logic only; the publisher that receives real batches
is the component test's), the publisher's rows and both storage backends, and the notebook's
DataFrame."""

import datetime
import gzip
import json

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from support.kube_objects import model_deployment
from support.serving_app import AUTH, make_client, served_model

from mlhub.deployers.base import Deployer, ModelRef, Serving
from mlhub.errors import BadRequest
from mlhub.extension.insight import rows_frame
from mlhub.publisher.inference_log import (
    ParquetInferenceLog,
    SQLInferenceLog,
    rows_from_batch,
)
from mlhub.publisher.store import Store
from mlhub.publisher.views import check_inference_log, parse_time
from mlhub.serving.inferencelog import InferenceLog, post_batch
from mlhub.serving.metrics import Metrics
from mlhub.serving.settings import Settings, SettingsError

ALICE_IRIS = ModelRef("alice", "iris")


@pytest.fixture(scope="module")
def served():
    data = load_iris(as_frame=True)
    X = data.frame.drop(columns="target")
    X.columns = ["sl", "sw", "pl", "pw"]
    model = LogisticRegression(max_iter=500).fit(X, data.target)
    return served_model(model, X.head())


def logging_client(served, tmp_path, **kwargs):
    sent = []
    log = InferenceLog(version="sha256:abc", send=sent.append, **kwargs)
    client, metrics = make_client(served, tmp_path, inference_log=log)
    return client, log, sent


def test_a_sampled_request_is_sent_with_its_rows_answers_status_and_latency(served, tmp_path):
    client, log, sent = logging_client(served, tmp_path, sample=1.0, clock=lambda: 1765000000.5)
    rows = [
        {"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2},
        {"sl": 6.7, "sw": 3.0, "pl": 5.2, "pw": 2.3},
    ]
    answer = client.post("/v1/predict", json={"instances": rows}, headers=AUTH)
    assert answer.status_code == 200
    refused = client.post("/v1/predict", json={"instances": [{"sl": "x"}]}, headers=AUTH)
    assert refused.status_code == 400
    client.get("/v1/metadata", headers=AUTH)  # not a prediction: not logged
    stranger = client.post("/v1/predict", json={"instances": rows})  # no token: not logged
    assert stranger.status_code == 401
    assert sent == []  # nothing on the request's path: the sender runs when flushed
    log.flush()
    (batch,) = [json.loads(body) for body in sent]
    assert batch["version"] == "sha256:abc"
    ok, bad = batch["requests"]
    assert ok["inputs"] == rows
    assert ok["outputs"] == answer.get_json()["predictions"]
    assert (ok["status"], ok["time"], ok["error"]) == (200, 1765000000.5, None)
    assert ok["ms"] > 0
    assert bad["status"] == 400 and bad["inputs"] is None
    assert bad["error"] == refused.get_json()["error"]


def test_a_request_is_encoded_only_after_its_whole_answer_was_written(served, tmp_path):
    """The server calls the answer's close() once it wrote it: only then does the worker spend
    time on the log (the caller, and a proxy in front, have the answer already)."""
    client, log, sent = logging_client(served, tmp_path, sample=1.0)
    answer = client.post(
        "/v1/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, headers=AUTH, buffered=False
    )
    assert len(answer.get_json()["predictions"]) == 1
    assert log.take() == ([], 0)
    answer.close()
    entries, rows = log.take()
    assert rows == 1
    assert json.loads(entries[0])["inputs"] == [{"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}]


def test_oip_requests_are_logged_too(served, tmp_path):
    client, log, sent = logging_client(served, tmp_path, sample=1.0)
    body = {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
            for n, v in zip(["sl", "sw", "pl", "pw"], [5.1, 3.5, 1.4, 0.2], strict=True)
        ]
    }
    assert client.post("/v2/models/iris/infer", json=body, headers=AUTH).status_code == 200
    log.flush()
    (request,) = json.loads(sent[0])["requests"]
    assert request["inputs"] == [{"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}]
    assert len(request["outputs"]) == 1


def test_only_the_sample_is_kept(served, tmp_path):
    draws = iter([0.05, 0.5, 0.2, 0.9])
    client, log, sent = logging_client(served, tmp_path, sample=0.25, rand=lambda: next(draws))
    for _ in range(4):
        client.post("/v1/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, headers=AUTH)
    log.flush()
    assert len(json.loads(sent[0])["requests"]) == 2  # the draws below 0.25


def test_a_full_buffer_drops_and_counts_instead_of_growing(served, tmp_path):
    metrics = Metrics()
    sent = []
    log = InferenceLog(
        version="v", sample=1.0, max_rows=3, send=sent.append, counters=metrics.add_logged
    )
    client, _ = make_client(served, tmp_path, inference_log=log)
    two_rows = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    for _ in range(3):
        client.post("/v1/predict", json=two_rows, headers=AUTH)
    assert log.take()[1] == 2  # the first fitted; the other two did not
    text = metrics.render()
    assert "mlhub_inference_log_dropped_total 4" in text
    assert "mlhub_inference_log_rows_total 0" in text


def test_a_batch_the_publisher_refuses_is_kept_for_the_next_flush():
    metrics = Metrics()
    failing = [True]

    def send(body):
        if failing[0]:
            raise OSError("connection refused")

    log = InferenceLog(version="v", sample=1.0, send=send, counters=metrics.add_logged)
    environ = {"mlhub.logged": ([[1.0]], 1, [0])}
    log.record(environ, 200, 0.001)
    log.flush()
    assert log.take()[1] == 1
    log.record(environ, 200, 0.001)
    failing[0] = False
    log.flush()
    assert log.take() == ([], 0)
    assert "mlhub_inference_log_rows_total 1" in metrics.render()


def test_post_batch_sends_gzip_with_the_model_token(tmp_path):
    import http.server
    import threading

    got = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got["auth"] = self.headers["Authorization"]
            got["body"] = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    post_batch(f"http://127.0.0.1:{server.server_port}/log", "mlhl_t", b'{"requests": []}')
    server.server_close()
    assert got == {"auth": "token mlhl_t", "body": b'{"requests": []}'}


def test_settings_read_the_sample_as_a_fraction():
    env = {"MLHUB_BUNDLE": "/b"}
    assert Settings.from_env(env).inference_log_sample == 0
    assert Settings.from_env({**env, "MLHUB_INFERENCE_LOG": "0.25"}).inference_log_sample == 0.25
    assert Settings.from_env({**env, "MLHUB_INFERENCE_LOG": "on"}).inference_log_sample == 1
    with pytest.raises(SettingsError, match="between 0 and 1"):
        Settings.from_env({**env, "MLHUB_INFERENCE_LOG": "2"})


# ---------------------------------------------------------------- how the processes get it


def test_serving_env_and_the_url_each_backend_passes():
    deployer = Deployer(publisher_url="http://pub:8090/services/mlhub-publisher/")
    serving = Serving(inference_log=0.5)
    assert serving.env() == {"MLHUB_INFERENCE_LOG": "0.5"}
    assert deployer.inference_log_env(ModelRef("a@b.c", "m"), serving) == {
        "MLHUB_INFERENCE_LOG_URL": "http://pub:8090/services/mlhub-publisher/api/models/"
        "a%40b.c/m/inference-log"
    }
    assert deployer.inference_log_env(ALICE_IRIS, Serving()) == {}


@pytest.mark.parametrize("logging", [True, False])
def test_a_pod_holds_the_log_token_only_when_it_logs(logging):
    env = {"MLHUB_INFERENCE_LOG_URL": "http://pub/log"} if logging else {}
    deployment = model_deployment(env=env)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert ("MLHUB_INFERENCE_LOG_TOKEN" in names) is logging
    assert "MLHUB_BUNDLE_TOKEN" not in names  # the init container's alone


# ---------------------------------------------------------------- the publisher's side


def test_publish_option_values():
    assert check_inference_log("on") == 1.0
    assert check_inference_log("0.1") == 0.1
    assert check_inference_log("off") is None
    assert check_inference_log(0) is None
    for bad in ("lots", 1.5, -0.1, "2"):
        with pytest.raises(BadRequest, match="fraction of requests"):
            check_inference_log(bad)


def test_times_are_iso_or_ages():
    now = datetime.datetime(2026, 12, 7, 12, 0, 0)
    assert parse_time("2h", now=now) == datetime.datetime(2026, 12, 7, 10, 0, 0)
    assert parse_time("7d", now=now) == datetime.datetime(2026, 11, 30, 12, 0, 0)
    assert parse_time("2026-12-07T10:00:00+01:00") == datetime.datetime(2026, 12, 7, 9, 0, 0)
    with pytest.raises(BadRequest, match=r"an age \(15m, 2h, 7d\)"):
        parse_time("yesterday")


BATCH = {
    "version": "sha256:abc",
    "requests": [
        {
            "time": 1765000000.0,
            "status": 200,
            "ms": 1.5,
            "inputs": [{"x": 1.0, "c": "a"}, {"x": 2.0, "c": "b"}],
            "outputs": [0, 1],
            "error": None,
        },
        {"time": 1765000001.0, "status": 400, "ms": 0.3, "inputs": None, "error": "bad x"},
    ],
}


def test_a_batch_becomes_one_row_per_input_row():
    rows = rows_from_batch(BATCH)
    assert [(r["row"], r["inputs"], r["outputs"], r["status"]) for r in rows] == [
        (0, {"x": 1.0, "c": "a"}, 0, 200),
        (1, {"x": 2.0, "c": "b"}, 1, 200),
        (0, None, None, 400),
    ]
    assert rows[0]["request"] == rows[1]["request"] != rows[2]["request"]
    assert rows[0]["time"] == datetime.datetime(2025, 12, 6, 5, 46, 40)
    assert rows[2]["error"] == "bad x"
    with pytest.raises(BadRequest, match="lacks 'status'"):
        rows_from_batch({"version": "v", "requests": [{"time": 1, "ms": 1}]})


def stores(tmp_path):
    return [
        SQLInferenceLog(Store(f"sqlite:///{tmp_path}/db.sqlite").engine),
        ParquetInferenceLog(str(tmp_path / "parquet")),
    ]


@pytest.mark.parametrize("backend", ["sql", "parquet"])
def test_each_store_reads_back_what_it_kept_by_time_and_version(tmp_path, backend):
    store = dict(zip(["sql", "parquet"], stores(tmp_path), strict=True))[backend]
    rows = rows_from_batch(BATCH)
    later = rows_from_batch(
        {
            **BATCH,
            "version": "sha256:def",
            "requests": [{**BATCH["requests"][0], "time": 1765090000.0}],
        }
    )
    store.write(ALICE_IRIS, rows)
    store.write(ALICE_IRIS, later)
    store.write(ModelRef("bob", "iris"), rows)
    everything = store.read(ALICE_IRIS)
    assert [r["inputs"] for r in everything] == [r["inputs"] for r in rows + later]
    assert everything[0]["time"] == rows[0]["time"]
    since = datetime.datetime(2025, 12, 7)
    assert [r["version"] for r in store.read(ALICE_IRIS, since=since)] == ["sha256:def"] * 2
    assert len(store.read(ALICE_IRIS, version="sha256:abc")) == 3
    assert len(store.read(ALICE_IRIS, limit=2)) == 2
    assert store.read(ALICE_IRIS, limit=2)[-1]["time"] == later[-1]["time"]  # the newest
    store.drop(ModelRef("bob", "iris"))  # deleted: its rows go, nobody else's
    assert store.read(ModelRef("bob", "iris")) == []
    assert len(store.read(ALICE_IRIS)) == 5
    store.expire(datetime.datetime(2025, 12, 7))  # retention: older rows go
    assert [r["version"] for r in store.read(ALICE_IRIS)] == ["sha256:def"] * 2


def test_the_parquet_files_are_partitioned_by_day_and_version(tmp_path):
    import pyarrow.dataset as ds

    store = ParquetInferenceLog(str(tmp_path))
    store.write(ALICE_IRIS, rows_from_batch(BATCH))
    (path,) = tmp_path.glob("alice/iris/day=2025-12-06/version=abc/*.parquet")
    table = ds.dataset(tmp_path / "alice" / "iris", partitioning="hive").to_table()
    assert table.num_rows == 3
    assert json.loads(table.column("inputs")[0].as_py()) == {"x": 1.0, "c": "a"}


def test_the_notebook_frame_has_a_column_per_input(tmp_path):
    rows = [{**r, "time": r["time"].isoformat() + "Z"} for r in rows_from_batch(BATCH)]
    frame = rows_frame(rows)
    assert list(frame.columns) == [
        "time",
        "version",
        "request",
        "row",
        "status",
        "latency_ms",
        "x",
        "c",
        "prediction",
        "error",
    ]
    assert frame["x"].tolist()[:2] == [1.0, 2.0]
    assert str(frame["time"].dt.tz) == "UTC"
    assert rows_frame([]).empty


def test_retention_keeps_the_configured_days(tmp_path):
    store = SQLInferenceLog(Store(f"sqlite:///{tmp_path}/db.sqlite").engine, retention_days=3)
    rows = rows_from_batch(BATCH)  # 2025-12-06
    store.write(ALICE_IRIS, rows)
    assert store.expire_old(now=datetime.datetime(2025, 12, 8)) == 0
    assert store.expire_old(now=datetime.datetime(2025, 12, 10)) == 3
    store.write(ALICE_IRIS, rows)
    store.retention_days = 0  # for ever
    assert store.expire_old(now=datetime.datetime(2035, 1, 1)) == 0
    assert len(store.read(ALICE_IRIS)) == 3


def test_a_batch_the_publisher_refuses_is_dropped_and_counted_not_resent():
    import urllib.error

    metrics = Metrics()
    tries = []

    def send(body):
        tries.append(body)
        raise urllib.error.HTTPError("http://pub/log", 429, "Too Many Requests", {}, None)

    log = InferenceLog(version="v", sample=1.0, send=send, counters=metrics.add_logged)
    log.record({"mlhub.logged": ([[1.0], [2.0]], 2, [0, 1])}, 200, 0.001)
    log.flush()
    log.flush()
    assert len(tries) == 1 and log.take() == ([], 0)
    assert "mlhub_inference_log_dropped_total 2" in metrics.render()
