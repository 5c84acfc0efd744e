"""Aliases on a real ``mlhub up``, called through the public URL as users call them: alice
publishes a candidate to ``staging`` while production keeps serving, moves aliases under
continuous requests with no failed one, promotes staging, and reads who moved what in the
history; bob cannot move or call her aliases until she shares the model; a publisher killed
with SIGKILL adopts every alias's processes. The R runtime answers an alias's URL too."""

import json

import pytest
import requests
from support.embedded_hub import alive, wait_for
from support.publishing import client, constant_bundle, models_cli, predict
from support.rmodels import constant_bundle as r_constant_bundle
from support.rolling_update import Load

from mlhub import rlang
from mlhub.errors import BadRequest, Forbidden, NotFound
from mlhub.extension.client import publish as notebook_publish
from mlhub.extension.client import set_alias

pytestmark = [pytest.mark.component, pytest.mark.slow]


def answer(hub, path, token):
    """The first prediction of alice's model at ``path`` (``name`` or ``name@alias``)."""
    resp = predict(hub, "alice", path, token)
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"][0]


def unit_pids(hub, name, alias):
    """Pids of the live instance of alice's ``name@alias`` (its run-state file)."""
    run = hub.data_dir / "run" / "alice" / f"{name}@{alias}.json"
    if not run.exists():
        return []
    live = json.loads(run.read_text())["live"]
    return [live["pid"]] if live else []


@pytest.fixture(scope="module")
def versions(hub, tmp_path_factory):
    """alice's ``aliased``: production serves 1.0; 2.0 was published to staging."""
    base = tmp_path_factory.mktemp("aliased")
    alice = client(hub, hub.alice)
    v1 = alice.publish(constant_bundle(base / "v1", 1.0, "aliased"), "aliased")["current_version"]
    model = alice.publish(constant_bundle(base / "v2", 2.0, "aliased"), "aliased", alias="staging")
    (v2,) = [a["version"] for a in model["aliases"] if a["name"] == "staging"]
    return v1, v2


def test_a_version_published_to_staging_leaves_production_serving(hub, versions):
    v1, v2 = versions
    assert answer(hub, "aliased", hub.alice) == 1.0
    assert answer(hub, "aliased@production", hub.alice) == 1.0
    assert answer(hub, "aliased@staging", hub.alice) == 2.0
    model = client(hub, hub.alice).get("aliased")
    assert model["current_version"] == v1
    aliases = {a["name"]: a for a in model["aliases"]}
    assert [a["name"] for a in model["aliases"]] == ["production", "staging"]
    assert aliases["staging"]["version"] == v2
    assert aliases["staging"]["url"] == f"{hub.url}models/alice/aliased@staging/"
    # the OIP surface and the metadata answer at the alias's URL too
    meta = requests.get(
        f"{hub.url}models/alice/aliased@staging/v2/models/aliased",
        headers={"Authorization": f"token {hub.alice}"},
        timeout=30,
    )
    assert meta.status_code == 200 and meta.json()["name"] == "aliased"


def test_alias_moves_under_continuous_requests_fail_none(hub, versions):
    v1, v2 = versions
    alice = client(hub, hub.alice)
    staging = Load(hub, "aliased@staging")
    production = Load(hub, "aliased")
    staging.start()
    production.start()
    try:
        wait_for(lambda: staging.seen(2.0, 20) and production.seen(1.0, 20), "both aliases")
        alice.set_alias("aliased", "staging", v1)  # staging back to 1.0
        wait_for(lambda: staging.seen(1.0, 20), "staging answering 1.0")
        alice.set_alias("aliased", "staging", v2[:15])  # a start of the id is enough
        wait_for(lambda: staging.answers[-20:] == [2.0] * 20, "staging answering 2.0 again")
        # promote: production takes the version staging serves
        alice.set_alias("aliased", "production", "staging")
        wait_for(lambda: production.seen(2.0, 20), "production answering 2.0")
    finally:
        staging.stop()
        production.stop()
    assert staging.failures == [] and production.failures == [], (
        staging.failures,
        production.failures,
    )
    switch = production.answers.index(2.0)
    assert set(production.answers[:switch]) == {1.0}
    assert set(production.answers[switch:]) == {2.0}
    assert answer(hub, "aliased@production", hub.alice) == 2.0
    assert alice.get("aliased")["current_version"] == v2
    # moving an alias where it is changes nothing
    unchanged = alice.set_alias("aliased", "staging", v2, wait=False)
    assert unchanged["event_id"] is None

    history = alice.history("aliased")
    moves = [(s["alias"], s["version"]) for s in history["served"]]
    assert moves == [
        ("production", v1),
        ("staging", v2),
        ("staging", v1),
        ("staging", v2),
        ("production", v2),
    ]
    asked = [c for c in history["changes"] if c["step"] == "requested"]
    assert [(c["alias"], c["actor"]) for c in asked] == [
        ("staging", "alice"),
        ("staging", "alice"),
        ("production", "alice"),
    ]
    assert "alias production to" in asked[-1]["message"]


def test_bob_neither_moves_nor_calls_alices_aliases_until_she_shares(hub, versions):
    v1, _ = versions
    bob = client(hub, hub.bob)
    with pytest.raises((Forbidden, NotFound)):
        bob.set_alias("alice/aliased", "staging", v1)
    with pytest.raises((Forbidden, NotFound)):
        bob.delete_alias("alice/aliased", "staging")
    assert predict(hub, "alice", "aliased@staging", hub.bob).status_code == 403
    assert predict(hub, "alice", "aliased@staging", None).status_code == 401
    alice = client(hub, hub.alice)
    alice.share("aliased", users=["bob"])
    try:
        wait_for(
            lambda: predict(hub, "alice", "aliased@staging", hub.bob).status_code == 200,
            "bob's call to the alias to be let in",
        )
        key = alice.create_key("aliased", "for staging")["key"]
        wait_for(
            lambda: predict(hub, "alice", "aliased@staging", key).status_code == 200,
            "the new key at the alias",
        )
        with pytest.raises(Forbidden):  # shared means calling, never moving
            bob.set_alias("alice/aliased", "staging", v1)
    finally:
        alice.share("aliased", users=[])


def test_bad_alias_requests_say_what_to_fix(hub, versions):
    v1, _ = versions
    alice = client(hub, hub.alice)
    with pytest.raises(BadRequest, match="lowercase letters"):
        alice.set_alias("aliased", "Staging!", v1)
    with pytest.raises(NotFound, match="no version or alias 'sha256:feed"):
        alice.set_alias("aliased", "qa", "sha256:feedfeedfeed")
    with pytest.raises(BadRequest, match="default alias"):
        alice.delete_alias("aliased", "production")
    with pytest.raises(NotFound, match="no alias 'qa'"):
        alice.delete_alias("aliased", "qa")
    missing = predict(hub, "alice", "aliased@nope", hub.alice)
    assert missing.status_code == 404
    assert "no alias 'nope'" in missing.json()["error"]
    assert "production, staging" in missing.json()["error"]


def test_a_deleted_alias_stops_its_processes_and_its_url(hub, versions, tmp_path):
    v1, _ = versions
    alice = client(hub, hub.alice)
    alice.set_alias("aliased", "qa", v1)
    assert answer(hub, "aliased@qa", hub.alice) == 1.0
    pids = unit_pids(hub, "aliased", "qa")
    assert pids and all(alive(p) for p in pids)
    alice.delete_alias("aliased", "qa")
    assert predict(hub, "alice", "aliased@qa", hub.alice).status_code == 404
    wait_for(lambda: not any(alive(p) for p in pids), "the alias's processes to stop")
    assert [a["name"] for a in alice.aliases("aliased")] == ["production", "staging"]
    deleted = [c for c in alice.history("aliased")["changes"] if c["step"] == "alias_deleted"]
    assert [(c["alias"], c["actor"]) for c in deleted] == [("qa", "alice")]


def test_the_cli_moves_and_lists_aliases(hub, versions):
    v1, _ = versions

    def cli(*args):
        return models_cli(hub, hub.alice, *args)

    code, out, err = cli("alias", "aliased", "beta", "--version", v1[:20])
    assert code == 0, err
    assert "beta" in out and v1.removeprefix("sha256:")[:12] in out
    assert answer(hub, "aliased@beta", hub.alice) == 1.0
    code, out, _ = cli("aliases", "aliased")
    assert [line.split()[0] for line in out.splitlines()] == [
        "ALIAS",
        "production",
        "beta",
        "staging",
    ]
    code, out, _ = cli("history", "aliased")
    assert "beta" in out
    code, _, err = cli("alias", "aliased", "beta", "--delete")
    assert code == 0, err
    code, _, err = cli("alias", "aliased", "production", "--delete")
    assert code == 1 and "default alias" in err


def test_killed_publisher_adopts_every_aliass_processes(hub, versions):
    pids = unit_pids(hub, "aliased", "staging")
    publisher = hub.kill_publisher()
    assert answer(hub, "aliased@staging", hub.alice) == 2.0  # serves without the publisher
    hub.wait_publisher_restarted(publisher)
    alice = client(hub, hub.alice)
    wait_for(
        lambda: any(
            e["step"] == "adopted" and e["alias"] == "staging" for e in alice.events("aliased")
        ),
        "the publisher to adopt staging",
    )
    assert unit_pids(hub, "aliased", "staging") == pids
    assert answer(hub, "aliased@staging", hub.alice) == 2.0


def test_the_notebook_publishes_to_an_alias(hub, tmp_path):
    from sklearn.dummy import DummyRegressor

    alice = client(hub, hub.alice)
    first = DummyRegressor(strategy="constant", constant=5.0).fit([[0.0, 0.0]], [0])
    second = DummyRegressor(strategy="constant", constant=6.0).fit([[0.0, 0.0]], [0])
    example = [[0.0, 0.0]]
    notebook_publish(first, "nb-aliased", example, publisher=alice, progress=lambda *a: None)
    result = notebook_publish(
        second, "nb-aliased", example, alias="staging", publisher=alice, progress=lambda *a: None
    )
    assert result.url == f"{hub.url}models/alice/nb-aliased@staging/"
    assert result.predict_url.endswith("nb-aliased@staging/v1/predict")
    assert answer(hub, "nb-aliased@staging", hub.alice) == 6.0
    assert answer(hub, "nb-aliased", hub.alice) == 5.0
    promoted = set_alias("nb-aliased", "production", "staging", publisher=alice)
    assert promoted["version"] == result.version
    assert answer(hub, "nb-aliased", hub.alice) == 6.0


def test_an_r_model_answers_at_its_alias(hub, tmp_path):
    if rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    alice = client(hub, hub.alice)
    alice.publish(r_constant_bundle(tmp_path / "r1", 7.0, "r-aliased"), "r-aliased")
    alice.publish(
        r_constant_bundle(tmp_path / "r2", 8.0, "r-aliased"), "r-aliased", alias="staging"
    )
    rows = [{"x": 0.0}]
    staging = predict(hub, "alice", "r-aliased@staging", hub.alice, rows)
    assert staging.status_code == 200, staging.text
    assert staging.json()["predictions"] == [8.0]
    assert predict(hub, "alice", "r-aliased", hub.alice, rows).json()["predictions"] == [7.0]
    assert predict(hub, "alice", "r-aliased@production", hub.alice, rows).json()["predictions"] == [
        7.0
    ]
