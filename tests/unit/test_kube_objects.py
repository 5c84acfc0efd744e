"""The Kubernetes objects of a published model, built without a cluster and compared as dicts."""

import re

import pytest

from mlhub.deployers import kube_objects as objects
from mlhub.deployers.base import ModelRef

MODEL = ModelRef("alice", "iris")
VERSION = "sha256:" + "ab" * 32
NAME = objects.object_name(MODEL)
MID = objects.model_id(MODEL)
LABELS = {
    "app.kubernetes.io/name": "mlhub",
    "app.kubernetes.io/managed-by": "mlhub-publisher",
    "app.kubernetes.io/instance": NAME,
    "app.kubernetes.io/component": "mlhub-model",
    "mlhub.io/model-id": MID,
}
ANNOTATIONS = {"mlhub.io/owner": "alice", "mlhub.io/model": "iris"}


def deployment(**kwargs):
    args = {
        "version": VERSION,
        "replicas": 2,
        "image": "mlhub/serving-python:1",
        "bundle_url": "http://pub/api/models/alice/iris/versions/v/bundle",
        "url_prefix": MODEL.url_prefix,
        "hub_api_url": "http://hub:8081/hub/api",
    }
    return objects.make_deployment(MODEL, "models", **{**args, **kwargs})


def test_names_are_dns_labels_for_any_owner_and_unique():
    assert objects.object_name(MODEL).startswith("m-alice-iris-")
    assert NAME.endswith(MID)
    odd = [ModelRef("Jane.Doe@example.org", "iris"), ModelRef("jane-doe-example-org", "iris")]
    names = [objects.object_name(m) for m in odd]
    assert names[0] != names[1]
    long = objects.object_name(ModelRef("x" * 200, "y" * 63))
    for name in [*names, long, objects.object_name(ModelRef("ßß", "a"))]:
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
        assert len(name) <= 63


def test_deployment_rolls_with_no_unavailable_pod_and_probes_the_serving_contract():
    dep = deployment(termination_grace_seconds=10, drain_seconds=3)
    assert dep["apiVersion"] == "apps/v1"
    assert dep["metadata"] == {
        "name": NAME,
        "namespace": "models",
        "labels": {**LABELS, "mlhub.io/version": "ab" * 20},
        "annotations": {**ANNOTATIONS, "mlhub.io/version": VERSION},
    }
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert spec["selector"] == {
        "matchLabels": {"app.kubernetes.io/component": "mlhub-model", "mlhub.io/model-id": MID}
    }
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["annotations"] == {"mlhub.io/version": VERSION}
    assert pod["terminationGracePeriodSeconds"] == 10
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    serving = pod["containers"][0]
    assert serving["readinessProbe"]["httpGet"] == {
        "path": "/models/alice/iris/readyz",
        "port": "http",
    }
    assert serving["livenessProbe"]["httpGet"] == {
        "path": "/models/alice/iris/healthz",
        "port": "http",
    }
    assert serving["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "3"]}}}
    assert serving["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e["value"] for e in serving["env"]}
    assert env == {
        "MLHUB_BUNDLE": f"/srv/mlhub/bundle/{'ab' * 20}",
        "MLHUB_WORKERS": "2",
        "MLHUB_PORT": "8080",
        "MLHUB_URL_PREFIX": "/models/alice/iris",
        "MLHUB_MODEL_OWNER": "alice",
        "MLHUB_MODEL_NAME": "iris",
        "MLHUB_MODEL_VERSION": VERSION,
        "MLHUB_ACCESS_FILE": "/etc/mlhub/access/access.json",
        "MLHUB_AUTH": "on",
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
    }
    assert "command" not in serving  # the image's own entrypoint by default


def test_the_bundle_is_fetched_by_an_init_container_and_the_token_stays_with_it():
    pod = deployment()["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"] == [
        "python3",
        "-m",
        "mlhub.serving",
        "fetch",
        "--url",
        "http://pub/api/models/alice/iris/versions/v/bundle",
        "--digest",
        VERSION,
        "--dest",
        f"/srv/mlhub/bundle/{'ab' * 20}",
    ]
    assert fetch["env"] == [
        {
            "name": "MLHUB_BUNDLE_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": NAME, "key": "bundle-token"}},
        }
    ]
    assert pod["volumes"] == [
        {"name": "bundle", "emptyDir": {}},
        {
            "name": "access",
            "secret": {
                "secretName": NAME,
                "items": [{"key": "access.json", "path": "access.json"}],
            },
        },
    ]
    serving = pod["containers"][0]
    assert all("valueFrom" not in e for e in serving["env"])
    assert {"name": "bundle", "mountPath": "/srv/mlhub/bundle", "readOnly": True} in serving[
        "volumeMounts"
    ]


def test_settings_reach_the_pod():
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    dep = deployment(
        resources=resources,
        command=["serve"],
        env={"MLHUB_REQUEST_TIMEOUT": 60},
        image_pull_policy="Never",
        termination_grace_seconds=1,
        drain_seconds=5,
        workers=4,
    )
    pod = dep["spec"]["template"]["spec"]
    serving = pod["containers"][0]
    assert serving["resources"] == resources
    assert serving["command"] == ["serve"]
    assert serving["imagePullPolicy"] == "Never"
    assert {"name": "MLHUB_REQUEST_TIMEOUT", "value": "60"} in serving["env"]
    assert {"name": "MLHUB_WORKERS", "value": "4"} in serving["env"]
    # the grace period always outlasts the drain, and stays a whole number of seconds (the
    # API refuses 3.5) when the drain (a Float setting shared with the local deployer) is not
    assert pod["terminationGracePeriodSeconds"] == 6
    fraction = deployment(termination_grace_seconds=1, drain_seconds=2.5)["spec"]["template"][
        "spec"
    ]
    assert fraction["terminationGracePeriodSeconds"] == 4
    assert fraction["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "2.5"]


def test_an_alias_has_objects_of_its_own_naming_it():
    staging = ModelRef("alice", "iris", "staging")
    name, mid = objects.object_name(staging), objects.model_id(staging)
    assert name == f"m-alice-iris-staging-{mid}" and mid != MID
    # the default alias keeps the names a model had before aliases
    assert objects.model_id(ModelRef("alice", "iris", None)) == MID
    assert objects.make_service(staging, "models") == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "models",
            "labels": {**LABELS, "app.kubernetes.io/instance": name, "mlhub.io/model-id": mid},
            "annotations": {**ANNOTATIONS, "mlhub.io/alias": "staging"},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/component": "mlhub-model", "mlhub.io/model-id": mid},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    longest = objects.object_name(ModelRef("x" * 200, "y" * 63, "z" * 32))
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", longest) and len(longest) <= 63


def test_service_selects_the_models_pods():
    assert objects.make_service(MODEL, "models") == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": "models",
            "labels": LABELS,
            "annotations": ANNOTATIONS,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/component": "mlhub-model", "mlhub.io/model-id": MID},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def test_secret_holds_key_hashes_and_the_bundle_token():
    secret = objects.make_secret(
        MODEL, "models", access_json='{"key_hashes": ["00"]}', bundle_token="mlhb_x"
    )
    assert secret["stringData"] == {
        "access.json": '{"key_hashes": ["00"]}',
        "bundle-token": "mlhb_x",
    }
    assert secret["metadata"]["labels"] == LABELS
    # the revision names the list (a hash of its JSON), never a key
    assert secret["metadata"]["annotations"] == {
        **ANNOTATIONS,
        "mlhub.io/access-revision": objects.access_revision('{"key_hashes": ["00"]}'),
    }


def test_access_revisions_tell_access_lists_apart():
    one = objects.access_revision('{"groups": [], "key_hashes": ["aa"], "users": []}')
    assert re.fullmatch(r"[0-9a-f]{16}", one)
    assert one == objects.access_revision('{"groups": [], "key_hashes": ["aa"], "users": []}')
    assert one != objects.access_revision('{"groups": [], "key_hashes": [], "users": []}')


def test_the_access_patch_changes_only_the_pods_access_annotation():
    """A metadata-only merge patch: the kubelet syncs the pod (re-mounting its Secret volume),
    the pod's spec and so its containers stay as they are."""
    assert objects.make_access_patch("0123456789abcdef") == {
        "metadata": {"annotations": {"mlhub.io/access-revision": "0123456789abcdef"}}
    }


@pytest.mark.parametrize("api_version", ["policy/v1", "policy/v1beta1"])
def test_pdb(api_version):
    pdb = objects.make_pdb(MODEL, "models", api_version=api_version)
    assert pdb["apiVersion"] == api_version
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {"app.kubernetes.io/component": "mlhub-model", "mlhub.io/model-id": MID}
        },
    }


@pytest.mark.parametrize("api_version", ["autoscaling/v2", "autoscaling/v2beta2"])
def test_hpa(api_version):
    hpa = objects.make_hpa(
        MODEL, "models", min_replicas=3, max_replicas=2, cpu_utilization=60, api_version=api_version
    )
    assert hpa["apiVersion"] == api_version
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
        "minReplicas": 3,
        "maxReplicas": 3,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 60},
                },
            }
        ],
    }


def test_api_versions_are_chosen_from_what_the_cluster_serves():
    old = {"v1", "apps/v1", "policy/v1beta1", "autoscaling/v1", "autoscaling/v2beta2"}
    new = {"v1", "apps/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2"}
    pdb, hpa = ["policy/v1", "policy/v1beta1"], ["autoscaling/v2", "autoscaling/v2beta2"]
    assert objects.pick_api_version(old, pdb) == "policy/v1beta1"
    assert objects.pick_api_version(new, pdb) == "policy/v1"
    assert objects.pick_api_version(old, hpa) == "autoscaling/v2beta2"
    assert objects.pick_api_version(new, hpa) == "autoscaling/v2"
    assert objects.pick_api_version({"v1"}, pdb) is None
