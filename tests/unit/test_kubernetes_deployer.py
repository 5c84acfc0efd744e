"""The KubernetesDeployer's decisions on pod states (as the API server reports them), without a
cluster: which pod the proxy route points at, when a rollout has failed for good, and which pods
an access change is pushed to. The deployer on a real cluster is tested in tests/cluster/."""

import asyncio
import json

import pytest
from kubernetes_asyncio.client.rest import ApiException

from mlhub.deployers import kube_objects
from mlhub.deployers.base import ModelRef, Serving
from mlhub.deployers.kube_pods import pod_problem, rolled_out, rollout_failure, serving_pods
from mlhub.deployers.kubernetes import KubernetesDeployer
from mlhub.errors import BadRequest, InvalidBundle

# the manifest fields that choose a serving image
PY = {"runtime": "python"}
R = {"runtime": "r"}
MLFLOW = {"runtime": "python", "serialization": "mlflow", "flavor": "pyfunc"}
NONE = Serving()  # no publish options


def pod(name, version, ip, ready=True, terminating=False, start="2026-01-01T00:00:00Z"):
    meta = {
        "name": name,
        "labels": {kube_objects.LABEL_MODEL: "m"},
        "annotations": {"mlhub.io/version": version},
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    status = "True" if ready else "False"
    return {
        "metadata": meta,
        "status": {
            "podIP": ip,
            "startTime": start,
            "conditions": [{"type": "Ready", "status": status}],
        },
    }


@pytest.fixture
def deployer():
    d = KubernetesDeployer()
    d.pods.replace(
        [
            pod("a", "v1", "10.0.0.1", start="2026-01-01T00:00:01Z"),
            pod("b", "v1", "10.0.0.2", start="2026-01-01T00:00:02Z"),
        ]
    )
    d.routing.wanted["m"] = "v1"
    return d


def test_route_goes_to_the_oldest_ready_pod_and_stays_there(deployer):
    assert deployer.routing.pod_target("m") == "http://10.0.0.1:8080"
    deployer.routing.routed["m"] = "http://10.0.0.2:8080"
    assert deployer.routing.pod_target("m") == "http://10.0.0.2:8080"


def test_route_leaves_a_terminating_or_unready_pod(deployer):
    deployer.routing.routed["m"] = "http://10.0.0.1:8080"
    deployer.pods.update("MODIFIED", pod("a", "v1", "10.0.0.1", terminating=True))
    assert deployer.routing.pod_target("m") == "http://10.0.0.2:8080"
    deployer.pods.update("MODIFIED", pod("b", "v1", "10.0.0.2", ready=False))
    assert deployer.routing.pod_target("m") is None


def test_route_moves_to_the_new_version_once_one_of_its_pods_is_ready(deployer):
    deployer.routing.routed["m"] = "http://10.0.0.1:8080"
    deployer.routing.wanted["m"] = "v2"
    deployer.pods.update("ADDED", pod("c", "v2", "10.0.0.3", ready=False))
    assert deployer.routing.pod_target("m") == "http://10.0.0.1:8080"  # old serves meanwhile
    deployer.pods.update("MODIFIED", pod("c", "v2", "10.0.0.3"))
    assert deployer.routing.pod_target("m") == "http://10.0.0.3:8080"


def status(kind, name, **state):
    return {"status": {kind: [{"name": name, "restartCount": state.pop("restarts", 0), **state}]}}


def test_hopeless_pods_are_told_apart_from_slow_ones():
    assert pod_problem(status("containerStatuses", "serving", state={"running": {}})) is None
    assert pod_problem(status("containerStatuses", "serving", state={"waiting": {}})) is None
    never = status(
        "containerStatuses",
        "serving",
        state={"waiting": {"reason": "ErrImageNeverPull", "message": "image x not present"}},
    )
    assert pod_problem(never) == "serving: ErrImageNeverPull: image x not present"
    fetch = status("initContainerStatuses", "fetch-bundle", state={"terminated": {"exitCode": 1}})
    assert pod_problem(fetch) == "fetch-bundle exited with code 1"
    crash = status(
        "containerStatuses",
        "serving",
        restarts=1,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 3, "reason": "Error"}},
    )
    assert pod_problem(crash) == "serving exited with code 3 (Error)"


def test_a_rollout_is_done_when_the_new_generation_runs_exactly_the_replicas():
    def deployment(**status):
        return {"status": status}

    done = {"observedGeneration": 3, "updatedReplicas": 2, "availableReplicas": 2, "replicas": 2}
    assert rolled_out(deployment(**done), 3, 2)
    assert not rolled_out(deployment(**{**done, "observedGeneration": 2}), 3, 2)  # not seen
    assert not rolled_out(deployment(**{**done, "replicas": 3}), 3, 2)  # an old pod is left
    assert not rolled_out(deployment(**{**done, "availableReplicas": 1}), 3, 2)
    assert not rolled_out(None, 1, 1)  # deleted meanwhile


def test_a_rollout_fails_on_the_new_versions_pods_not_on_old_or_stopping_ones():
    crash = status(
        "containerStatuses",
        "serving",
        restarts=1,
        lastState={"terminated": {"exitCode": 3, "reason": "Error"}},
    )["status"]
    old = pod("a", "v1", "10.0.0.1", ready=False)
    old["status"].update(crash)
    stopping = pod("b", "v2", "10.0.0.2", ready=False, terminating=True)
    stopping["status"].update(crash)
    new = pod("c", "v2", "10.0.0.3", ready=False)
    assert rollout_failure([old, stopping, new], None, "v2", {}) is None
    found = rollout_failure([old, new], None, "v2", {"c": "the new version cannot serve: boom"})
    assert found == (new, "the new version cannot serve: boom")
    stuck = {
        "status": {
            "conditions": [
                {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "late"}
            ]
        }
    }
    assert rollout_failure([new], stuck, "v2", {}) == (None, "late")


def test_serving_pods_are_ready_running_ones_oldest_first():
    pods = [
        pod("b", "v1", "10.0.0.2", start="2026-01-01T00:00:02Z"),
        pod("a", "v1", "10.0.0.1", start="2026-01-01T00:00:01Z"),
        pod("c", "v2", "10.0.0.3"),
        pod("d", "v1", "10.0.0.4", terminating=True),
        pod("e", "v1", None),  # no IP yet
    ]
    assert [p["metadata"]["name"] for p in serving_pods(pods, "v1")] == ["a", "b"]
    assert [p["metadata"]["name"] for p in serving_pods(pods)] == ["c", "a", "b"]


async def test_a_runtime_without_an_image_is_refused_at_publish():
    deployer = KubernetesDeployer(images={"python": "serving:1"})
    await deployer.check({"runtime": "python"}, "/nowhere")
    with pytest.raises(InvalidBundle, match="runtime 'r' cannot be served here"):
        await deployer.check({"runtime": "r"}, "/nowhere")


def test_settings_have_help_and_defaults():
    for name, trait in KubernetesDeployer.class_traits(config=True).items():
        assert trait.help, name
    assert KubernetesDeployer().route_target == "service"


def test_r_models_run_the_serving_r_image_with_its_own_entrypoint():
    """serving-r starts nginx -> plumber itself; the Python launcher is for serving-python."""
    deployer = KubernetesDeployer(publisher_url="http://publisher:8090/")
    model = ModelRef("alice", "defect-r")
    r = deployer._deployment(model, "sha256:" + "a" * 64, R, 2, Serving())
    (serving,) = r["spec"]["template"]["spec"]["containers"]
    assert serving["image"] == "mlhub/serving-r:latest"
    assert serving.get("command") is None
    (fetch,) = r["spec"]["template"]["spec"]["initContainers"]
    assert fetch["image"] == "mlhub/serving-r:latest"  # python3 -m mlhub.serving fetch is in it
    python = deployer._deployment(model, "sha256:" + "a" * 64, PY, 2, Serving())
    (serving,) = python["spec"]["template"]["spec"]["containers"]
    assert serving.get("command") is None  # serving-python's entrypoint serves $MLHUB_BUNDLE
    deployer.serving_command = ["python3", "-m", "mlhub.serving", "--host", "0.0.0.0"]
    python = deployer._deployment(model, "sha256:" + "a" * 64, PY, 2, Serving())
    (serving,) = python["spec"]["template"]["spec"]["containers"]
    assert serving["command"][:3] == ["python3", "-m", "mlhub.serving"]
    r = deployer._deployment(model, "sha256:" + "a" * 64, R, 2, Serving())
    (serving,) = r["spec"]["template"]["spec"]["containers"]
    assert serving.get("command") is None  # a configured command is for the Python image only


def test_whole_mlflow_models_run_the_serving_mlflow_image():
    """MLflow models served through mlflow.pyfunc need MLflow, which serving-python leaves out
    to stay small; without an ``mlflow`` image they get the ``python`` one."""
    deployer = KubernetesDeployer(publisher_url="http://publisher:8090/")
    model = ModelRef("alice", "custom")
    spec = deployer._deployment(model, "sha256:" + "a" * 64, MLFLOW, 1, Serving())["spec"][
        "template"
    ]
    (serving,) = spec["spec"]["containers"]
    assert serving["image"] == "mlhub/serving-mlflow:latest"
    native = deployer._deployment(model, "sha256:" + "a" * 64, PY, 1, Serving())["spec"]["template"]
    assert native["spec"]["containers"][0]["image"] == "mlhub/serving-python:latest"
    deployer.images = {"python": "acme/serving-with-mlflow:1"}
    spec = deployer._deployment(model, "sha256:" + "a" * 64, MLFLOW, 1, Serving())["spec"][
        "template"
    ]
    assert spec["spec"]["containers"][0]["image"] == "acme/serving-with-mlflow:1"
    with pytest.raises(InvalidBundle, match="runtime 'r' cannot be served here"):
        deployer._deployment(model, "sha256:" + "a" * 64, R, 1, Serving())


async def test_serving_settings_become_the_serving_containers_environment():
    deployer = KubernetesDeployer(extra_env={"MLHUB_REQUEST_TIMEOUT": "30"})
    model = ModelRef("alice", "forest")
    batching = Serving(batching={"max_size": 32, "max_wait_ms": 3})
    spec = deployer._deployment(model, "sha256:" + "1" * 64, PY, 2, batching)["spec"]["template"]
    (serving,) = [c for c in spec["spec"]["containers"] if c["name"] == "serving"]
    env = {e["name"]: e.get("value") for e in serving["env"]}
    assert env["MLHUB_BATCHING"] == "on" and env["MLHUB_BATCH_MAX_SIZE"] == "32"
    assert env["MLHUB_BATCH_MAX_WAIT_MS"] == "3" and env["MLHUB_REQUEST_TIMEOUT"] == "30"


async def test_publish_resources_go_into_the_serving_container_over_the_setting():
    deployer = KubernetesDeployer(
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    )
    model = ModelRef("alice", "forest")
    resources = {"requests": {"cpu": "500m"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    given = Serving(resources=resources)
    spec = deployer._deployment(model, "sha256:" + "1" * 64, PY, 2, given)["spec"]["template"]
    (serving,) = spec["spec"]["containers"]
    assert serving["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    # a request above the setting's limit is refused when the version is prepared, before
    # anything is applied
    with pytest.raises(BadRequest, match="above its limit 2Gi"):
        await deployer.prepare(
            ModelRef("alice", "big"),
            "sha256:" + "2" * 64,
            "/nowhere",
            replicas=1,
            serving=Serving(resources={"requests": {"memory": "3Gi"}}),
        )


class FakeAPI:
    """Stands in for the API server in ``KubeClient.call`` (a fake for this unit test
    of the deployer's decisions only; tests/cluster/test_access_on_cluster.py runs the real
    one): records each call; lists ``pods``, refuses the patches of the pods in ``refuse``."""

    def __init__(self, pods, refuse=None):
        self.calls = []
        self.pods = pods
        self.refuse = refuse or {}  # pod name -> HTTP status of the refusal

    async def __call__(self, method, path, body=None, query=None, content_type=None, **kw):
        self.calls.append((method, path, body, query, content_type))
        name = path.rsplit("/", 1)[-1]
        if method == "POST":  # the Secret, created
            return {**body, "metadata": {**body["metadata"], "resourceVersion": "41"}}
        if method == "GET" and name == "pods":
            return {"items": self.pods}
        if method == "PATCH" and name in self.refuse:
            raise ApiException(status=self.refuse[name], reason="refused")
        return {}


def access_pod(name, revision=None, terminating=False):
    meta = {"name": name, "annotations": {"mlhub.io/version": "v1"}}
    if revision:
        meta["annotations"]["mlhub.io/access-revision"] = revision
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    return {"metadata": meta, "status": {}}


async def push(deployer, api, access):
    deployer.kube.call = api
    deployer._start = lambda: asyncio.sleep(0)
    deployer.bundle_token = lambda model: "mlhb_x"
    await deployer.set_access(ModelRef("alice", "defect"), access)


async def test_an_access_change_is_pushed_to_the_running_pods_after_the_secret():
    access = {"users": ["bob"], "groups": [], "key_hashes": ["ab" * 32]}
    revision = kube_objects.access_revision(json.dumps(access, sort_keys=True))
    api = FakeAPI(
        [
            access_pod("new"),
            access_pod("old", revision="0" * 16),
            access_pod("current", revision=revision),  # already annotated: left alone
            access_pod("stopping", terminating=True),
        ]
    )
    deployer = KubernetesDeployer(namespace="models")
    await push(deployer, api, access)
    methods = [(method, path.rsplit("/", 1)[-1]) for method, path, *_ in api.calls]
    name = kube_objects.object_name(ModelRef("alice", "defect"))
    # the Secret first, then the pods' list, the Secret read back at its new resourceVersion
    # (once the API server's cache has it, the kubelet's watch of it does), then the patches
    assert methods[:3] == [("POST", "secrets"), ("GET", "pods"), ("GET", name)]
    assert api.calls[1][3] == {
        "labelSelector": "app.kubernetes.io/component=mlhub-model,"
        f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', 'defect'))}"
    }
    assert api.calls[2][3] == {"resourceVersion": "41"}
    patches = {path.rsplit("/", 1)[-1]: (body, ct) for method, path, body, _, ct in api.calls[3:]}
    assert patches == {
        pod: (kube_objects.make_access_patch(revision), "application/merge-patch+json")
        for pod in ("new", "old")
    }


async def test_no_pods_no_patches():
    api = FakeAPI([])
    await push(KubernetesDeployer(), api, {"users": [], "groups": [], "key_hashes": []})
    assert [method for method, *_ in api.calls] == ["POST", "GET"]


async def test_a_refused_patch_is_a_warning_naming_the_fix_and_the_key_still_counts(caplog):
    """The Secret is written (the change arrives at the kubelet's next sync): set_access
    succeeds, and the log says which right the publisher lacks. A pod gone meanwhile (404)
    is no problem at all."""
    api = FakeAPI([access_pod("a"), access_pod("b")], refuse={"a": 403, "b": 404})
    deployer = KubernetesDeployer(namespace="models")
    await push(deployer, api, {"users": [], "groups": [], "key_hashes": ["cd" * 32]})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "pod a only at the kubelet's next sync" in warnings[0]
    assert "`patch` on pods" in warnings[0]
