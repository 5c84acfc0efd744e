"""Helpers of the cluster tests: the test cluster (scripts/kube-cluster), a serving image in its
Docker engine, and a small synchronous client of the real API server for assertions.

The cluster is shared like the Docker engine: ``Cluster.up()`` starts it only if it is not
running and ``down()`` stops it only if this session started it.
"""

import subprocess
import textwrap
import time
import warnings
from pathlib import Path

import requests
import urllib3
import yaml

from mlhub import __version__ as VERSION
from support.standard_images import standard_images

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kube-cluster"
BRIDGE_IP = "172.17.0.1"  # the docker bridge: pods reach the hub and the publisher there


def kubectl(kubeconfig, *args, input=None):
    """``kubectl ARGS`` on the test cluster; the finished process (output captured)."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def documents(manifest):
    """The objects of a multi-document YAML manifest (what Helm rendered)."""
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


class Cluster:
    def __init__(self):
        self.started = False
        self.kubeconfig = None

    def running(self):
        return subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0

    def up(self):
        if not self.running():
            subprocess.run([SCRIPT, "up"], check=True)
            self.started = True
        env = subprocess.run([SCRIPT, "env"], capture_output=True, text=True, check=True).stdout
        self.kubeconfig = env.strip().split("=", 1)[1]
        return self

    def down(self):
        if self.started:
            # Bounded: it takes about 15 s, in the teardown of the session's last test.
            subprocess.run([SCRIPT, "down"], check=True, timeout=180)


class KubeAPI:
    """GET/POST/DELETE on the API server with the kubeconfig's token (tests only)."""

    def __init__(self, kubeconfig):
        conf = yaml.safe_load(Path(kubeconfig).read_text())
        self.server = conf["clusters"][0]["cluster"]["server"]
        self.session = requests.Session()
        self.session.verify = False
        self.session.headers["Authorization"] = f"Bearer {conf['users'][0]['user']['token']}"

    def request(self, method, path, **kwargs):
        # verify per request: REQUESTS_CA_BUNDLE in the environment would override the session
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            return self.session.request(
                method, self.server + path, timeout=30, verify=False, **kwargs
            )

    def get(self, path, **params):
        resp = self.request("GET", path, params=params)
        resp.raise_for_status()
        return resp.json()

    def items(self, path, selector):
        return self.get(path, labelSelector=selector)["items"]

    def create_namespace(self, name):
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.request("POST", "/api/v1/namespaces", json=body).raise_for_status()
        # pods are admitted once the namespace's default service account exists
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default").ok:
                return
            time.sleep(0.3)
        raise AssertionError(f"no default service account in {name}")

    def delete_namespace(self, name):
        self.request("DELETE", f"/api/v1/namespaces/{name}")

    def create_host_path_volume(self, storage_class, path, size="1Gi"):
        """A ReadWriteOnce PersistentVolume of ``size`` on the node's directory ``path``, named
        for and in ``storage_class``: the test cluster has no volume provisioner, so a claim of
        that class binds this one."""
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": storage_class},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "hostPath": {"path": str(path)},
            },
        }
        self.request("POST", "/api/v1/persistentvolumes", json=pv).raise_for_status()


def serving_image(runtime="python"):
    """The standard serving image of ``runtime`` (images/serving-<runtime>), built by the
    images pipeline (a no-op for unchanged inputs): the cluster tests run what users run."""
    ref = f"mlhub/serving-{runtime}:{VERSION}"
    assert standard_images([ref]) == [ref], f"`mlhub images build serving-{runtime}` made no {ref}"
    return ref


def deployer_config(kubeconfig, namespace, image, runtime="python"):
    """Hub config lines of a publisher that runs models with the KubernetesDeployer in
    ``namespace`` with the serving ``image`` of ``runtime``, for the test cluster: pods reach
    the publisher on the docker bridge, the proxy routes to a ready pod's IP, short drains."""
    return textwrap.dedent(
        f"""
        c.MlhubSettings.internal_ip = {BRIDGE_IP!r}
        c.PublisherApp.default_workers = 1
        c.PublisherApp.deployer_class = "mlhub.deployers.kubernetes.KubernetesDeployer"
        c.KubernetesDeployer.kubeconfig = {kubeconfig!r}
        c.KubernetesDeployer.namespace = {namespace!r}
        c.KubernetesDeployer.images = {{{runtime!r}: {image!r}}}
        c.KubernetesDeployer.image_pull_policy = "Never"
        c.KubernetesDeployer.route_target = "pod"
        c.KubernetesDeployer.drain_seconds = 3
        c.KubernetesDeployer.termination_grace_seconds = 10
        c.KubernetesDeployer.ready_timeout = 120
        c.KubernetesDeployer.route_check_interval = 2
        c.KubernetesDeployer.resources = {{"requests": {{"cpu": "50m", "memory": "64Mi"}}}}
        """
    )
