"""The non-negotiables, against real processes: a new version replaces the old one without a
failed request; a crashed serving process comes back by itself; a killed publisher loses
nothing and re-adopts what runs; a restarted hub serves the models again.

Nothing here asserts how long anything takes: waits only guard against hanging.
"""

import os
import signal

import pytest
from support.embedded_hub import alive, wait_for
from support.publishing import constant_bundle, live_instance, predict, steps
from support.rolling_update import roll_under_load

pytestmark = [pytest.mark.component, pytest.mark.slow]


def test_rolling_update_under_continuous_requests_fails_none(hub, tmp_path):
    hub.client.publish(constant_bundle(tmp_path / "v1", 1.0), "rolling")
    roll_under_load(hub, "rolling", constant_bundle(tmp_path / "v2", 2.0))


def test_killed_serving_process_comes_back_by_itself(hub, tmp_path):
    hub.client.publish(constant_bundle(tmp_path / "v1", 3.0), "phoenix")
    old = live_instance(hub, "phoenix")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: "restarted" in steps(hub, "phoenix"), "the supervisor to restart it")
    wait_for(lambda: live_instance(hub, "phoenix")["pid"] != old, "the new pid in the store")
    assert not alive(old)
    assert alive(live_instance(hub, "phoenix")["pid"])
    resp = wait_for(lambda: predict(hub, "alice", "phoenix", hub.alice), "predictions again")
    assert resp.json()["predictions"] == [3.0]
    assert steps(hub, "phoenix")[-2:] == ["restarting", "restarted"]


def test_killed_publisher_loses_nothing_and_adopts_what_runs(hub, tmp_path):
    model = hub.client.publish(constant_bundle(tmp_path / "v1", 4.0), "adoptee")
    pid = live_instance(hub, "adoptee")["pid"]
    key = hub.client.create_key("adoptee", "before the crash")["key"]
    wait_for(lambda: predict(hub, "alice", "adoptee", key), "the key to be accepted")

    publisher = hub.kill_publisher()
    # the model does not need the publisher to serve
    assert predict(hub, "alice", "adoptee", hub.alice).json()["predictions"] == [4.0]

    # JupyterHub restarts a managed service that exited
    hub.wait_publisher_restarted(publisher)
    wait_for(lambda: "adopted" in steps(hub, "adoptee"), "the publisher to adopt the model")
    after = hub.client.get("adoptee")
    assert live_instance(hub, "adoptee")["pid"] == pid and alive(pid)
    assert after["current_version"] == model["current_version"]
    assert after["versions"] == model["versions"]
    assert predict(hub, "alice", "adoptee", key).json()["predictions"] == [4.0]


def test_restarted_hub_serves_the_models_again(hub, tmp_path):
    model = hub.client.publish(constant_bundle(tmp_path / "v1", 5.0), "survivor")
    pid = live_instance(hub, "survivor")["pid"]
    assert hub.stop() == 0
    assert not alive(pid), "the publisher stops its models when the hub stops it"
    # ... itself: mlhub up, which stops whatever is left below it, found nothing left
    assert "stopping leftover process" not in hub.output
    hub.start()
    resp = wait_for(lambda: predict(hub, "alice", "survivor", hub.alice), "predictions again")
    assert resp.json()["predictions"] == [5.0]
    assert hub.client.get("survivor")["current_version"] == model["current_version"]
    assert steps(hub, "survivor")[-2:] == ["restarting", "restarted"]
