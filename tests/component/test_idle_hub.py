"""Idle models sleep and wake, on a real ``mlhub up``, called through the public URL as users
call them: a model with no request for its ``sleep_after`` releases its processes, and the next
request (or twenty at once) is held while it wakes and gets the model's answer; a stranger's
request wakes nothing; a model kept warm never sleeps; a wake that fails answers a JSON 503
saying why, and a republish serves again. No timing is asserted here: ``bench/density.py``
measures the wake."""

import concurrent.futures
import textwrap
import time

import pytest
import yaml
from support.embedded_hub import PUBLISHER_CONFIG, running_hub, wait_for
from support.publishing import client, constant_bundle, model_pids, models_cli, predict

pytestmark = [pytest.mark.component, pytest.mark.slow]

SLEEP_AFTER = 3  # seconds: the hub's default here, so tests see models fall asleep

IDLE_CONFIG = textwrap.dedent(
    f"""
    c.IdlePolicy.sleep_after = {SLEEP_AFTER}
    c.IdlePolicy.interval = 0.5
    c.IdlePolicy.wake_retry_seconds = 1
    """
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    config = PUBLISHER_CONFIG + IDLE_CONFIG
    with running_hub(tmp_path_factory.mktemp("hub"), config, ("alice", "bob")) as hub:
        yield hub


def publish(hub, tmp_path, name, value):
    return client(hub, hub.alice).publish(constant_bundle(tmp_path / name, value, name), name)


def asleep(hub, name):
    """Wait until alice's ``name`` sleeps; its model view."""

    def sleeping():
        model = client(hub, hub.alice).get(name)
        return model if model["status"] == "sleeping" else None

    return wait_for(sleeping, f"{name} to fall asleep", timeout=SLEEP_AFTER + 30)


def test_an_idle_model_sleeps_and_a_request_wakes_it_with_its_answer(hub, tmp_path):
    publish(hub, tmp_path, "napper", 4.0)
    assert predict(hub, "alice", "napper", hub.alice).json()["predictions"] == [4.0]
    model = asleep(hub, "napper")
    assert model["aliases"][0]["asleep"] is True
    assert model_pids(hub, "alice", "napper") == []  # nothing runs for it
    code, out, _ = models_cli(hub, hub.alice, "show", "napper")
    assert code == 0 and "napper  sleeping" in out
    assert f"sleeps:   after {SLEEP_AFTER} s without a request" in out

    answer = predict(hub, "alice", "napper", hub.alice)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [4.0]
    assert client(hub, hub.alice).get("napper")["status"] == "ready"
    assert model_pids(hub, "alice", "napper")
    events = client(hub, hub.alice).events("napper")
    assert [e["step"] for e in events[-5:]] == ["asleep", "waking", "waking", "waking", "awake"]
    assert events[-1]["message"].startswith("awake after ")


def test_twenty_requests_during_a_wake_are_all_answered_by_one_wake(hub, tmp_path):
    publish(hub, tmp_path, "crowd", 7.0)
    asleep(hub, "crowd")
    events_before = len(client(hub, hub.alice).events("crowd"))
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: predict(hub, "alice", "crowd", hub.alice), range(20)))
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    assert {tuple(a.json()["predictions"]) for a in answers} == {(7.0,)}
    new = [e["message"] for e in client(hub, hub.alice).events("crowd")[events_before:]]
    assert new.count("a request came: waking") == 1


def test_a_request_without_the_right_to_call_wakes_nothing(hub, tmp_path):
    publish(hub, tmp_path, "private", 1.0)
    asleep(hub, "private")
    anonymous = predict(hub, "alice", "private", None)
    assert anonymous.status_code == 401
    assert "Authorization: token" in anonymous.json()["error"]
    stranger = predict(hub, "alice", "private", hub.bob)
    assert stranger.status_code == 403, stranger.text
    assert client(hub, hub.alice).get("private")["status"] == "sleeping"
    assert model_pids(hub, "alice", "private") == []
    # an API key of the model wakes it, as it calls it
    key = client(hub, hub.alice).create_key("private", "a service")["key"]
    answer = predict(hub, "alice", "private", key)
    assert answer.status_code == 200 and answer.json()["predictions"] == [1.0]


def test_a_model_kept_warm_never_sleeps(hub, tmp_path):
    publish(hub, tmp_path, "warm", 2.0)
    client(hub, hub.alice).configure("warm", sleep_after=0)  # at once: it sleeps after 3 s
    code, out, err = models_cli(hub, hub.alice, "configure", "warm", "--sleep-after", "never")
    assert code == 0, err
    assert "sleeps never (kept warm)" in out
    pids = model_pids(hub, "alice", "warm")
    # a model published after it, with no request since either, falls asleep meanwhile
    publish(hub, tmp_path, "witness", 3.0)
    asleep(hub, "witness")
    time.sleep(3 * 0.5)  # three more idle checks
    model = client(hub, hub.alice).get("warm")
    assert model["status"] == "ready" and model["sleep_after"] == 0
    assert model_pids(hub, "alice", "warm") == pids


def test_a_failed_wake_is_a_json_503_saying_why_and_a_republish_serves_again(hub, tmp_path):
    model = publish(hub, tmp_path, "fragile", 5.0)
    asleep(hub, "fragile")
    unpacked = hub.data_dir / "models" / "alice" / "fragile" / model["current_version"][7:]
    manifest = yaml.safe_load((unpacked / "mlhub.yaml").read_text())
    (unpacked / manifest["model_file"]).unlink()  # what the wake must load

    answer = predict(hub, "alice", "fragile", hub.alice)
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert "fragile is asleep and could not be woken" in body["error"]
    assert body["code"] and "detail" in body
    assert client(hub, hub.alice).get("fragile")["status"] == "sleeping"  # consistent

    client(hub, hub.alice).publish(tmp_path / "fragile", "fragile")
    answer = predict(hub, "alice", "fragile", hub.alice)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [5.0]
