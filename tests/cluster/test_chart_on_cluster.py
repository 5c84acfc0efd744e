"""The mlhub chart on the real test cluster, installed by the real Helm engine (helm-sdkpy).

Here Helm installs mlhub's own templates alone (the publisher, its RBAC, PVC, NetworkPolicies
and config, the models namespace, the settings), from a copy of the chart with its
``dependencies:`` removed, to see them in isolation: install, upgrade, a refused second install,
uninstall. What the JupyterHub chart would add and the publisher needs, the ``hub`` Secret
holding the publisher's API token and the proxy token, the test makes itself. The whole chart,
with the official JupyterHub chart, is installed and used in test_whole_chart.py.

Every rendered object is validated twice against the cluster's own schemas: Helm's install
checks them against the API server's OpenAPI schema, and ``kubectl apply --dry-run=server``
sends each to the API server, which validates and admits it without storing it.

What this cluster cannot show: it authorizes everything (``--authorization-mode=AlwaysAllow``)
and has no network plugin, so the Role's limits are checked as objects here (the
NetworkPolicies against the running pods in test_whole_chart.py); on a real cluster
``kubectl auth can-i --as=system:serviceaccount:<ns>:mlhub-publisher create deployments
-n <other-namespace>`` answers "no".
"""

import base64
import json
import secrets

import pytest
import requests
from support.embedded_hub import wait_for
from support.helmtool import Helm, HelmFailed, chart_for_the_test_cluster, helm_python
from support.kubetest import documents, kubectl
from support.standard_images import standard_images

from mlhub import __version__ as VERSION

# a cold machine builds the hub image first (cached by content afterwards)
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1800)]

RELEASE = "mlhub"


def server_dry_run(kubeconfig, manifest):
    """``kubectl apply --dry-run=server --validate=true``: the API server checks every object
    of ``manifest`` against its schema, and keeps none."""
    args = ["apply", "--dry-run=server", "--validate=true", "-f", "-"]
    return kubectl(kubeconfig, *args, input=manifest)


@pytest.fixture(scope="module")
def helm(kube_cluster):
    return Helm(helm_python(), kube_cluster.kubeconfig)


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    """The chart without its dependency: mlhub's own templates alone."""
    return chart_for_the_test_cluster(tmp_path_factory.mktemp("chart") / "mlhub", dependency=False)


@pytest.fixture(scope="module")
def hub_image(kube_cluster):
    """The chart's publisher image (the standard hub image), or None if it cannot be had."""
    ref = f"mlhub/hub:{VERSION}"
    return ref if standard_images([ref]) else None


@pytest.fixture(scope="module")
def install(helm, chart, kube_api, tmp_path_factory, hub_image):
    """The chart installed in a fresh namespace; uninstalled and cleaned up afterwards."""
    suffix = secrets.token_hex(3)
    namespace, models = f"mlhub-chart-{suffix}", f"mlhub-chart-models-{suffix}"
    storage_class = f"mlhub-chart-{suffix}"
    state = {
        "namespace": namespace,
        "models": models,
        "storage_class": storage_class,
        "installed": False,
    }
    kube_api.create_namespace(namespace)
    try:
        # the test cluster has no volume provisioner: a hostPath volume for the publisher's claim
        volume_dir = tmp_path_factory.mktemp("publisher-volume")
        volume_dir.chmod(0o777)
        kube_api.create_host_path_volume(storage_class, volume_dir)
        # what the JupyterHub chart's `hub` Secret would hold for the publisher
        tokens = {
            "hub.services.mlhub-publisher.apiToken": secrets.token_hex(16),
            "hub.config.ConfigurableHTTPProxy.auth_token": secrets.token_hex(16),
        }
        hub_secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hub", "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in tokens.items()},
        }
        kube_api.request(
            "POST", f"/api/v1/namespaces/{namespace}/secrets", json=hub_secret
        ).raise_for_status()
        values = {
            "models": {"namespace": models},
            "publisher": {"storage": {"size": "1Gi", "storageClass": storage_class}},
        }
        result = helm(
            "install",
            release=RELEASE,
            chart=str(chart),
            namespace=namespace,
            values=values,
            wait=False,
            timeout=300,
        )
        state.update(installed=True, release=result, manifest=result["manifest"])
        yield state
    finally:
        try:
            if state["installed"]:
                helm("uninstall", release=RELEASE, namespace=namespace, wait=True, timeout=180)
        finally:
            kube_api.delete_namespace(namespace)
            kube_api.delete_namespace(models)
            kube_api.request("DELETE", f"/api/v1/persistentvolumes/{storage_class}")


def test_chart_installs_and_every_object_passes_the_api_servers_validation(
    install, kube_cluster, kube_api
):
    assert install["release"]["name"] == RELEASE
    objects = documents(install["manifest"])
    kinds = sorted((o["kind"], o["metadata"].get("namespace", "")) for o in objects)
    ns, models = install["namespace"], install["models"]
    assert kinds == sorted(
        [
            ("ConfigMap", ns),  # mlhub-settings
            ("ConfigMap", ns),  # the publisher's config
            ("Deployment", ns),
            ("Namespace", ""),
            ("NetworkPolicy", ns),
            ("NetworkPolicy", models),  # mlhub-models: who reaches model pods
            ("PersistentVolumeClaim", ns),
            ("Role", models),
            ("RoleBinding", models),
            ("Service", ns),
            ("ServiceAccount", ns),
        ]
    )

    dry_run = server_dry_run(kube_cluster.kubeconfig, install["manifest"])
    assert dry_run.returncode == 0, dry_run.stderr
    assert dry_run.stdout.count("(server dry run)") == len(objects), dry_run.stdout

    # the same check refuses what the schema does not allow (a misspelt field)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    bad = server_dry_run(kube_cluster.kubeconfig, json.dumps(deployment))
    assert bad.returncode != 0
    assert "replica" in bad.stderr

    # and the objects are really there
    assert kube_api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/mlhub-publisher")
    assert kube_api.get(f"/api/v1/namespaces/{models}")["status"]["phase"] == "Active"


def test_publisher_rights_are_limited_to_the_models_namespace(install):
    objects = documents(install["manifest"])
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    [role] = [o for o in objects if o["kind"] == "Role"]
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == install["models"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mlhub-publisher", "namespace": install["namespace"]}
    ]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {
        "deployments",
        "replicasets",
        "deployments/scale",
        "services",
        "secrets",
        "pods",
        "pods/log",
        "events",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
    }
    # pods are made by ReplicaSets: the publisher annotates (access changes) and deletes them
    [pods] = [rule for rule in role["rules"] if rule["resources"] == ["pods"]]
    assert set(pods["verbs"]) == {"get", "list", "watch", "patch", "delete"}
    [policy] = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "mlhub-publisher"
    ]
    peers = policy["spec"]["ingress"][0]["from"]
    models_namespace = {"kubernetes.io/metadata.name": install["models"]}
    assert {"namespaceSelector": {"matchLabels": models_namespace}} in peers


def test_publisher_becomes_ready_and_answers(install, kube_api, hub_image):
    """The publisher pod of the hub image starts, non-root, with its volume and config, and
    answers its health check."""
    if hub_image is None:
        pytest.skip("no mlhub/hub image: `mlhub images build hub` makes it (issue 4)")
    ns = install["namespace"]

    def ready():
        status = kube_api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/mlhub-publisher")
        return status["status"].get("readyReplicas") == 1

    selector = "app.kubernetes.io/component=publisher"
    try:
        wait_for(ready, "the publisher Deployment to be ready", timeout=240, interval=1)
    except AssertionError as e:
        pods = kube_api.items(f"/api/v1/namespaces/{ns}/pods", selector)
        logs = [
            kube_api.request("GET", f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}/log")
            for p in pods
        ]
        states = [p["status"].get("containerStatuses") for p in pods]
        raise AssertionError(f"{e}; pods: {states}; logs: {[r.text[-3000:] for r in logs]}") from e
    [pod] = kube_api.items(f"/api/v1/namespaces/{ns}/pods", selector)
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    health = requests.get(
        f"http://{pod['status']['podIP']}:8090/services/mlhub-publisher/api/health", timeout=10
    )
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


def test_a_second_install_of_the_same_release_is_refused(install, helm, chart):
    with pytest.raises(HelmFailed, match="(?i)in use|exists"):
        helm(
            "install",
            release=RELEASE,
            chart=str(chart),
            namespace=install["namespace"],
            values={"models": {"namespace": install["models"]}},
            wait=False,
        )


def test_a_profile_whose_image_no_puller_pulls_is_refused(helm, chart, kube_api):
    """A spawn must not wait for a pull: Helm refuses a profile whose image the official
    chart's pre-pullers (on by default) do not pull, saying what to add. (``helm lint`` cannot
    show it: Helm's lint mode lets ``fail`` pass.)"""
    suffix = secrets.token_hex(3)
    profile = {
        "slug": "custom",
        "display_name": "Custom image",
        "image": "example.org/team/notebook:2",
        "kernels": ["python3"],
        "sizes": [{"slug": "one", "display_name": "1 CPU", "cpu_limit": 1}],
    }
    values = {"profiles": [profile], "models": {"namespace": f"mlhub-refused-models-{suffix}"}}
    try:
        with pytest.raises(HelmFailed) as refused:
            helm(
                "install",
                release=RELEASE,
                chart=str(chart),
                namespace=f"mlhub-refused-{suffix}",
                values=values,
                wait=False,
            )
        assert (
            'profile "custom" runs example.org/team/notebook:2, which the pre-puller does not '
            "pull: add it to jupyterhub.prePuller.extraImages (name and tag)"
        ) in refused.value.error
    finally:
        kube_api.delete_namespace(f"mlhub-refused-{suffix}")


def test_upgrade_applies_a_changed_value_and_rolls_the_publisher(install, helm, chart, kube_api):
    ns = install["namespace"]
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/mlhub-publisher"
    before = kube_api.get(path)["spec"]["template"]["metadata"]["annotations"]
    values = {
        "models": {"namespace": install["models"], "images": {"python": "example/serve:2"}},
        "publisher": {"storage": {"size": "1Gi", "storageClass": install["storage_class"]}},
    }
    result = helm(
        "upgrade", release=RELEASE, chart=str(chart), namespace=ns, values=values, wait=False
    )
    assert result["version"] == 2
    config = kube_api.get(f"/api/v1/namespaces/{ns}/configmaps/mlhub-publisher")["data"]
    images = json.loads(config["config.json"])["KubernetesDeployer"]["images"]
    assert images["python"] == "example/serve:2"
    after = kube_api.get(path)["spec"]["template"]["metadata"]["annotations"]
    # a new config checksum: the publisher restarts with it
    assert after["checksum/config"] != before["checksum/config"]


def test_uninstall_leaves_nothing(install, helm, kube_api):
    helm("uninstall", release=RELEASE, namespace=install["namespace"], wait=True, timeout=180)
    install["installed"] = False
    ns = install["namespace"]
    for path in (
        f"/apis/apps/v1/namespaces/{ns}/deployments/mlhub-publisher",
        f"/api/v1/namespaces/{ns}/services/mlhub-publisher",
        f"/api/v1/namespaces/{ns}/configmaps/mlhub-settings",
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/mlhub-publisher",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{install['models']}/roles/mlhub-publisher",
    ):
        assert kube_api.request("GET", path).status_code == 404, path
    models = kube_api.request("GET", f"/api/v1/namespaces/{install['models']}")
    assert models.status_code == 404 or models.json()["status"]["phase"] == "Terminating"
