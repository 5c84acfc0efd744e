"""ProfileKubeSpawner without a cluster: the pod it would create for each choice, and refusals.

KubeSpawner is built with its own ``_mock=True``: no API calls; a kubeconfig naming an unused
local port is enough for its client to load, and nothing is ever sent to it.
``get_pod_manifest`` is the real builder of the pod KubeSpawner would create, so the checks
are on the pod spec itself, as a dict.
"""

import pytest
from support.kube_spawner import pod_dict, pod_for
from tornado import web

from mlhub import __version__ as VERSION

GiB = 1024**3


async def test_default_choice_makes_a_non_root_pod_with_the_workspace_pvc(spawner_for):
    spawner = spawner_for()
    pod = await pod_for(spawner)
    [container] = pod["spec"]["containers"]
    assert container["image"] == f"mlhub/notebook-python:{VERSION}"
    assert container["resources"] == {
        "limits": {"cpu": 1.0, "memory": 2 * GiB},
        "requests": {"cpu": 0.25, "memory": GiB},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsGroup": 100,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["spec"]["securityContext"] == {"fsGroup": 100}
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "mlhub-workspace-ada"}} in (
        pod["spec"]["volumes"]
    )
    assert {"name": "workspace", "mountPath": "/home/jovyan"} in container["volumeMounts"]
    assert container["workingDir"] == "/home/jovyan"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLHUB_PROFILE"] == "python"
    assert env["MLHUB_SIZE"] == "small"
    assert env["MLHUB_RUNTIME"] == "python"
    assert env["MLHUB_PUBLISHER_URL"] == "http://hub/services/p/"
    assert container["args"][:3] == ["python", "-m", "mlhub.extension.singleuser"]
    assert "--KernelSpecManager.allowed_kernelspecs=['python3']" in container["args"]
    assert spawner.pvc_name == "mlhub-workspace-ada"
    pvc = pod_dict(spawner.get_pvc_manifest())
    assert pvc["spec"]["resources"] == {"requests": {"storage": "10Gi"}}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


async def test_gpu_size_asks_for_nvidia_gpus_and_r_profile_offers_the_r_kernel(spawner_for):
    pod = await pod_for(spawner_for(options={"profile": "python", "size": "gpu"}))
    [container] = pod["spec"]["containers"]
    gpu = {"cpu": 4.0, "memory": 16 * GiB, "nvidia.com/gpu": "1"}
    assert container["resources"]["limits"] == gpu
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"

    pod = await pod_for(spawner_for(options={"profile": "r", "size": "medium"}))
    [container] = pod["spec"]["containers"]
    assert container["image"] == f"mlhub/notebook-r:{VERSION}"
    assert container["resources"]["limits"] == {"cpu": 2.0, "memory": 4 * GiB}
    assert "--MappingKernelManager.default_kernel_name=ir" in container["args"]


@pytest.fixture
def restricted(tmp_path, monkeypatch):
    """A profile set where "r" is for the group r-users only."""
    from mlhub.profiles import PROFILES_DIR

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name in ("python.yaml", "r.yaml"):
        text = (PROFILES_DIR / name).read_text()
        if name == "r.yaml":
            text += "groups: [r-users]\n"
        (profiles / name).write_text(text)
    monkeypatch.setenv("MLHUB_PROFILES_DIR", str(profiles))
    from mlhub.settings import hub_settings

    hub_settings.cache_clear()
    yield profiles
    hub_settings.cache_clear()


async def test_group_restricted_profile_is_hidden_and_refused_server_side(spawner_for, restricted):
    outsider = spawner_for(options={"profile": "r"})
    assert [p["slug"] for p in outsider.profile_list(outsider)] == ["python"]
    with pytest.raises(web.HTTPError) as refused:
        await outsider.load_user_options()
    assert refused.value.status_code == 403
    assert "restricted to the groups r-users" in refused.value.jupyterhub_message
    with pytest.raises(web.HTTPError) as form:
        outsider.options_from_form({"profile": ["r"], "profile-option-r--size": ["small"]})
    assert form.value.status_code == 403

    member = spawner_for(groups=["r-users"], options={"profile": "r"})
    assert [p["slug"] for p in member.profile_list(member)] == ["python", "r"]
    pod = await pod_for(member)
    assert pod["spec"]["containers"][0]["image"] == f"mlhub/notebook-r:{VERSION}"
    assert member.options_from_form({"profile": ["r"], "profile-option-r--size": ["large"]}) == {
        "profile": "r",
        "size": "large",
    }


async def test_user_with_no_allowed_profile_gets_no_pod(spawner_for, restricted):
    (restricted / "python.yaml").write_text(
        (restricted / "python.yaml").read_text() + "groups: [py-users]\n"
    )
    spawner = spawner_for()
    assert spawner.profile_list(spawner) == []
    with pytest.raises(web.HTTPError) as refused:
        await spawner.load_user_options()
    assert refused.value.status_code == 403
    assert "No profile is available to you" in refused.value.jupyterhub_message


async def test_unknown_size_is_a_bad_request(spawner_for):
    spawner = spawner_for(options={"profile": "python", "size": "huge"})
    with pytest.raises(web.HTTPError) as refused:
        await spawner.load_user_options()
    assert refused.value.status_code == 400
    assert "choose one of: small, medium, large, gpu" in refused.value.jupyterhub_message
