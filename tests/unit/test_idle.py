"""When idle models sleep, as the publisher decides it: its REST API over a real tornado server
with the fake hub and deployer of ``support.publisher_api`` (fakes for the logic only), and the
proxy's routing table given by a fake ``ProxyRoutes`` (what configurable-http-proxy answers:
``last_activity`` per route). The real sleep and wake, through the proxy, are in
tests/component/test_idle_hub.py and tests/cluster/test_models_on_cluster.py."""

import asyncio
import datetime
import time

import pytest
from support.publisher_api import Api

from mlhub.deployers.base import ModelRef
from mlhub.deployers.routes import ProxyRoutes
from mlhub.errors import DeployError, NotReady
from mlhub.publisher.idle import last_activity

NOW = 1_800_000_000.0


class Routes(ProxyRoutes):
    """The proxy's table: every prefix last active ``idle[prefix]`` seconds before ``NOW``."""

    def __init__(self, **idle):
        super().__init__()
        self.idle = idle

    async def get_all(self):
        return {
            prefix: {"target": "http://127.0.0.1:1", "last_activity": stamp(NOW - seconds)}
            for prefix, seconds in self.idle.items()
        }


def stamp(when):
    """An instant as configurable-http-proxy writes it (JavaScript's toISOString)."""
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
async def api(tmp_path):
    async with Api.running(tmp_path) as api:
        yield api


def test_last_activity_is_the_latest_of_a_units_routes():
    ref = ModelRef("alice", "iris")
    routes = {
        "/models/alice/iris": {"last_activity": stamp(NOW - 100)},
        "/models/alice/iris@production": {"last_activity": stamp(NOW - 5)},
        "/models/alice/other": {"last_activity": stamp(NOW)},
    }
    assert last_activity(routes, ref) == pytest.approx(NOW - 5)
    assert last_activity(routes, ref.with_alias("staging")) is None  # no route: not judged


async def test_sleep_after_is_a_setting_with_the_platforms_default(api):
    await api.publish("iris")
    await api.settle()
    status, model = await api.call("GET", "api/models/alice/iris")
    assert model["sleep_after"] == 900  # IdlePolicy.sleep_after
    status, body = await api.call("PATCH", "api/models/alice/iris", body={"sleep_after": 60})
    assert status == 200 and body["event_id"] is None  # no restart
    assert body["model"]["sleep_after"] == 60
    assert [c for c in api.deployer.calls if c[0] == "deploy"] == [
        ("deploy", "alice/iris", body["model"]["current_version"], 1)
    ]
    status, body = await api.call("PATCH", "api/models/alice/iris", body={"sleep_after": None})
    assert body["model"]["sleep_after"] == 900
    status, history = await api.call("GET", "api/models/alice/iris/history")
    said = [c["message"] for c in history["changes"] if c["step"] == "sleep_setting"]
    assert said == [
        "sleeps after 60 s without a request, set by alice",
        "sleeps the platform's default, set by alice",
    ]
    for bad in (-1, "soon", True, 1.5, 10**9):
        status, body = await api.call("PATCH", "api/models/alice/iris", body={"sleep_after": bad})
        assert status == 400 and body["detail"]["field"] == "sleep_after", bad
        assert "0: never" in body["error"]
    status, body = await api.call("PATCH", "api/models/alice/iris", body={"sleep": 1})
    assert status == 400 and "inference_log, sleep_after" in body["error"]


async def test_idle_units_sleep_and_busy_or_warm_ones_do_not(api):
    for name in ("idle", "busy", "warm"):
        await api.publish(name, payload=name.encode())
    await api.settle()
    await api.call("PATCH", "api/models/alice/warm", body={"sleep_after": 0})
    await api.call("PATCH", "api/models/alice/idle", body={"sleep_after": 300})
    api.deployer.routes = Routes(
        **{"/models/alice/idle": 301, "/models/alice/busy": 899, "/models/alice/warm": 10**6}
    )
    await api.manager.sleep_idle(now=NOW)
    assert api.deployer.sleeping == {ModelRef("alice", "idle")}
    status, model = await api.call("GET", "api/models/alice/idle")
    assert model["status"] == "sleeping" and model["aliases"][0]["asleep"] is True
    status, events = await api.call("GET", "api/models/alice/idle/events")
    assert events["events"][-1]["step"] == "asleep"
    assert "no request for 301 s (sleep after 300 s)" in events["events"][-1]["message"]
    # asleep already: not put to sleep again
    await api.manager.sleep_idle(now=NOW)
    assert [c for c in api.deployer.calls if c[0] == "sleep"] == [("sleep", "alice/idle")]


async def test_a_model_with_a_canary_or_a_shadow_never_sleeps(api):
    await api.publish("iris")
    await api.publish("iris", payload=b"v2", query="?alias=staging")
    await api.settle()
    status, body = await api.call(
        "PUT", "api/models/alice/iris/canary", body={"version": "staging", "percent": 10}
    )
    assert status == 202, body
    await api.settle()
    api.deployer.routes = Routes(
        **{"/models/alice/iris": 10**6, "/models/alice/iris@staging": 10**6}
    )
    await api.manager.sleep_idle(now=NOW)
    assert api.deployer.sleeping == set()


async def test_an_alias_sleeps_on_its_own(api):
    await api.publish("iris")
    await api.publish("iris", payload=b"v2", query="?alias=staging")
    await api.settle()
    api.deployer.routes = Routes(**{"/models/alice/iris": 5, "/models/alice/iris@staging": 10**4})
    await api.manager.sleep_idle(now=NOW)
    assert api.deployer.sleeping == {ModelRef("alice", "iris", "staging")}
    status, model = await api.call("GET", "api/models/alice/iris")
    assert model["status"] == "ready"
    assert [(a["name"], a["asleep"]) for a in model["aliases"]] == [
        ("production", False),
        ("staging", True),
    ]
    # and the other way round: an alias still sleeps after production fell asleep
    await api.manager.sleep_unit(api.manager.get("alice", "iris"), None, 1000)
    await api.publish("iris", payload=b"v3", query="?alias=qa")
    await api.settle()
    api.deployer.routes = Routes(**{"/models/alice/iris@qa": 10**4})
    await api.manager.sleep_idle(now=NOW)
    assert ModelRef("alice", "iris", "qa") in api.deployer.sleeping


async def test_a_wake_starts_the_unit_once_for_every_waiting_request(api):
    await api.publish("iris")
    await api.settle()
    ref = ModelRef("alice", "iris")
    await api.manager.sleep_unit(api.manager.get("alice", "iris"), None, 1000)
    model = api.manager.get("alice", "iris")
    await asyncio.gather(*(api.manager.wake_unit(model) for _ in range(5)))
    assert [c for c in api.deployer.calls if c[0] == "wake"] == [("wake", "alice/iris")]
    assert not api.deployer.asleep(ref)
    status, body = await api.call("GET", "api/models/alice/iris")
    assert body["status"] == "ready"
    status, events = await api.call("GET", "api/models/alice/iris/events")
    steps = [e["step"] for e in events["events"]]
    assert steps[-4:] == ["asleep", "waking", "waking", "awake"]


async def test_a_failed_wake_is_a_503_with_the_reason_and_is_not_retried_at_once(api, monkeypatch):
    await api.publish("iris")
    await api.settle()
    model = api.manager.get("alice", "iris")
    await api.manager.sleep_unit(model, None, 1000)
    tries = []

    async def refuse(ref, progress):
        tries.append(ref)
        raise DeployError("the model file is missing")

    api.deployer.wake = refuse
    for _ in range(2):
        with pytest.raises(NotReady, match="could not be woken: the model file is missing"):
            await api.manager.wake_unit(model)
    assert len(tries) == 1  # the second caller got the same answer at once
    status, body = await api.call("GET", "api/models/alice/iris")
    assert body["status"] == "sleeping"  # consistent: still asleep, woken by the next try
    later = time.monotonic() + api.manager.idle_policy.wake_retry_seconds + 1
    monkeypatch.setattr("mlhub.publisher.idle.time.monotonic", lambda: later)
    with pytest.raises(NotReady):
        await api.manager.wake_unit(model)
    assert len(tries) == 2


async def test_a_republish_of_the_same_version_wakes_a_sleeping_model(api):
    await api.publish("iris")
    await api.settle()
    await api.manager.sleep_unit(api.manager.get("alice", "iris"), None, 1000)
    status, body = await api.publish("iris")
    assert status == 202, body  # not "already live"
    await api.settle()
    assert api.deployer.sleeping == set()
    status, body = await api.call("GET", "api/models/alice/iris")
    assert body["status"] == "ready"


async def test_a_sleeping_model_sleeps_on_after_a_publisher_restart(api, tmp_path):
    await api.publish("iris")
    await api.publish("iris", payload=b"v2", query="?alias=staging")
    await api.settle()
    model = api.manager.get("alice", "iris")
    await api.manager.sleep_unit(model, None, 1000)
    await api.manager.sleep_unit(model, "staging", 1000)
    async with Api.running(tmp_path) as restarted:
        assert restarted.deployer.sleeping == {
            ModelRef("alice", "iris"),
            ModelRef("alice", "iris", "staging"),
        }
        status, body = await restarted.call("GET", "api/models/alice/iris")
        assert body["status"] == "sleeping"


async def test_a_publish_sets_when_the_model_sleeps_and_later_versions_keep_it(api):
    status, body = await api.publish("warm", query="?sleep_after=never")
    assert status == 202 and body["model"]["sleep_after"] == 0
    await api.settle()
    status, body = await api.publish("warm", payload=b"v2")
    assert body["model"]["sleep_after"] == 0  # not mentioned: kept
    await api.settle()
    status, body = await api.publish("warm", payload=b"v3", query="?sleep_after=default")
    assert body["model"]["sleep_after"] == 900
    await api.settle()
    status, body = await api.publish("warm", payload=b"v4", query="?sleep_after=soon")
    assert status == 400 and body["detail"]["field"] == "sleep_after"


async def test_a_canary_or_a_shadow_of_a_sleeping_model_wakes_production_first(api):
    """Their traffic is production's: the split needs its route, the shadow its samples."""
    await api.publish("iris")
    await api.publish("iris", payload=b"v2", query="?alias=staging")
    await api.settle()
    for what, body in (("canary", {"percent": 10}), ("shadow", {"percent": 50})):
        await api.manager.sleep_unit(api.manager.get("alice", "iris"), None, 1000)
        api.deployer.calls.clear()
        status, answer = await api.call(
            "PUT", f"api/models/alice/iris/{what}", body={"version": "staging", **body}
        )
        assert status == 202, answer
        await api.settle()
        assert api.deployer.calls[0] == ("wake", "alice/iris"), what
        status, model = await api.call("GET", "api/models/alice/iris")
        assert model["status"] == "ready" and model[what]["version"], what
        await api.call("DELETE", f"api/models/alice/iris/{what}")
        await api.settle()
