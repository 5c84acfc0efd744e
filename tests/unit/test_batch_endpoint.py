"""The HTTP side of batch scoring (``mlhub.batch.endpoint``) against a fake model server.

``FakeModelServer`` is a stand-in (a ``standin_http.StandInServer`` on 127.0.0.1) that answers
``/v1/metadata`` and ``/v1/predict`` from a script of statuses, so retries and error mapping
are checked without uWSGI; the real server is in tests/component/test_batch_*.py. With
``arrow=False`` it plays a server that reads JSON only and answers Arrow bodies with 415.
"""

import json

import orjson
import pyarrow as pa
import pytest
from support.standin_http import StandInHandler, StandInServer

from mlhub.batch.endpoint import ARROW_STREAM, ModelEndpoint, encode, encode_arrow
from mlhub.batch.errors import ModelUnreachable
from mlhub.batch.scoring import bisect
from mlhub.batch.settings import BatchSettings
from mlhub.errors import InvalidInput, PayloadTooLarge, Unauthorized

METADATA = {"name": "lr", "version": "sha256:abc", "signature": {"kind": "array", "inputs": []}}


class FakeModelServer(StandInServer):
    def __init__(self, script, arrow):
        self.script = list(script)  # statuses for /v1/predict, in order; then 200s
        self.bodies, self.headers, self.gets = [], [], []
        fake = self

        class Handler(StandInHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status, payload):
                self.reply(status, json.dumps(payload).encode(), "application/json")

            def do_GET(self):
                fake.gets.append((self.path, self.headers.get("Authorization")))
                if self.path.startswith("/services/mlhub-publisher/api/models/"):
                    self._answer(200, {"url": fake.url + "models/alice/lr/"})  # a Model
                else:
                    self._answer(200, METADATA)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers["Content-Type"] == ARROW_STREAM:
                    if not arrow:
                        self._answer(415, {"error": "send JSON", "code": "unsupported_media_type"})
                        return
                    rows = [
                        list(r.values()) for r in pa.ipc.open_stream(body).read_all().to_pylist()
                    ]
                else:
                    rows = json.loads(body)["data"]
                fake.bodies.append(rows)
                fake.headers.append(dict(self.headers))
                status = fake.script.pop(0) if fake.script else 200
                if status != 200:
                    self._answer(status, {"error": f"scripted {status}", "code": _CODES[status]})
                elif arrow:
                    self._answer_arrow([sum(r) for r in rows])
                else:
                    self._answer(200, {"predictions": [sum(r) for r in rows]})

            def _answer_arrow(self, predictions):
                self.reply(200, encode_arrow(pa.table({"predictions": predictions})), ARROW_STREAM)

        super().__init__(Handler)
        self.url += "/"


_CODES = {400: "invalid_input", 401: "unauthorized", 503: "not_ready"}
FAST = BatchSettings(retries=2, timeout=5)


@pytest.fixture
def server_factory(monkeypatch):
    monkeypatch.setattr("mlhub.batch.endpoint.time.sleep", lambda s: None)  # no real backoff
    servers = []

    def make(*script, arrow=False):
        servers.append(FakeModelServer(script, arrow))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


TABLE = pa.table({"x0": [1.0, 2.0], "x1": [3.0, None]})


def test_arrow_bodies_and_answers_with_the_token(server_factory):
    server = server_factory(arrow=True)
    endpoint = ModelEndpoint.resolve(server.url + "v1/predict", token="mlhk_k", settings=FAST)
    assert (endpoint.name, endpoint.version) == ("lr", "sha256:abc")
    predictions = endpoint.predict(pa.table({"x0": [1.0, 2.0], "x1": [3.0, 4.0]}))
    assert predictions.tolist() == [4.0, 6.0]
    assert server.bodies == [[[1.0, 3.0], [2.0, 4.0]]]
    assert server.headers[0]["Authorization"] == "token mlhk_k"


def test_a_server_without_arrow_gets_columnar_json(server_factory):
    server = server_factory()
    endpoint = ModelEndpoint(server.url, settings=FAST)
    assert endpoint.predict(pa.table({"x0": [1.0, 2.0], "x1": [3.0, 4.0]})) == [4.0, 6.0]
    assert endpoint.predict(pa.table({"x0": [5.0]})) == [5.0]
    assert server.bodies == [[[1.0, 3.0], [2.0, 4.0]], [[5.0]]]
    assert [h["Content-Type"] for h in server.headers] == ["application/json"] * 2


def test_a_restarting_model_is_retried_and_one_that_stays_down_stops(server_factory):
    server = server_factory(503, 503)
    endpoint = ModelEndpoint(server.url, settings=FAST)
    assert endpoint.predict(pa.table({"x0": [1.0]})) == [1.0]
    assert len(server.bodies) == 3
    server = server_factory(503, 503, 503)
    with pytest.raises(ModelUnreachable, match="failed 3 times .*rerun the same command"):
        ModelEndpoint(server.url, settings=FAST).predict(pa.table({"x0": [1.0]}))


def test_client_errors_are_typed_and_not_retried(server_factory):
    server = server_factory(400, 401)
    endpoint = ModelEndpoint(server.url, settings=FAST)
    with pytest.raises(InvalidInput, match="scripted 400"):
        endpoint.predict(TABLE)
    with pytest.raises(Unauthorized):
        endpoint.predict(TABLE)
    assert len(server.bodies) == 2


def test_encode_keeps_types_and_writes_missing_values_as_null():
    assert orjson.loads(encode(TABLE)) == {
        "columns": ["x0", "x1"],
        "data": [[1.0, 3.0], [2.0, None]],
    }
    mixed = pa.table({"n": [1, 2], "s": ["a", None], "b": [True, False]})
    assert orjson.loads(encode(mixed))["data"] == [[1, "a", True], [2, None, False]]


def test_requests_over_max_request_bytes_are_split_before_sending(server_factory):
    server = server_factory(arrow=True)
    table = pa.table({"x0": [float(i) for i in range(64)]})
    small = BatchSettings(max_request_bytes=len(encode_arrow(table.slice(0, 16))))
    endpoint = ModelEndpoint(server.url, settings=small)
    with pytest.raises(PayloadTooLarge, match="over max_request_bytes"):
        endpoint.predict(table)
    assert server.bodies == []  # refused here, never sent
    segments, rejected = bisect(endpoint, table)
    assert rejected == [] and [len(p) for _, p in segments] == [16] * 4


def test_a_model_name_is_resolved_through_the_publisher(server_factory):
    server = server_factory(arrow=True)
    endpoint = ModelEndpoint.resolve("alice/lr", url=server.url, token="hub-token", settings=FAST)
    assert endpoint.base_url == server.url + "models/alice/lr/"
    assert server.gets == [
        ("/services/mlhub-publisher/api/models/alice/lr", "token hub-token"),
        ("/models/alice/lr/v1/metadata", "token hub-token"),
    ]
