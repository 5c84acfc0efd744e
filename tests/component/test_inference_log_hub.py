"""The inference log and drift on a real ``mlhub up``: alice publishes with
``inference_log=True``, callers go through the public URL (JSON, OIP and a refused request),
and what she reads back (``mlhub.inference_log``, as a DataFrame) is what was sent and
answered; ``mlhub.drift`` flags the feature her callers shifted and not the others. Nobody
else reads her log or writes into it. The R runtime logs the same way."""

import datetime
import json
import time

import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from support.embedded_hub import wait_for
from support.publishing import client, models_cli, predict
from support.rmodels import formula_bundle

from mlhub import rlang
from mlhub.bundle import save_bundle
from mlhub.errors import BadRequest, Forbidden, NotFound
from mlhub.extension import insight

pytestmark = [pytest.mark.component, pytest.mark.slow]


@pytest.fixture(scope="module")
def flowers(hub, tmp_path_factory):
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sl", "sw", "pl", "pw"]
    model = LogisticRegression(max_iter=500).fit(X, y)
    bundle = tmp_path_factory.mktemp("flowers") / "bundle"
    save_bundle(model, bundle, name="flowers", example=X.head(), validate=X)
    published = client(hub, hub.alice).publish(bundle, "flowers", inference_log=True)
    assert published["inference_log"] == 1.0
    return X


def logged(hub, since, rows, name="flowers"):
    """alice's rows since ``since`` once the runtime sent ``rows`` of them (it sends every 2 s)."""
    alice = client(hub, hub.alice)
    found = []

    def enough():
        found[:] = alice.inference_log(name, since=since)
        return len(found) >= rows

    wait_for(enough, f"{rows} rows in the inference log", timeout=60)
    return found


def alices_cli(hub, *args):
    """What ``mlhub models ARGS`` prints to alice, who logged in; it must succeed."""
    code, out, err = models_cli(hub, hub.alice, *args)
    assert code == 0, err
    return out


def now():
    return datetime.datetime.now(datetime.UTC).isoformat()


def test_what_was_sent_and_answered_is_what_the_log_holds(hub, flowers):
    X = flowers
    since = now()
    # a caller without a token is no traffic of the model's: never in its log
    assert predict(hub, "alice", "flowers", None, X.head(1).to_dict("records")).status_code == 401
    sent, answered = [], []
    for start in range(0, 150, 10):
        rows = X.iloc[start : start + 10].to_dict(orient="records")
        answer = predict(hub, "alice", "flowers", hub.alice, rows)
        assert answer.status_code == 200, answer.text
        sent += rows
        answered += answer.json()["predictions"]
    oip = requests.post(
        f"{hub.url}models/alice/flowers/v2/models/flowers/infer",
        json={
            "inputs": [
                {"name": c, "shape": [1], "datatype": "FP64", "data": [float(X[c][7])]}
                for c in X.columns
            ]
        },
        headers={"Authorization": f"token {hub.alice}"},
        timeout=30,
    )
    assert oip.status_code == 200, oip.text
    refused = predict(hub, "alice", "flowers", hub.alice, [{"sl": "tall"}])
    assert refused.status_code == 400
    logged(hub, since, 152)
    frame = insight.inference_log("flowers", since=since, publisher=client(hub, hub.alice))
    ok = frame[frame.status == 200]
    assert ok[["sl", "sw", "pl", "pw"]].iloc[:150].to_dict(orient="records") == sent
    assert ok["prediction"].iloc[:150].tolist() == answered
    assert ok.iloc[150][["sl", "sw", "pl", "pw"]].tolist() == X.iloc[7].tolist()
    assert ok["latency_ms"].gt(0).all()
    assert set(ok["version"]) == {client(hub, hub.alice).get("flowers")["current_version"]}
    assert ok.iloc[:150].groupby("request", sort=False).size().tolist() == [10] * 15
    assert sorted(set(frame.status)) == [200, 400]
    (bad,) = frame[frame.status == 400].itertuples()
    assert "sl" in bad.error and bad.error == refused.json()["error"]
    metrics = requests.get(
        f"{hub.url}models/alice/flowers/metrics",
        headers={"Authorization": f"token {hub.alice}"},
        timeout=10,
    ).text
    assert "mlhub_inference_log_dropped_total 0" in metrics


def test_drift_flags_the_shifted_feature_only(hub, flowers):
    X = flowers
    alice = client(hub, hub.alice)
    since = now()
    for start in range(0, 150, 25):
        rows = X.iloc[start : start + 25].to_dict(orient="records")
        assert predict(hub, "alice", "flowers", hub.alice, rows).ok
    logged(hub, since, 150)
    same = insight.drift("flowers", since=since, publisher=alice)
    assert not same["drifted"].any(), same
    assert same.attrs["note"] is None  # 150 reference rows (the validate set), 150 recent

    time.sleep(0.01)
    shifted_since = now()
    shifted = X.assign(pl=X.pl + 3.0)
    for start in range(0, 150, 25):
        rows = shifted.iloc[start : start + 25].to_dict(orient="records")
        assert predict(hub, "alice", "flowers", hub.alice, rows).ok
    logged(hub, shifted_since, 150)
    table = insight.drift("flowers", since=shifted_since, publisher=alice).set_index("feature")
    assert table.loc["pl", "drifted"] and table.loc["pl", "psi"] > 1, table
    assert not table.drop(index="pl")["drifted"].any(), table
    assert table.loc["pl", "recent_mean"] == pytest.approx(X.pl.mean() + 3)
    # against a reference of her own (the training data), in the notebook
    own = insight.drift("flowers", since=shifted_since, reference=X, publisher=alice)
    assert own.set_index("feature").loc["pl", "drifted"]
    # and from a terminal
    printed = alices_cli(hub, "drift", "flowers", "--since", shifted_since)
    lines = {line.split()[0]: line.split() for line in printed.splitlines()[2:]}
    assert lines["pl"][-1] == "YES" and lines["sl"][-1] == "no", printed
    printed = alices_cli(hub, "inference-log", "flowers", "--limit", "3")
    rows = [json.loads(line) for line in printed.splitlines()]
    assert [r["inputs"]["pl"] for r in rows] == shifted.pl.iloc[-3:].tolist()


def test_nobody_else_reads_or_writes_her_log(hub, flowers):
    bob = client(hub, hub.bob)
    with pytest.raises((Forbidden, NotFound)):
        bob.inference_log("alice/flowers")
    with pytest.raises((Forbidden, NotFound)):
        bob.drift("alice/flowers")
    url = f"{client(hub, hub.alice).publisher_url}api/models/alice/flowers/inference-log"
    batch = {"version": "sha256:x", "requests": []}
    for header in ({}, {"Authorization": f"token {hub.bob}"}, {"Authorization": "token mlhb_no"}):
        answer = requests.post(url, json=batch, headers=header, timeout=10)
        assert answer.status_code == 401, answer.text
    with pytest.raises(BadRequest, match="an age"):
        client(hub, hub.alice).inference_log("flowers", since="yesterday")


def test_turning_the_log_off_and_on_needs_no_new_version(hub, flowers):
    X = flowers
    alice = client(hub, hub.alice)
    version = alice.get("flowers")["current_version"]
    assert alice.configure("flowers", inference_log=False)["inference_log"] is None
    since = now()
    rows = X.head(3).to_dict(orient="records")
    assert predict(hub, "alice", "flowers", hub.alice, rows).ok
    time.sleep(3)  # two of the runtime's flushes: had it logged, the rows would be there
    assert alice.inference_log("flowers", since=since) == []
    printed = alices_cli(hub, "configure", "flowers", "--inference-log", "on")
    assert "inference log keeps 100% of the requests" in printed
    assert alice.get("flowers")["current_version"] == version
    assert predict(hub, "alice", "flowers", hub.alice, rows).ok
    assert len(logged(hub, since, 3)) == 3


def test_an_r_model_logs_its_requests_too(hub, tmp_path):
    if rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    alice = client(hub, hub.alice)
    bundle = formula_bundle(tmp_path / "formula", name="formula-r")
    model = alice.publish(bundle, "formula-r", inference_log=True, workers=2)
    assert model["inference_log"] == 1.0
    since = now()
    rows = [{"temp": float(t), "pressure": 1.0, "line": "b", "count": 2} for t in range(6)]
    # a caller without a token is no traffic of the model's: never in its log
    assert predict(hub, "alice", "formula-r", None, rows[:1]).status_code == 401
    answered = []
    for row in rows:
        answer = predict(hub, "alice", "formula-r", hub.alice, [row])
        assert answer.status_code == 200, answer.text
        answered += answer.json()["predictions"]
    refused = predict(hub, "alice", "formula-r", hub.alice, [{**rows[0], "line": "z"}])
    assert refused.status_code == 400
    found = sorted(logged(hub, since, 7, "formula-r"), key=lambda r: r["status"])
    assert [r["status"] for r in found] == [200] * 6 + [400]
    ok = [r for r in found if r["status"] == 200]
    assert sorted((r["inputs"]["temp"], r["outputs"]) for r in ok) == sorted(
        zip([r["temp"] for r in rows], answered, strict=True)
    )
    assert found[-1]["status"] == 400 and found[-1]["error"] == refused.json()["error"]
    metrics = requests.get(
        f"{hub.url}models/alice/formula-r/metrics",
        headers={"Authorization": f"token {hub.alice}"},
        timeout=10,
    ).text
    assert "mlhub_inference_log_dropped_total 0" in metrics
