"""How long the Kubernetes mode takes on the local test cluster (scripts/kube-cluster).

Measured, each over ``--runs`` runs with a fresh model (median, min, max):

- harness: ``scripts/kube-cluster up`` from nothing running (the binaries cached) until the
  node is Ready, and ``down``; the cold build is measured by the first ``up`` of a machine and
  printed by the script itself (``built Kubernetes v1.20.2 in N s``);
- publish -> endpoint: from the upload until the first prediction through the proxy succeeds
  (a new Deployment: pod scheduled, bundle fetched by the init container, model loaded, ready);
- pod ready: the pod's own timestamps (created -> Ready condition), as the API server has them;
- scale 1 -> 3: from the scale request until the publisher reports it done;
- rollout v1 -> v2 (1 replica): from the upload until every answer through the proxy is v2,
  and until the publisher reports it done (the old pod drained);
- wake from zero: the model told to sleep after 1 s (its Deployment at 0 replicas, no pod),
  then one request through the proxy, timed until its answer (the publisher holds it while the
  pod starts: the issue's target is under 10 s with the image present);
- user server spawn -> ready: a second ``mlhub up`` in Kubernetes mode (KubeSpawner, the
  "python" profile, size small, its notebook image on the node as the chart's pre-puller leaves
  it): ``POST /hub/api/users/<u>/server`` until the hub says the server is ready, and the pod's
  stages from its own timestamps (created -> scheduled -> initialized (the workspace volume) ->
  containers ready); the issue's target is under 8 s.

The same real ``mlhub up`` as the cluster tests (their harness and their KubernetesDeployer
settings, ``kubetest.deployer_config``: pod routes, short drains) and the same standard serving
image are used. Everything it starts is stopped.

    .venv/bin/python bench/kube_times.py --runs 3
"""

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "component")]

from support.embedded_hub import EmbeddedHub  # noqa: E402
from support.kube_hub import kube_mode_config  # noqa: E402
from support.kubetest import SCRIPT, Cluster, KubeAPI, deployer_config, serving_image  # noqa: E402
from support.standard_images import standard_images  # noqa: E402
from test_publisher_endpoints import constant_bundle  # noqa: E402

from mlhub import __version__  # noqa: E402
from mlhub.deployers import kube_objects  # noqa: E402
from mlhub.deployers.base import ModelRef  # noqa: E402
from mlhub.publisher.client import PublisherClient  # noqa: E402


def timed(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def until(check, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise TimeoutError


def stamp(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def pod_ready_seconds(api, namespace, model):
    selector = f"mlhub.io/model-id={kube_objects.model_id(model)}"
    out = []
    for pod in api.items(f"/api/v1/namespaces/{namespace}/pods", selector):
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        if ready and ready[0]["status"] == "True":
            created = stamp(pod["metadata"]["creationTimestamp"])
            out.append((stamp(ready[0]["lastTransitionTime"]) - created).total_seconds())
    return out


POD_STAGES = (("PodScheduled", "scheduled"), ("Initialized", "initialized"), ("Ready", "ready"))


def pod_stages(pod):
    """Seconds from the pod's creation to each of its conditions (1 s resolution)."""
    created = stamp(pod["metadata"]["creationTimestamp"])
    at = {c["type"]: stamp(c["lastTransitionTime"]) for c in pod["status"]["conditions"]}
    return {name: (at[kind] - created).total_seconds() for kind, name in POD_STAGES}


def spawn_times(cluster, api, runs, results):
    """Time ``runs`` spawns of a user server in Kubernetes mode (module docstring)."""
    image = f"mlhub/notebook-python:{__version__}"
    if standard_images([image]) != [image]:
        raise SystemExit(f"{image} is not in the cluster's engine: mlhub images build")
    suffix = int(time.time())
    namespace = storage_class = f"mlhub-bench-spawn-{suffix}"
    api.create_namespace(namespace)
    tmp = Path(tempfile.mkdtemp(prefix="kube-bench-spawn-"))
    volume = tmp / "workspace"
    volume.mkdir()
    volume.chmod(0o777)
    api.create_host_path_volume(storage_class, volume)
    config = kube_mode_config(namespace, storage_class)
    (tmp / "hub").mkdir()
    hub = EmbeddedHub(tmp / "hub", config=config)
    try:
        hub.start()
        password = hub.add_user("ada")
        session = hub.login("ada", password)

        def server():
            return hub.hub_api(session, "GET", "/users/ada").json()["servers"].get("")

        for _ in range(runs):
            start = time.monotonic()
            body = {"profile": "python", "size": "small"}
            hub.hub_api(session, "POST", "/users/ada/server", json=body).raise_for_status()
            until(lambda: (server() or {}).get("ready"))
            results["spawn"].append(time.monotonic() - start)
            [pod] = api.items(f"/api/v1/namespaces/{namespace}/pods", "component=singleuser-server")
            for stage, seconds in pod_stages(pod).items():
                results[f"spawn-{stage}"].append(seconds)
            hub.hub_api(session, "DELETE", "/users/ada/server").raise_for_status()
            until(lambda: server() is None)
            pods = f"/api/v1/namespaces/{namespace}/pods"
            until(lambda p=pods: not api.items(p, "component=singleuser-server"))
        hub.stop()
    finally:
        hub.kill()
        api.delete_namespace(namespace)
        api.request("DELETE", f"/api/v1/persistentvolumes/{storage_class}")


def summary(name, values):
    if not values:
        return f"{name:<34} -"
    return (
        f"{name:<34} median {statistics.median(values):6.2f} s   "
        f"min {min(values):6.2f}   max {max(values):6.2f}   (n={len(values)})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    kinds = ("up", "down", "publish", "pod", "scale", "switch", "rollout", "wake", "spawn")
    results = {k: [] for k in kinds}
    results.update({f"spawn-{stage}": [] for _, stage in POD_STAGES})

    cluster = Cluster()
    if cluster.running():
        print("the cluster is running already (someone uses it): not timing up/down")
    else:
        for _ in range(args.runs):
            results["up"].append(timed(lambda: subprocess.run([SCRIPT, "up"], check=True)))
            results["down"].append(timed(lambda: subprocess.run([SCRIPT, "down"], check=True)))
    cluster.up()
    api = KubeAPI(cluster.kubeconfig)
    image = serving_image()
    namespace = f"mlhub-bench-{int(time.time())}"
    api.create_namespace(namespace)
    tmp = Path(tempfile.mkdtemp(prefix="kube-bench-"))
    config = deployer_config(cluster.kubeconfig, namespace, image)
    config += "\nc.IdlePolicy.interval = 0.5\n"
    hub = EmbeddedHub(tmp, config=config)
    try:
        hub.start()
        password = hub.add_user("alice")
        token = hub.token("alice", password)
        client = PublisherClient(url=hub.url, token=token, poll_interval=0.05)
        headers = {"Authorization": f"token {token}"}

        def answer(name):
            resp = requests.post(
                f"{hub.url}models/alice/{name}/v1/predict",
                json={"instances": [[0.0, 1.0]]},
                headers=headers,
                timeout=60,  # a wake from zero replicas is held by the publisher
            )
            return resp.json()["predictions"][0] if resp.status_code == 200 else None

        for run in range(args.runs):
            name = f"bench{run}"
            v1 = constant_bundle(tmp / f"{name}-v1", 1.0)
            start = time.monotonic()
            client.publish(v1, name, wait=False)
            until(lambda name=name: answer(name) == 1.0)
            results["publish"].append(time.monotonic() - start)
            results["pod"] += pod_ready_seconds(api, namespace, ModelRef("alice", name))
            results["scale"].append(timed(lambda name=name: client.scale(name, 3)))
            client.scale(name, 1)
            # the rollout is timed from one pod: wait until the scaled-down ones are gone
            selector = f"mlhub.io/model-id={kube_objects.model_id(ModelRef('alice', name))}"
            until(lambda s=selector: len(api.items(f"/api/v1/namespaces/{namespace}/pods", s)) == 1)
            v2 = constant_bundle(tmp / f"{name}-v2", 2.0)
            start = time.monotonic()
            op = client.publish(v2, name, wait=False)
            until(lambda name=name: answer(name) == 2.0)
            results["switch"].append(time.monotonic() - start)
            client.wait_for(name, op["version"], since=op["event_id"] - 1, timeout=300)
            results["rollout"].append(time.monotonic() - start)
            client.configure(name, sleep_after=1)
            until(
                lambda s=selector, name=name: (
                    client.get(name)["status"] == "sleeping"
                    and not api.items(f"/api/v1/namespaces/{namespace}/pods", s)
                )
            )
            start = time.monotonic()
            woken = answer(name)
            results["wake"].append(time.monotonic() - start)
            if woken != 2.0:
                raise SystemExit(f"the wake of {name} answered {woken!r}, not 2.0")
            client.delete(name)
        hub.stop()
        # KubeSpawner's client reads $KUBECONFIG when the hub imports it
        os.environ["KUBECONFIG"] = cluster.kubeconfig
        spawn_times(cluster, api, args.runs, results)
    finally:
        hub.kill()
        api.delete_namespace(namespace)
        cluster.down()
    print()
    print(summary("kube-cluster up (cached binaries)", results["up"]))
    print(summary("kube-cluster down", results["down"]))
    print(summary("publish -> first prediction", results["publish"]))
    print(summary("pod created -> Ready", results["pod"]))
    print(summary("scale 1 -> 3 (done)", results["scale"]))
    print(summary("rollout v1 -> v2: answers are v2", results["switch"]))
    print(summary("rollout v1 -> v2: done (drained)", results["rollout"]))
    print(summary("wake from 0 replicas -> answer", results["wake"]))
    print(summary("user server spawn -> ready (hub)", results["spawn"]))
    for _, stage in POD_STAGES:
        print(summary(f"  pod created -> {stage}", results[f"spawn-{stage}"]))


if __name__ == "__main__":
    main()
