"""Canary releases on a real ``mlhub up``, through the public URL: a canary at 20% gets a
fifth of production's requests within a statistical tolerance, chosen per request; starting it,
changing its share and promoting it under continuous requests fail none; a canary that fails
the requests production answers is aborted by itself, with the reason in the history; an
abort sends everything to production again. The CLI and the notebook drive the same."""

import numpy as np
import pytest
import requests
from sklearn.linear_model import LinearRegression
from support.embedded_hub import wait_for
from support.publishing import client, constant_bundle, models_cli, predict
from support.rolling_update import Load

from mlhub.bundle import save_bundle
from mlhub.errors import BadRequest, Forbidden, NotFound
from mlhub.extension.client import canary as notebook_canary

pytestmark = [pytest.mark.component, pytest.mark.slow]

REQUESTS = 1000


def within_binomial(count, n, p, sigmas=5):
    """Whether ``count`` successes of ``n`` are within ``sigmas`` standard deviations of
    ``n * p``: a split that is right fails this about once in 1.7 million runs."""
    return abs(count - n * p) <= sigmas * (n * p * (1 - p)) ** 0.5


@pytest.fixture(scope="module")
def versions(hub, tmp_path_factory):
    base = tmp_path_factory.mktemp("canary")
    alice = client(hub, hub.alice)
    v1 = alice.publish(constant_bundle(base / "v1", 1.0, "split"), "split")["current_version"]
    model = alice.publish(constant_bundle(base / "v2", 2.0, "split"), "split", alias="staging")
    (v2,) = [a["version"] for a in model["aliases"] if a["name"] == "staging"]
    return v1, v2


def test_a_canary_at_20_percent_gets_a_fifth_of_the_requests(hub, versions):
    v1, v2 = versions
    alice = client(hub, hub.alice)
    load = Load(hub, "split")
    load.start()
    try:
        wait_for(lambda: load.seen(1.0, 20), "answers from production")
        model = alice.start_canary("split", "staging", 20)
        assert model["canary"] == {"version": v2, "percent": 20.0}
        wait_for(lambda: load.seen(2.0, 20), "answers from the canary")
    finally:
        load.stop()
    assert load.failures == [], load.failures  # the switch to the front fails nothing

    answers = sample(hub, REQUESTS)
    canary = sum(1 for a in answers if a == 2.0)
    assert set(answers) == {1.0, 2.0}
    assert within_binomial(canary, REQUESTS, 0.2), canary
    status = alice.canary("split")
    assert status["version"] == v2 and status["percent"] == 20.0
    stats = status["stats"]
    # the front counted what the callers got (the Load's requests too)
    assert stats["canary"]["requests"] >= canary and stats["stable"]["errors"] == 0
    assert stats["canary"]["error_rate"] == 0.0 and stats["canary"]["p95_ms"] > 0
    # @production is production's alone; @canary the canary's
    assert predict(hub, "alice", "split@canary", hub.alice).json()["predictions"] == [2.0]


def sample(hub, n):
    """The first prediction of ``n`` requests to alice's ``split`` through the proxy."""
    session = requests.Session()
    url = f"{hub.url}models/alice/split/v1/predict"
    headers = {"Authorization": f"token {hub.alice}"}
    out = []
    for _ in range(n):
        resp = session.post(url, json={"instances": [[0.0, 1.0]]}, headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
        out.append(resp.json()["predictions"][0])
    return out


def test_a_new_share_applies_at_once_and_is_in_the_history(hub, versions):
    alice = client(hub, hub.alice)
    load = Load(hub, "split")
    load.start()
    try:
        wait_for(lambda: len(load.answers) >= 20, "answers before the change")
        answer = alice.start_canary("split", "staging", 50, wait=False)
        count = len(load.answers)
        wait_for(lambda: len(load.answers) > count + 50, "answers after the change")
    finally:
        load.stop()
    assert load.failures == [], load.failures  # the front's reload fails nothing
    assert answer["event_id"] is None  # no processes to start: the front's split changed
    assert alice.canary("split")["percent"] == 50.0
    answers = sample(hub, 400)
    assert within_binomial(sum(1 for a in answers if a == 2.0), 400, 0.5)
    shares = [c for c in alice.history("split")["changes"] if c["step"] == "canary_share"]
    assert [(c["alias"], c["actor"]) for c in shares] == [("canary", "alice")]
    with pytest.raises(BadRequest, match="from 0.01 to 99.99"):
        alice.start_canary("split", "staging", 100)
    with pytest.raises(BadRequest, match="canary's alias"):
        alice.delete_alias("split", "canary")
    with pytest.raises(BadRequest, match="moved by its own commands"):
        alice.set_alias("split", "canary", "production")


def test_bob_can_neither_start_nor_end_alices_canary(hub, versions):
    bob = client(hub, hub.bob)
    with pytest.raises((Forbidden, NotFound)):
        bob.abort_canary("alice/split")
    with pytest.raises((Forbidden, NotFound)):
        bob.start_canary("alice/split", "staging", 90)
    assert client(hub, hub.alice).canary("split")["percent"] == 50.0


def test_promotion_under_continuous_requests_fails_none(hub, versions):
    v1, v2 = versions
    alice = client(hub, hub.alice)
    load = Load(hub, "split")
    load.start()
    try:
        wait_for(lambda: load.seen(1.0, 10) and load.seen(2.0, 10), "answers from both")
        model = alice.promote_canary("split")
        count = len(load.answers)
        wait_for(lambda: len(load.answers) > count + 50, "requests after the promotion")
    finally:
        load.stop()
    assert load.failures == [], load.failures
    assert model["current_version"] == v2 and model["canary"] is None
    assert set(load.answers[count:]) == {2.0}
    assert [a["name"] for a in alice.aliases("split")] == ["production", "staging"]
    with pytest.raises(NotFound, match="no canary"):
        alice.canary("split")
    ended = [c for c in alice.history("split")["changes"] if c["step"] == "alias_deleted"]
    assert ended[-1]["alias"] == "canary" and "promoted by alice" in ended[-1]["message"]


def test_a_canary_that_fails_requests_is_aborted_by_itself(hub, versions, tmp_path):
    """A version trained on three inputs refuses production's two-input requests (400): the
    canary check aborts it, says why, and every request reaches production again."""
    alice = client(hub, hub.alice)
    three = LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0])
    save_bundle(three, tmp_path / "three", name="split", example=[[0.0, 0.0, 0.0]])
    alice.publish(tmp_path / "three", "split", alias="wide")
    alice.start_canary("split", "wide", 50)
    load = Load(hub, "split")
    load.start()
    try:
        wait_for(
            lambda: alice.get("split")["canary"] is None,
            "the canary check to abort the canary",
            timeout=120,
        )
        count = len(load.answers)
        wait_for(lambda: len(load.answers) > count + 20, "requests after the abort")
        failed = len(load.failures)
        wait_for(lambda: len(load.answers) > count + 40, "more requests after the abort")
        assert len(load.failures) == failed  # none failed since
    finally:
        load.stop()
    assert load.failures and all(f.startswith("400") for f in load.failures), load.failures[:3]
    ended = [c for c in alice.history("split")["changes"] if c["step"] == "alias_deleted"]
    assert ended[-1]["actor"] is None and ended[-1]["level"] == "error"
    assert "aborted by mlhub: its error rate was" in ended[-1]["message"]
    assert "CanaryCheck.max_error_rate_increase" in ended[-1]["message"]


def test_the_cli_and_the_notebook_start_show_and_abort_a_canary(hub, versions):
    v1, _ = versions

    def cli(*args):
        return models_cli(hub, hub.alice, "canary", "split", *args)

    code, out, err = cli("--version", v1[:20], "--percent", "10")
    assert code == 0, err
    assert f"canary {v1.removeprefix('sha256:')[:12]} gets 10% of the requests" in out
    assert out.splitlines()[1].split() == [
        "ARM",
        "REQUESTS",
        "ERRORS",
        "ERROR",
        "RATE",
        "P50",
        "MS",
        "P95",
        "MS",
    ]
    code, out, err = cli("--version", v1)
    assert code == 1 and "needs both --version and --percent" in err
    alice = client(hub, hub.alice)
    status = notebook_canary("split", publisher=alice)
    assert status["version"] == v1 and status["percent"] == 10.0
    assert notebook_canary("split", abort=True, publisher=alice) is None
    assert alice.get("split")["canary"] is None
    assert set(sample(hub, 50)) == {2.0}
    code, _, err = cli("--abort")
    assert code == 1 and "no canary" in err
