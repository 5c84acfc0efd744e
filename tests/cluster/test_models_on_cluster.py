"""Published models on a real Kubernetes 1.20 cluster (scripts/kube-cluster), called through the
hub's proxy as users call them: deploy, scale, a rolling update under load, a deleted pod
replaced, a publisher restart that loses nothing, rollback, a broken version that never
replaces a working one, the inference log, an alias moved under load, a canary split and
promoted, a failing canary aborted by itself, a shadow compared, a model asleep at zero replicas
woken through the proxy, and a delete that leaves no object behind.

The tests of this module run in order on one model, ``defect`` (each step starts from what the
previous one left), plus a second model, with its own resources, for the broken version.
Nothing asserts how long anything takes: waits only guard against hanging.
"""

import concurrent.futures

import numpy as np
import pytest
import requests
from sklearn.linear_model import LinearRegression
from support.embedded_hub import wait_for
from support.publishing import as_an_older_library_answered, constant_bundle, predict, steps
from support.rolling_update import Load, roll_under_load

from mlhub.bundle import load_manifest, save_bundle
from mlhub.deployers import kube_objects
from mlhub.deployers.base import ModelRef
from mlhub.errors import MlhubError

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HUB_CONFIG = """
c.IdlePolicy.interval = 1
"""

SELECTOR = f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', 'defect'))}"
STAGING = f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', 'defect', 'staging'))}"


def pods(hub, kube_api, ready_only=True):
    items = kube_api.items(f"/api/v1/namespaces/{hub.namespace}/pods", SELECTOR)
    if ready_only:
        items = [
            p
            for p in items
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
    return items


def answer(hub, token=None, name="defect"):
    resp = predict(hub, "alice", name, token or hub.alice)
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


def test_publish_deploys_and_predicts_through_the_proxy(kube_hub, kube_api, tmp_path):
    hub = kube_hub
    model = hub.client.publish(constant_bundle(tmp_path / "v1", 1.0), "defect")
    assert model["status"] == "ready"
    assert answer(hub) == [1.0]
    assert predict(hub, "alice", "defect", None).status_code == 401
    assert steps(hub, "defect")[-5:] == ["starting", "ready", "switched", "drained", "done"]

    # the objects, labelled with the model and its exact owner
    ns = hub.namespace
    (dep,) = kube_api.items(f"/apis/apps/v1/namespaces/{ns}/deployments", SELECTOR)
    assert dep["metadata"]["annotations"]["mlhub.io/owner"] == "alice"
    assert dep["metadata"]["annotations"]["mlhub.io/version"] == model["current_version"]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert len(kube_api.items(f"/api/v1/namespaces/{ns}/services", SELECTOR)) == 1
    assert len(kube_api.items(f"/api/v1/namespaces/{ns}/secrets", SELECTOR)) == 1
    # 1.20 serves no policy/v1: the PDB was made at the version discovery found
    assert (
        len(kube_api.items(f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets", SELECTOR))
        == 1
    )
    (pod,) = pods(hub, kube_api)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False

    # an API key reaches the pod through the Secret (kubelet refreshes secret volumes)
    key = hub.client.create_key("defect", "batch job")["key"]
    # (each serving worker re-reads the access file at most once a second: ask several times)
    wait_for(
        lambda: all(predict(hub, "alice", "defect", key).status_code == 200 for _ in range(4)),
        "the key to work in every worker",
    )
    assert answer(hub, key) == [1.0]


def test_scale_to_three_replicas(kube_hub, kube_api):
    hub = kube_hub
    model = hub.client.scale("defect", 3)
    assert model["replicas"] == 3
    ready = pods(hub, kube_api)
    assert len(ready) == 3
    # every pod serves the model itself, on its own address
    for pod in ready:
        url = f"http://{pod['status']['podIP']}:8080/models/alice/defect/readyz"
        assert requests.get(url, timeout=10).json()["version"] == model["current_version"]
    assert answer(hub) == [1.0]
    assert sum(i["state"] == "live" for i in hub.client.get("defect")["instances"]) == 3


def test_rolling_update_under_continuous_requests_fails_none(kube_hub, kube_api, tmp_path):
    hub = kube_hub
    before = {p["metadata"]["name"] for p in pods(hub, kube_api)}
    model = roll_under_load(hub, "defect", constant_bundle(tmp_path / "v2", 2.0))
    after = pods(hub, kube_api)
    assert len(after) == 3 and not before & {p["metadata"]["name"] for p in after}
    assert {p["metadata"]["annotations"]["mlhub.io/version"] for p in after} == {
        model["current_version"]
    }


def test_a_deleted_pod_is_replaced_and_serves(kube_hub, kube_api):
    hub = kube_hub
    victim = pods(hub, kube_api)[0]["metadata"]["name"]
    kube_api.request("DELETE", f"/api/v1/namespaces/{hub.namespace}/pods/{victim}")
    wait_for(
        lambda: (
            len(pods(hub, kube_api)) == 3
            and victim not in {p["metadata"]["name"] for p in pods(hub, kube_api)}
        ),
        "a replacement pod",
    )
    assert answer(hub) == [2.0]
    wait_for(lambda: "restarted" in steps(hub, "defect"), "the publisher to record it")
    assert steps(hub, "defect")[-2:] == ["restarting", "restarted"]


def test_publisher_restart_loses_nothing_and_adopts_the_pods(kube_hub, kube_api):
    hub = kube_hub
    model = hub.client.get("defect")
    names = {p["metadata"]["name"] for p in pods(hub, kube_api)}
    publisher = hub.kill_publisher()
    # models do not need the publisher to serve
    assert answer(hub) == [2.0]
    hub.wait_publisher_restarted(publisher)
    wait_for(lambda: "adopted" in steps(hub, "defect"), "the publisher to adopt the model")
    after = hub.client.get("defect")
    assert after["current_version"] == model["current_version"]
    assert after["versions"] == model["versions"] and after["replicas"] == 3
    assert {p["metadata"]["name"] for p in pods(hub, kube_api)} == names  # not redeployed
    assert answer(hub) == [2.0]


def test_rollback_is_one_call(kube_hub):
    hub = kube_hub
    v1 = hub.client.get("defect")["versions"][-1]["id"]
    model = hub.client.rollback("defect")
    assert model["current_version"] == v1
    assert answer(hub) == [1.0]


def test_a_version_that_does_not_load_never_replaces_the_working_one(kube_hub, kube_api, tmp_path):
    hub = kube_hub
    bundle = constant_bundle(tmp_path / "good", 5.0, name="fragile")
    # with its own resources: over the hub's (requests 50m CPU, 64Mi), what the publish gives
    hub.client.publish(bundle, "fragile", resources={"cpu": "100m", "memory_limit": "256Mi"})
    selector = f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', 'fragile'))}"
    (dep,) = kube_api.items(f"/apis/apps/v1/namespaces/{hub.namespace}/deployments", selector)
    (serving,) = dep["spec"]["template"]["spec"]["containers"]
    assert serving["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    broken = constant_bundle(tmp_path / "bad", 6.0, name="fragile")
    (broken / load_manifest(broken)["model_file"]).write_bytes(b"not a pickle")
    with pytest.raises(MlhubError) as failed:
        hub.client.publish(broken, "fragile")
    assert "the new version cannot serve" in failed.value.message
    assert answer(hub, name="fragile") == [5.0]
    hub.client.delete("fragile")


def test_answers_that_differ_from_the_notebook_never_take_traffic(kube_hub, tmp_path):
    """The parity check in the pods: a version whose answers differ from the notebook's (as
    another scikit-learn's would) is refused with the reason, and the live one keeps serving."""
    hub = kube_hub
    live = answer(hub)
    drifted = constant_bundle(tmp_path / "drifted", 7.0)
    as_an_older_library_answered(drifted, row=0, answer=7.5)
    with pytest.raises(MlhubError) as refused:
        hub.client.publish(drifted, "defect")
    assert "differ from the notebook's on 1 of 1 rows" in refused.value.message
    assert "scikit-learn 0.24.2 in the notebook" in refused.value.message
    assert answer(hub) == live


def test_the_inference_log_leaves_the_pods_for_the_publisher(kube_hub, kube_api, tmp_path):
    """A version published with its log on: its pods' serving container holds the model's log
    token (never the bundle token: the model's code runs there), and every request sent through
    the proxy is read back with its answer."""
    hub = kube_hub
    model = hub.client.publish(
        constant_bundle(tmp_path / "logged", 9.0), "defect", inference_log=True
    )
    assert model["inference_log"] == 1.0
    for pod in pods(hub, kube_api):
        (serving,) = pod["spec"]["containers"]
        names = [e["name"] for e in serving["env"]]
        assert "MLHUB_INFERENCE_LOG_TOKEN" in names and "MLHUB_BUNDLE_TOKEN" not in names
    rows = [[float(i), float(i) + 0.5] for i in range(5)]
    for row in rows:
        assert predict(hub, "alice", "defect", hub.alice, [row]).status_code == 200
    found = []

    def logged():
        found[:] = hub.client.inference_log("defect", since="10m")
        return len(found) >= len(rows)

    wait_for(logged, "the requests in the inference log", timeout=60)
    inputs = [r["inputs"] for r in found]
    assert [i if isinstance(i, list) else list(i.values()) for i in inputs] == rows
    assert {r["version"] for r in found} == {model["current_version"]}
    assert all(r["status"] == 200 and r["outputs"] == 9.0 for r in found)


def test_an_alias_is_a_deployment_of_its_own_moved_with_no_failed_request(
    kube_hub, kube_api, tmp_path
):
    """A version published to ``staging`` gets a Deployment, Service and Secret of its own
    (production keeps serving); the model's keys reach it; moving it under continuous requests
    through the proxy fails none."""
    hub = kube_hub
    live = hub.client.get("defect")["current_version"]
    model = hub.client.publish(
        constant_bundle(tmp_path / "staged", 10.0), "defect", alias="staging"
    )
    assert model["current_version"] == live
    assert answer(hub, name="defect@staging") == [10.0]
    assert answer(hub, name="defect") == answer(hub, name="defect@production") == [9.0]
    ns = hub.namespace
    (dep,) = kube_api.items(f"/apis/apps/v1/namespaces/{ns}/deployments", STAGING)
    assert dep["metadata"]["annotations"]["mlhub.io/alias"] == "staging"
    assert dep["metadata"]["name"].startswith("m-alice-defect-staging-")
    assert len(kube_api.items(f"/api/v1/namespaces/{ns}/services", STAGING)) == 1
    assert len(kube_api.items(f"/api/v1/namespaces/{ns}/secrets", STAGING)) == 1
    key = hub.client.create_key("defect", "staging job")["key"]
    wait_for(
        lambda: all(
            predict(hub, "alice", "defect@staging", key).status_code == 200 for _ in range(4)
        ),
        "the new key to work at the alias",
    )
    load = Load(hub, "defect@staging")
    load.start()
    try:
        wait_for(lambda: load.seen(10.0, 20), "answers from staging")
        hub.client.set_alias("defect", "staging", "production")
        wait_for(lambda: load.seen(9.0, 20), "staging answering production's version")
    finally:
        load.stop()
    assert load.failures == [], load.failures
    switch = load.answers.index(9.0)
    assert set(load.answers[:switch]) == {10.0} and set(load.answers[switch:]) == {9.0}


def test_a_canary_takes_its_share_through_the_front_and_is_promoted(kube_hub, tmp_path):
    """30% of production's requests through the proxy go to the canary's pods (the canary
    front splits per request; this cluster routes to pods, with no Service in the path); the
    promotion fails no request and leaves production on the canary's version."""
    hub = kube_hub
    hub.client.publish(constant_bundle(tmp_path / "next", 11.0), "defect", alias="next")
    hub.client.start_canary("defect", "next", 30)
    answers = [answer(hub)[0] for _ in range(300)]
    canary = answers.count(11.0)
    assert set(answers) == {9.0, 11.0}
    assert abs(canary - 90) <= 5 * (300 * 0.3 * 0.7) ** 0.5, canary
    stats = hub.client.canary("defect")["stats"]
    assert stats["canary"]["requests"] >= canary and stats["canary"]["errors"] == 0
    load = Load(hub, "defect")
    load.start()
    try:
        wait_for(lambda: load.seen(9.0, 10) and load.seen(11.0, 5), "answers from both")
        model = hub.client.promote_canary("defect")
        count = len(load.answers)
        wait_for(lambda: len(load.answers) > count + 30, "requests after the promotion")
    finally:
        load.stop()
    assert load.failures == [], load.failures
    assert model["canary"] is None and set(load.answers[count:]) == {11.0}


def test_a_canary_refusing_productions_requests_is_aborted_by_itself(kube_hub, tmp_path):
    """A version trained on three inputs refuses the two-input requests production answers:
    the canary check aborts it, and every request reaches production again."""
    hub = kube_hub
    three = LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0])
    save_bundle(three, tmp_path / "three", name="defect", example=[[0.0, 0.0, 0.0]])
    hub.client.publish(tmp_path / "three", "defect", alias="wide")
    hub.client.start_canary("defect", "wide", 50)
    refused = 0
    while hub.client.get("defect")["canary"] is not None:
        resp = predict(hub, "alice", "defect", hub.alice)
        refused += resp.status_code == 400
        assert resp.status_code in (200, 400), resp.text
        assert refused < 2000, "the canary check did not abort the canary"
    assert refused > 0
    assert {tuple(answer(hub)) for _ in range(30)} == {(11.0,)}
    (ended,) = [
        c
        for c in hub.client.history("defect")["changes"]
        if c["step"] == "alias_deleted" and "aborted by mlhub" in c["message"]
    ]
    assert ended["alias"] == "canary" and "error rate" in ended["message"]


def test_a_shadow_answers_no_caller_and_is_compared_with_production(kube_hub):
    """A shadow of ``staging`` (9.0) beside production (11.0): callers through the proxy get
    production's answers only, and both answers of every request are read back."""
    hub = kube_hub
    model = hub.client.start_shadow("defect", "staging", 100)
    assert model["shadow"]["percent"] == 100.0
    rows = [[float(i), 0.0] for i in range(10)]
    for row in rows:
        assert predict(hub, "alice", "defect", hub.alice, [row]).json()["predictions"] == [11.0]
    wait_for(
        lambda: hub.client.shadow("defect")["summary"]["compared"] >= len(rows),
        "every request answered by the shadow too",
        timeout=60,
    )
    shadow = hub.client.shadow("defect")
    assert [r["inputs"] for r in shadow["rows"]] == rows
    assert {(r["production"], r["shadow"], r["agree"]) for r in shadow["rows"]} == {
        (11.0, 9.0, False)
    }
    assert shadow["summary"]["agreement"] == 0.0 and shadow["summary"]["dropped"] == 0
    hub.client.stop_shadow("defect")
    assert hub.client.get("defect")["shadow"] is None


def test_an_idle_model_sleeps_at_zero_replicas_and_a_request_wakes_it(kube_hub, kube_api, tmp_path):
    """Another model, ``sleepy``, told to sleep after 2 s without a request: its Deployment
    goes to 0 replicas (no pod left), and requests through the proxy, several at once, wake
    it through the publisher and get its answer."""
    hub = kube_hub
    hub.client.publish(constant_bundle(tmp_path / "sleepy", 6.0, "sleepy"), "sleepy")
    hub.client.configure("sleepy", sleep_after=2)
    selector = f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', 'sleepy'))}"
    ns = hub.namespace

    def scaled_to_zero():
        (dep,) = kube_api.items(f"/apis/apps/v1/namespaces/{ns}/deployments", selector)
        gone = not kube_api.items(f"/api/v1/namespaces/{ns}/pods", selector)
        return dep if dep["spec"]["replicas"] == 0 and gone else None

    dep = wait_for(scaled_to_zero, "sleepy's Deployment at 0 replicas, its pod gone", timeout=120)
    assert dep["metadata"]["annotations"]["mlhub.io/asleep-since"]
    assert hub.client.get("sleepy")["status"] == "sleeping"

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: predict(hub, "alice", "sleepy", hub.alice), range(5)))
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert {tuple(a.json()["predictions"]) for a in answers} == {(6.0,)}
    (dep,) = kube_api.items(f"/apis/apps/v1/namespaces/{ns}/deployments", selector)
    assert dep["spec"]["replicas"] == 1
    assert "mlhub.io/asleep-since" not in dep["metadata"].get("annotations", {})
    assert hub.client.get("sleepy")["status"] == "ready"
    assert steps(hub, "sleepy")[-1] == "awake"
    hub.client.delete("sleepy")


def test_delete_removes_every_object(kube_hub, kube_api):
    hub = kube_hub
    hub.client.delete("defect")
    ns = hub.namespace
    kinds = [
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        f"/apis/apps/v1/namespaces/{ns}/replicasets",
        f"/api/v1/namespaces/{ns}/pods",
        f"/api/v1/namespaces/{ns}/services",
        f"/api/v1/namespaces/{ns}/secrets",
        f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets",
    ]
    # pods and ReplicaSets go by garbage collection, after the Deployment (the alias's too)
    wait_for(
        lambda: not any(kube_api.items(k, s) for k in kinds for s in (SELECTOR, STAGING)),
        "no object left",
    )
    resp = predict(hub, "alice", "defect", hub.alice)
    assert resp.status_code == 404 and "defect" in resp.json()["error"]
