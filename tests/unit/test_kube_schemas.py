"""Every object mlhub builds is valid for Kubernetes 1.28 and the newest schemas (strict), at
the API versions the publisher picks there (tests/support/kube_schemas.py); the rendered chart is
checked the same way on the cluster (tests/cluster/test_whole_chart.py)."""

import pytest
from support.kube_objects import model_deployment
from support.kube_schemas import VERSIONS, schema_errors

from mlhub.batch.kubernetes import make_batch_job
from mlhub.deployers.base import ModelRef
from mlhub.deployers.kube_objects import make_hpa, make_pdb, make_secret, make_service

MODEL = ModelRef("alice", "iris")

BUILT = {
    "Deployment": model_deployment,
    "Service": lambda: make_service(MODEL, "models"),
    "PodDisruptionBudget": lambda: make_pdb(MODEL, "models"),
    "HorizontalPodAutoscaler": lambda: make_hpa(MODEL, "models", min_replicas=1, max_replicas=4),
    "Secret": lambda: make_secret(MODEL, "models", access_json="{}", bundle_token="t"),
    "Job": lambda: make_batch_job("nightly", image="i", model="m", source="s", dest="d"),
    "CronJob": lambda: make_batch_job(
        "nightly", image="i", model="m", source="s", dest="d", schedule="0 2 * * *"
    ),
}


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_built_objects_are_valid_for_1_28_and_the_newest_kubernetes(kind):
    obj = BUILT[kind]()
    assert obj["kind"] == kind
    assert schema_errors(obj) == []


def test_the_check_refuses_an_unknown_field_and_a_removed_api():
    service = make_service(MODEL, "models")
    service["spec"]["prots"] = service["spec"].pop("ports")
    assert any("'prots' was unexpected" in e for e in schema_errors(service))
    # what 1.20 served and 1.25 removed
    old = make_pdb(MODEL, "models", api_version="policy/v1beta1")
    name = f"policy/v1beta1 PodDisruptionBudget {old['metadata']['name']}"
    assert schema_errors(old) == [f"{name} on {v}: no such kind in that version" for v in VERSIONS]
