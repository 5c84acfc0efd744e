"""The publisher against real processes: a real ``mlhub up`` (JupyterHub with mlhub's own
configuration, accounts and login, real tokens and scopes), configurable-http-proxy from npm, and
uWSGI serving processes started by the LocalDeployer (the ``hub`` fixture is in conftest.py).

Every request to a model goes through the proxy at ``/models/<user>/<name>/...``, as users'.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.dummy import DummyRegressor
from support.embedded_hub import MLHUB, alive, wait_for
from support.publishing import client, constant_bundle, predict, processes_serving

from mlhub.bundle import pack, save_bundle
from mlhub.errors import DeployError, Forbidden

pytestmark = pytest.mark.component


def api(hub, method, path, token, **kwargs):
    headers = {"Authorization": f"token {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.request(method, hub.publisher_url + path, headers=headers, timeout=60, **kwargs)


def test_publish_and_predict_with_token_and_key(hub, tmp_path):
    model = client(hub, hub.alice).publish(constant_bundle(tmp_path / "v1", 1.0), "iris")
    assert model["status"] == "ready" and model["url"] == f"{hub.url}models/alice/iris/"
    # forked from the fork server, which imported the libraries once (LocalDeployer.fork_server)
    assert "forked from the fork server" in client(hub, hub.alice).logs("iris")

    resp = predict(hub, "alice", "iris", hub.alice)
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == [1.0]

    key = client(hub, hub.alice).create_key("iris", "component test")["key"]
    # serving processes look at the access file about once a second
    resp = wait_for(lambda: predict(hub, "alice", "iris", key) or None, "the key to be accepted")
    assert resp.json()["predictions"] == [1.0]


def test_others_get_403_and_nobody_401(hub, tmp_path):
    client(hub, hub.alice).publish(constant_bundle(tmp_path / "v1", 1.0), "private")
    bob = client(hub, hub.bob)
    for action in (
        lambda: bob.publish(constant_bundle(tmp_path / "bob", 2.0), "alice/private"),
        lambda: bob.rollback("alice/private"),
        lambda: bob.scale("alice/private", 2),
        lambda: bob.delete("alice/private"),
    ):
        with pytest.raises(Forbidden):
            action()
    assert predict(hub, "alice", "private", hub.bob).status_code == 403
    assert predict(hub, "alice", "private", None).status_code == 401
    assert predict(hub, "alice", "private", "mlhk_not-a-key").status_code in (401, 403)
    # each refusal is one line in the model's log, with its code and no credential
    logged = [
        json.loads(line.split("request ", 1)[1])
        for line in client(hub, hub.alice).logs("private").splitlines()
        if "mlhub.serving.requests: request {" in line
    ]
    assert [(e["status"], e["route"]) for e in logged[-3:]] == [
        (403, "/v1/predict"),
        (401, "/v1/predict"),
        (logged[-1]["status"], "/v1/predict"),
    ]
    assert {e["code"] for e in logged[-3:]} <= {"forbidden", "unauthorized"}
    assert "mlhk_not-a-key" not in client(hub, hub.alice).logs("private")
    assert api(hub, "GET", "api/models", None).status_code == 401
    assert api(hub, "GET", "api/models/alice/private", hub.bob).status_code == 403
    # a token without the publisher's scope
    narrow = hub.token("alice", hub.passwords["alice"], scopes=["read:users:name!user=alice"])
    resp = api(hub, "GET", "api/models", narrow)
    assert resp.status_code == 403 and "custom:mlhub:models" in resp.json()["error"]
    # still alice's, still serving
    assert predict(hub, "alice", "private", hub.alice).json()["predictions"] == [1.0]


def test_sharing_lets_bob_call_the_model(hub, tmp_path):
    alice = client(hub, hub.alice)
    alice.publish(constant_bundle(tmp_path / "v1", 1.0), "shared")
    assert predict(hub, "alice", "shared", hub.bob).status_code == 403
    alice.share("shared", users=["bob"])
    resp = wait_for(lambda: predict(hub, "alice", "shared", hub.bob) or None, "bob to be let in")
    assert resp.json()["predictions"] == [1.0]
    with pytest.raises(Forbidden):
        client(hub, hub.bob).scale("alice/shared", 2)
    alice.share("shared")
    wait_for(lambda: predict(hub, "alice", "shared", hub.bob).status_code == 403, "bob out again")


def test_invalid_name_and_oversized_upload(hub, tmp_path):
    gz = {"Content-Type": "application/gzip"}
    data = pack(constant_bundle(tmp_path / "b", 1.0))
    resp = api(hub, "POST", "api/models/alice/Bad_Name/versions", hub.alice, data=data, headers=gz)
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_name"

    big = os.urandom(2_000_000)
    resp = api(hub, "POST", "api/models/alice/big/versions", hub.alice, data=big, headers=gz)
    assert resp.status_code == 413
    assert "1000000 bytes" in resp.json()["error"]


def test_corrupt_pickle_is_refused_and_the_live_version_keeps_serving(hub, tmp_path):
    alice = client(hub, hub.alice)
    v1 = alice.publish(constant_bundle(tmp_path / "v1", 1.0), "sturdy")["current_version"]
    broken = constant_bundle(tmp_path / "broken", 2.0)
    (broken / "model" / "model.pkl").write_bytes(b"\x80\x04this is not a pickle")
    resp = api(
        hub,
        "POST",
        "api/models/alice/sturdy/versions",
        hub.alice,
        data=pack(broken),
        headers={"Content-Type": "application/gzip"},
    )
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "invalid_bundle" and "cannot serve" in body["error"]
    model = alice.get("sturdy")
    assert model["current_version"] == v1 and len(model["versions"]) == 1
    assert predict(hub, "alice", "sturdy", hub.alice).json()["predictions"] == [1.0]
    assert alice.events("sturdy")[-1]["step"] == "failed"


def test_rollback_and_scale(hub, tmp_path):
    alice = client(hub, hub.alice)
    v1 = alice.publish(constant_bundle(tmp_path / "v1", 1.0), "roll")["current_version"]
    v2 = alice.publish(constant_bundle(tmp_path / "v2", 2.0), "roll")["current_version"]
    assert v2 != v1
    assert predict(hub, "alice", "roll", hub.alice).json()["predictions"] == [2.0]

    assert alice.rollback("roll", v1)["current_version"] == v1
    assert predict(hub, "alice", "roll", hub.alice).json()["predictions"] == [1.0]
    assert alice.rollback("roll")["current_version"] == v2  # "previous"
    assert predict(hub, "alice", "roll", hub.alice).json()["predictions"] == [2.0]

    model = alice.scale("roll", 3)
    assert model["replicas"] == 3
    (instance,) = model["instances"]
    assert instance["workers"] == 3 and instance["version"] == v2 and alive(instance["pid"])
    assert predict(hub, "alice", "roll", hub.alice).json()["predictions"] == [2.0]


def test_delete_removes_route_and_processes(hub, tmp_path):
    alice = client(hub, hub.alice)
    model = alice.publish(constant_bundle(tmp_path / "v1", 1.0), "doomed")
    pid = model["instances"][0]["pid"]
    bundles = hub.data_dir / "models" / "alice" / "doomed"
    assert processes_serving(bundles)

    alice.delete("doomed")
    resp = predict(hub, "alice", "doomed", hub.alice)
    assert resp.status_code == 404 and "no model alice/doomed" in resp.json()["error"]
    assert api(hub, "GET", "api/models/alice/doomed", hub.alice).status_code == 404
    wait_for(lambda: not alive(pid), "the serving process to exit")
    assert processes_serving(bundles) == []
    assert not bundles.exists()


def test_browsers_log_in_with_the_hub_and_see_their_models(hub, tmp_path):
    client(hub, hub.alice).publish(constant_bundle(tmp_path / "v1", 1.0), "browsed")
    first = requests.get(hub.publisher_url, allow_redirects=False, timeout=30)
    assert first.status_code == 302 and "/hub/api/oauth2/authorize" in first.headers["Location"]
    # log in through the hub's login form (mlhub's accounts), then follow the OAuth dance back
    browser = hub.login("alice", hub.passwords["alice"])
    assert browser.login_response.url == hub.url + "hub/spawn"
    page = browser.get(hub.publisher_url)  # the Models page, not JSON (issue 14)
    assert page.url == hub.publisher_url and page.headers["Content-Type"].startswith("text/html")
    assert 'href="/services/mlhub-publisher/models/alice/browsed"' in page.text
    resp = browser.get(hub.publisher_url + "api/models")  # the API takes the login too
    assert "browsed" in [m["name"] for m in resp.json()["models"]]
    # a cookie alone does not authorize changes (no xsrf token): 401, nothing deleted
    assert browser.delete(hub.publisher_url + "api/models/alice/browsed").status_code == 401
    assert client(hub, hub.alice).get("browsed")["status"] == "ready"


def test_batching_is_set_per_model_at_publish(hub, tmp_path):
    env = {**os.environ, "MLHUB_URL": hub.url, "MLHUB_TOKEN": hub.alice}
    bundle = constant_bundle(tmp_path / "v1", 3.0)
    publish = [MLHUB, "models", "publish", str(bundle), "--name", "batched"]
    done = subprocess.run(
        [*publish, "--batching", "on", "--batch-max-size", "8"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    model = client(hub, hub.alice).get("batched")
    assert model["batching"] == {"max_size": 8, "max_wait_ms": 2}
    (instance,) = model["instances"]
    # the serving process got the settings (its log says its uWSGI options) and its workers
    # run 8 threads each (one per row a batch holds)
    logged = client(hub, hub.alice).logs("batched")
    assert "MLHUB_BATCHING=on" in logged and "MLHUB_BATCH_MAX_SIZE=8" in logged
    assert "'--threads', '8'" in logged
    threads = [
        int(re.search(r"Threads:\s+(\d+)", status.read_text()).group(1))
        for status in Path("/proc").glob("[0-9]*/status")
        if re.search(rf"PPid:\s+{instance['pid']}\n", status.read_text())
    ]
    assert max(threads) >= 8, threads
    rows = [[float(i), 0.0] for i in range(5)]
    assert predict(hub, "alice", "batched", hub.alice, rows).json()["predictions"] == [3.0] * 5
    shown = subprocess.run(
        [MLHUB, "models", "show", "batched"], env=env, capture_output=True, text=True
    )
    assert "batching: on (8 rows, 2 ms)" in shown.stdout, shown.stderr


class _Pause:
    """Unpickles as ``time.sleep(seconds)``: a model file that takes that long to load."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __reduce__(self):
        import time

        return (time.sleep, (self.seconds,))


class _SlowToLoad:
    """Pickles as ``(pause, model)[1]``: the model itself, after a pause while it loads
    (only the standard library and scikit-learn are needed to unpickle it)."""

    def __init__(self, model, seconds):
        self.model, self.seconds = model, seconds

    def predict(self, rows):
        return self.model.predict(rows)

    def __reduce__(self):
        import operator

        return (operator.getitem, ((_Pause(self.seconds), self.model), 1))


def test_a_model_slower_to_load_than_the_proxy_default_still_publishes(hub, tmp_path):
    """The upload waits while the new version loads (its readiness is the load check); the
    proxy in front must wait as long, not cut the request at tornado's 20 s default."""
    model = DummyRegressor(strategy="constant", constant=7.0).fit(np.zeros((2, 2)), [0, 0])
    bundle = tmp_path / "slow"
    save_bundle(_SlowToLoad(model, 25), bundle, name="slow", example=[[0.0, 0.0]])
    published = client(hub, hub.alice).publish(bundle, "slow")
    assert published["status"] == "ready"
    assert predict(hub, "alice", "slow", hub.alice).json()["predictions"] == [7.0]


class Ballast:
    """Unpickles as ``numpy.ones(n)``: memory the serving process really allocates and writes
    when it loads the model (the pickle names ``numpy.ones``, not this class)."""

    def __init__(self, mib):
        self.n = mib * 2**20 // 8

    def __reduce__(self):
        return (np.ones, (self.n,))


def ballast_bundle(path, mib, name):
    """A model predicting 5.0 whose loading needs ``mib`` MiB besides the runtime's own."""
    model = DummyRegressor(strategy="constant", constant=5.0).fit(np.zeros((2, 2)), [0, 0])
    model.ballast = Ballast(mib)
    save_bundle(model, path, name=name, example=[[0.0, 0.0]])
    return path


def cgroup_limits(pid):
    """(memory limit in bytes, CPU quota in CPUs or None) of the cgroups ``pid`` runs in."""
    groups = dict(
        line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    )
    root = Path("/sys/fs/cgroup")
    if "memory" in groups:  # v1
        memory = root / "memory" / groups["memory"].lstrip("/")
        cpu = root / "cpu" / groups.get("cpu", "/").lstrip("/")
        quota = int((cpu / "cpu.cfs_quota_us").read_text())
        period = int((cpu / "cpu.cfs_period_us").read_text())
        return int((memory / "memory.limit_in_bytes").read_text()), (
            quota / period if quota > 0 else None
        )
    group = root / groups[""].lstrip("/")
    quota, period = (group / "cpu.max").read_text().split()
    return int((group / "memory.max").read_text()), (
        None if quota == "max" else int(quota) / int(period)
    )


def test_memory_limit_holds_the_model_and_going_over_it_is_refused_saying_so(hub, tmp_path):
    """A model published with ``memory_limit`` and ``cpu_limit`` serves in its own cgroup with
    those limits (per replica, so twice for two); one whose loading needs more memory than its
    limit is killed by the kernel, and its publish is refused saying so, with nothing left
    running."""
    alice = client(hub, hub.alice)
    limits = {"memory_limit": "400Mi", "cpu_limit": "500m"}
    alice.publish(
        ballast_bundle(tmp_path / "fits", 16, "fits"), "fits", workers=2, resources=limits
    )
    (instance,) = alice.get("fits")["instances"]
    assert cgroup_limits(instance["pid"]) == (2 * 400 * 2**20, 1.0)
    assert predict(hub, "alice", "fits", hub.alice).json()["predictions"] == [5.0]

    with pytest.raises(DeployError) as caught:
        alice.publish(
            ballast_bundle(tmp_path / "greedy", 800, "greedy"),
            "greedy",
            workers=1,
            resources={"memory_limit": "400Mi"},
        )
    message = caught.value.message
    assert "killed it (or one of its processes) for using more memory" in message, message
    assert "the model's memory_limit (400Mi per replica)" in message, message
    assert processes_serving(hub.data_dir / "models" / "alice" / "greedy") == []
    assert predict(hub, "alice", "fits", hub.alice).json()["predictions"] == [5.0]
