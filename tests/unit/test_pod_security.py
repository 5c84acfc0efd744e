"""Every pod mlhub builds passes the ``restricted`` Pod Security Standard (the rules are in
tests/support/pod_security.py): model Deployments with their init container, batch Jobs and
CronJobs, and the user pod of every shipped profile and size, as KubeSpawner would create it.
The chart's own pods (the publisher, the official chart's hub and proxy) are checked on the
cluster, as the installed release runs them (tests/cluster/test_whole_chart.py)."""

import copy

import pytest
from support.kube_objects import model_deployment
from support.kube_spawner import pod_for
from support.pod_security import pod_specs, violations

from mlhub.batch.kubernetes import make_batch_job
from mlhub.profiles import PROFILES_DIR, load_profiles

GOOD = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "app",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
}


@pytest.mark.parametrize(
    "change, found",
    [
        (lambda s: s.update(hostNetwork=True), "host namespaces: hostNetwork is true"),
        (lambda s: s.update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "hostPath"),
        (lambda s: s["securityContext"].pop("seccompProfile"), "seccompProfile is None"),
        (lambda s: s["securityContext"].pop("runAsNonRoot"), "runAsNonRoot is not true"),
        (
            lambda s: s["containers"][0]["securityContext"].update(privileged=True),
            "containers/app: privileged",
        ),
        (
            lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
                add=["NET_ADMIN"]
            ),
            "adds capabilities ['NET_ADMIN']",
        ),
        (
            # the official chart's block-cloud-metadata init container, as it renders it
            lambda s: s.update(
                initContainers=[
                    {
                        "name": "block-cloud-metadata",
                        "securityContext": {
                            "privileged": True,
                            "runAsUser": 0,
                            "capabilities": {"add": ["NET_ADMIN"]},
                        },
                    }
                ]
            ),
            "initContainers/block-cloud-metadata: privileged",
        ),
    ],
)
def test_the_rules_refuse_what_the_standard_refuses(change, found):
    spec = copy.deepcopy(GOOD)
    assert violations(spec) == []
    change(spec)
    assert any(found in v for v in violations(spec)), violations(spec)


def test_model_deployments_pass_restricted():
    [spec] = pod_specs(model_deployment())
    assert spec["initContainers"]  # the bundle fetch is checked too
    assert violations(spec) == []


@pytest.mark.parametrize("schedule", [None, "0 2 * * *"])
def test_batch_jobs_pass_restricted(schedule):
    job = make_batch_job("nightly", image="i", model="m", source="s", dest="d", schedule=schedule)
    [spec] = pod_specs(job)
    assert violations(spec) == []


CHOICES = [(p.slug, s.slug) for p in load_profiles(PROFILES_DIR) for s in p.sizes]


@pytest.mark.parametrize("profile, size", CHOICES)
async def test_every_profiles_user_pod_passes_restricted(spawner_for, profile, size):  # noqa: F811
    spawner = spawner_for(
        groups=["r-users"], admin=True, options={"profile": profile, "size": size}
    )
    pod = await pod_for(spawner)
    assert violations(pod["spec"]) == []
