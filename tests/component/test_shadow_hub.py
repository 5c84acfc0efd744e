"""Shadow traffic on a real ``mlhub up``, through the public URL: a shadow version gets a
share of production's requests too, its answers are kept beside production's and never reach
a caller (every caller gets production's answer, before and while it runs); ``mlhub.compare``
reads the comparison as a DataFrame (agreement, the rows that differ, each version's latency);
the inference log keeps only its own share; stopping it leaves production as it was. Nobody
but the owner reads the compared rows (they hold callers' inputs)."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from support.embedded_hub import wait_for
from support.publishing import client, models_cli, predict

from mlhub.bundle import save_bundle
from mlhub.errors import BadRequest, Forbidden, NotFound
from mlhub.extension.client import shadow as notebook_shadow
from mlhub.extension.insight import compare

pytestmark = [pytest.mark.component, pytest.mark.slow]


def linear(path, slope, name="shadowed"):
    """A bundle of ``y = slope * x0 + x1``: versions agree where ``x0`` is 0 and nowhere else."""
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    model = LinearRegression().fit(X, slope * X[:, 0] + X[:, 1])
    save_bundle(model, path, name=name, example=X[:2].tolist())
    return path


@pytest.fixture(scope="module")
def versions(hub, tmp_path_factory):
    base = tmp_path_factory.mktemp("shadow")
    alice = client(hub, hub.alice)
    v1 = alice.publish(linear(base / "v1", 1.0), "shadowed", inference_log=0.5)
    model = alice.publish(linear(base / "v2", 3.0), "shadowed", alias="staging")
    (v2,) = [a["version"] for a in model["aliases"] if a["name"] == "staging"]
    return v1["current_version"], v2


def niceness(pid):
    """The nice value of process ``pid`` (field 19 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def rows(n):
    """``n`` requests' rows: half with ``x0 = 0`` (the versions agree), half not."""
    return [[[float(i % 2), float(i)]] for i in range(n)]


def test_the_shadow_answers_no_caller_and_compare_shows_both_versions(hub, versions):
    v1, v2 = versions
    alice = client(hub, hub.alice)
    model = alice.start_shadow("shadowed", "staging", 100)
    assert model["shadow"] == {"version": v2, "percent": 100.0}
    assert model["inference_log"] == 0.5  # the log keeps its own share
    # the shadow's processes run at the lowest CPU priority (LocalDeployer.shadow_nice)
    run = json.loads((hub.data_dir / "run" / "alice" / "shadowed@shadow.json").read_text())
    assert niceness(run["live"]["pid"]) == 19
    production = json.loads((hub.data_dir / "run" / "alice" / "shadowed.json").read_text())
    assert niceness(production["live"]["pid"]) == 0
    sent = rows(40)
    for request in sent:
        answer = predict(hub, "alice", "shadowed", hub.alice, request)
        assert answer.status_code == 200, answer.text
        x0, x1 = request[0]
        # production's answer (y = x0 + x1), never the shadow's (3 x0 + x1)
        assert answer.json()["predictions"][0] == pytest.approx(x0 + x1)

    wait_for(
        lambda: len(compare("shadowed", publisher=alice)) >= len(sent),
        "every request compared",
        timeout=60,
    )
    frame = compare("shadowed", publisher=alice)
    assert len(frame) == len(sent)
    assert list(frame[["input_0", "input_1"]].itertuples(index=False, name=None)) == [
        tuple(r[0]) for r in sent
    ]
    assert frame["production"].tolist() == pytest.approx([x0 + x1 for [(x0, x1)] in sent])
    assert frame["shadow"].tolist() == pytest.approx([3 * x0 + x1 for [(x0, x1)] in sent])
    assert frame["agree"].tolist() == [x0 == 0 for [(x0, _)] in sent]
    assert (frame["shadow_status"] == 200).all()
    assert (frame["production_ms"] > 0).all()
    # the shadow's latency is measured on the requests it got alone (waiting ones go in batches)
    timed = frame["shadow_ms"].dropna()
    assert len(timed) >= 1 and (timed > 0).all()
    summary = frame.attrs["summary"]
    assert summary["compared"] == 40 and summary["agree"] == 20
    assert summary["agreement"] == 0.5 and summary["dropped"] == 0
    assert summary["shadow_p95_ms"] > 0 and summary["production_p95_ms"] > 0
    assert frame.attrs["versions"] == {"production": v1, "shadow": v2}
    # the inference log kept its half of the requests, as before the shadow
    # (written in the same call that queued the requests for the shadow: all there by now)
    logged = alice.inference_log("shadowed", since="10m")
    assert 5 <= len(logged) <= 35 and {r["version"] for r in logged} == {v1}


def test_only_the_owner_reads_and_changes_the_shadow(hub, versions):
    alice, bob = client(hub, hub.alice), client(hub, hub.bob)
    alice.share("shadowed", users=["bob"])
    try:
        with pytest.raises(Forbidden):
            bob.shadow("alice/shadowed")  # callers' inputs: the owner's alone
        with pytest.raises(Forbidden):
            bob.stop_shadow("alice/shadowed")
        with pytest.raises(Forbidden):
            bob.start_shadow("alice/shadowed", "staging", 5)
    finally:
        alice.share("shadowed", users=[])
    with pytest.raises(BadRequest, match="the version production serves"):
        alice.start_shadow("shadowed", "production", 10)
    with pytest.raises(BadRequest, match="from 0.01 to 100"):
        alice.start_shadow("shadowed", "staging", 0)
    with pytest.raises(BadRequest, match="shadow's alias"):
        alice.delete_alias("shadowed", "shadow")


def test_the_cli_compares_and_stops_the_shadow(hub, versions):
    def cli(*args):
        return models_cli(hub, hub.alice, "shadow", "shadowed", *args)

    code, out, err = cli()
    assert code == 0, err
    assert "compared rows: 40 of 40, agreeing: 20 (50.0%)" in out
    assert "rows that differ (first 10):" in out and "[1.0, 1.0]: 2 -> 4\n" in out
    code, out, err = cli("--stop")
    assert code == 0 and "shadow stopped" in out, err
    alice = client(hub, hub.alice)
    model = wait_for(lambda: alice.get("shadowed"), "the model")
    assert model["shadow"] is None
    assert [a["name"] for a in model["aliases"]] == ["production", "staging"]
    with pytest.raises(NotFound, match="no shadow"):
        alice.shadow("shadowed")
    # production answers as before, and its inference log keeps its half
    answer = predict(hub, "alice", "shadowed", hub.alice, [[1.0, 1.0]])
    assert answer.json()["predictions"][0] == pytest.approx(2.0)


def test_the_notebook_starts_a_shadow(hub, versions):
    alice = client(hub, hub.alice)
    status = notebook_shadow("shadowed", "staging", 25, publisher=alice)
    assert status["percent"] == 25.0 and status["summary"]["compared"] == 0
    for request in rows(200):
        assert predict(hub, "alice", "shadowed", hub.alice, request).status_code == 200
    counts = []

    def settled():
        # the runtime sends every 2 s and the shadow answers after: settled when a read 3 s
        # after another finds no more rows
        counts.append(len(compare("shadowed", publisher=alice)))
        time.sleep(3)
        counts.append(len(compare("shadowed", publisher=alice)))
        return counts[-1] > 0 and counts[-1] == counts[-2]

    wait_for(settled, "the shadowed share compared", timeout=90)
    # 25% of 200 requests, chosen per request: within five standard deviations (6.1 each)
    assert 20 <= counts[-1] <= 80, counts
    assert notebook_shadow("shadowed", stop=True, publisher=alice) is None
