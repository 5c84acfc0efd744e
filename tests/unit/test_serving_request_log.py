"""The request log (``mlhub.serving.requestlog``): one line per request outcome that says what
failed and why, within a rate, through the real serving app (Flask's test client)."""

import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from support.serving_app import AUTH, make_client, served_model

from mlhub.serving.requestlog import RequestLog


class Clock:
    """A hand-moved clock (a fake for this unit test of the rate logic)."""

    now = 1000.0

    def __call__(self):
        return self.now


def lines_of(request_log):
    written = []
    request_log.write = written.append
    return written


def entries(written):
    assert all(line.startswith("request {") for line in written), written
    return [json.loads(line.split(" ", 1)[1]) for line in written]


def client_with(tmp_path, mode="errors", rate=20):
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    model = LogisticRegression().fit(X, [0, 1, 0, 1])
    request_log = RequestLog(mode, rate, clock=Clock())
    written = lines_of(request_log)
    client, _ = make_client(served_model(model, X), tmp_path, request_log=request_log)
    return client, request_log, written


def test_each_failed_request_is_one_line_with_its_code_and_reason(tmp_path):
    client, _, written = client_with(tmp_path)
    assert client.post("/v1/predict", json={"instances": [[1.0, 2.0]]}, headers=AUTH).status_code
    refused = client.post("/v1/predict", json={"instances": [[1.0, "x"]]}, headers=AUTH)
    anonymous = client.post("/v1/predict", json={"instances": [[1.0, 2.0]]})
    missing = client.post("/v1/predict", json={"instances": [[None, 2.0]]}, headers=AUTH)
    assert (refused.status_code, anonymous.status_code, missing.status_code) == (400, 401, 400)
    logged = entries(written)
    assert [(e["status"], e["code"]) for e in logged] == [
        (400, "invalid_input"),
        (401, "unauthorized"),
        (400, "invalid_input"),
    ]
    assert all(e["method"] == "POST" and e["route"] == "/v1/predict" for e in logged)
    assert "row 0" in logged[0]["error"] and "missing value" in logged[2]["error"]
    assert all(isinstance(e["ms"], float) for e in logged)
    assert not any("mlhk_" in line for line in written)  # never a credential


def test_all_logs_successes_too_and_off_logs_nothing(tmp_path):
    client, _, written = client_with(tmp_path, mode="all")
    client.post("/v1/predict", json={"instances": [[1.0, 2.0]]}, headers=AUTH)
    client.get("/v1/metadata", headers=AUTH)
    assert [(e["route"], e["status"]) for e in entries(written)] == [
        ("/v1/predict", 200),
        ("/v1/metadata", 200),
    ]
    client, _, written = client_with(tmp_path, mode="off")
    client.post("/v1/predict", json={"instances": [[1.0, "x"]]}, headers=AUTH)
    assert written == []


def test_above_the_rate_lines_are_counted_not_written(tmp_path):
    client, request_log, written = client_with(tmp_path, rate=3)
    for _ in range(10):
        client.post("/v1/predict", json={"instances": [[1.0, "x"]]}, headers=AUTH)
    assert len(written) == 3 and request_log.dropped == 7
    request_log.clock.now += 1  # the next second
    client.post("/v1/predict", json={"instances": [[1.0, "x"]]}, headers=AUTH)
    assert entries(written)[-1]["dropped"] == 7 and request_log.dropped == 0
