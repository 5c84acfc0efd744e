"""Fixtures of the cluster layer: the real test cluster, a serving image in its Docker engine, and
a real ``mlhub up`` whose publisher runs models with the KubernetesDeployer.

How the pieces reach each other on the test cluster (no kube-proxy, no DNS):
- the hub API and the publisher listen on the docker bridge address (``MlhubSettings.internal_ip
  = 172.17.0.1``), so model pods fetch their bundle from the publisher and check hub tokens;
- the proxy routes ``/models/<user>/<name>`` to a ready pod's IP (``route_target = "pod"``), and
  the tests call models through the proxy on 127.0.0.1, as users do.
"""

import secrets
import textwrap

import pytest
from support.embedded_hub import running_hub
from support.kubetest import Cluster, KubeAPI, deployer_config, serving_image


def pytest_collection_modifyitems(items):
    """On a cold machine the first test to ask for the cluster or a standard image pays for
    building Kubernetes (about 5 min) or that image (up to about 6 min) in its fixtures, which
    the default 300 s per test would cut short; a test's own timeout marker still wins."""
    for item in items:
        if item.get_closest_marker("cluster") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(1800))


@pytest.fixture(scope="session")
def kube_cluster():
    """scripts/kube-cluster up (builds Kubernetes once per machine); down at the end only if
    this session started it."""
    cluster = Cluster().up()
    yield cluster
    cluster.down()


@pytest.fixture(scope="session")
def kube_api(kube_cluster):
    return KubeAPI(kube_cluster.kubeconfig)


@pytest.fixture(scope="session")
def image(kube_cluster):
    return serving_image()


@pytest.fixture(scope="module")
def namespace(kube_api):
    name = f"mlhub-test-{secrets.token_hex(3)}"
    kube_api.create_namespace(name)
    yield name
    kube_api.delete_namespace(name)


@pytest.fixture(scope="module")
def kube_hub(request, tmp_path_factory, kube_cluster, image, namespace):
    """A real ``mlhub up`` with the KubernetesDeployer; alice and her token and client.
    A test module's ``HUB_CONFIG`` (more config lines) is added to the config file."""
    config = deployer_config(kube_cluster.kubeconfig, namespace, image) + textwrap.dedent(
        getattr(request.module, "HUB_CONFIG", "")
    )
    with running_hub(tmp_path_factory.mktemp("kubehub"), config) as hub:
        hub.namespace = namespace
        yield hub
