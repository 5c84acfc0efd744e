"""The hub in Kubernetes mode as a real process: ``mlhub up`` with ``MlhubSettings.mode =
"kubernetes"``, so the same jupyterhub_config.py runs KubeSpawner (mlhub's ProfileKubeSpawner)
and the idle culler. This layer checks what needs no cluster; pods are spawned on the real test
cluster in tests/e2e/test_kube_spawn.py.

- KubeSpawner's spawn page lists only the profiles the user's groups allow, with their sizes;
- a profile the user may not use, sent by hand, is refused by the hub with mlhub's message
  before any pod is attempted, through the form and through the REST API;
- jupyterhub-idle-culler runs as a hub service, and its hub API calls succeed with the four
  scopes of its role.

KubeSpawner loads a kubeconfig when the hub starts; it names a closed port on this machine, and
nothing here makes the hub call it (a refused choice never reaches the API).
"""

import shutil

import pytest
from support.embedded_hub import EmbeddedHub, wait_for
from support.kube_spawner import UNREACHABLE_KUBECONFIG

from mlhub.profiles import PROFILES_DIR

pytestmark = [pytest.mark.component, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("kubemode")
    profiles = root / "profiles"
    shutil.copytree(PROFILES_DIR, profiles, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    with open(profiles / "r.yaml", "a") as f:
        f.write("groups: [r-users]\n")
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    instance = EmbeddedHub(
        root,
        profiles_dir=profiles,
        config='c.MlhubSettings.mode = "kubernetes"\nc.IdleCuller.every = 2\n',
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            # KubeSpawner's client reads $KUBECONFIG once, when the hub imports it
            mp.setenv("KUBECONFIG", str(kubeconfig))
            instance.start()
        yield instance
        assert instance.stop() == 0
    finally:
        instance.kill()


def spawn_form(hub, session, profile, size):
    return session.post(
        hub.url + "hub/spawn",
        data={"profile": profile, f"profile-option-{profile}--size": size, "_xsrf": session.xsrf},
        timeout=60,
    )


def test_spawn_page_lists_the_profiles_the_groups_allow(hub):
    ada = hub.login("ada", hub.add_user("ada"))
    page = ada.get(hub.url + "hub/spawn", timeout=60).text
    assert 'id="kubespawner-profiles-list"' in page  # KubeSpawner's own form
    assert 'value="python"' in page and 'value="python-r"' in page
    assert 'value="r"' not in page
    assert "GPU: 4 CPU, 16 GB, 1 GPU" in page  # the sizes are the profile's options

    ben = hub.login("ben", hub.add_user("ben", "r-users"))
    page = ben.get(hub.url + "hub/spawn", timeout=60).text
    assert 'value="r"' in page


def test_a_forbidden_profile_is_refused_before_any_pod(hub):
    cleo = hub.login("cleo", hub.add_user("cleo"))
    refused = spawn_form(hub, cleo, "r", "small")
    assert refused.status_code == 403
    assert "The profile &#39;R&#39; is restricted to the groups r-users" in refused.text
    assert "you are in no group" in refused.text

    unknown = spawn_form(hub, cleo, "python", "huge")
    assert unknown.status_code == 400
    assert "choose one of: small, medium, large, gpu" in unknown.text

    # the REST API gets the same check and answer (KubeSpawner's load_user_options)
    api = hub.hub_api(cleo, "POST", "/users/cleo/server", json={"profile": "r"})
    assert api.status_code == 403, api.text
    assert "restricted to the groups r-users" in api.json()["message"]

    def failed():
        model = hub.hub_api(cleo, "GET", "/users/cleo").json()
        return "" not in model["servers"] and model.get("pending") is None

    wait_for(failed, "the refused spawn to end")
    log = (hub.data_dir / "logs" / "jupyterhub.log").read_text()
    assert "Refused {'profile': 'r'} for cleo" in log
    # nothing was sent to the (unreachable) Kubernetes API for cleo
    assert "jupyter-cleo" not in log


def test_idle_culler_runs_with_its_own_scopes(hub):
    admin = hub.login("admin", hub.admin_password())
    service = hub.hub_api(admin, "GET", "/services/idle-culler").json()
    assert service["roles"] == ["idle-culler"]
    log = hub.data_dir / "logs" / "jupyterhub.log"

    def polled():
        return "200 GET /hub/api/users?state=[secret] (idle-culler@" in log.read_text()

    wait_for(polled, "the culler's first round", timeout=60)
    assert "403" not in "".join(
        line for line in log.read_text().splitlines(keepends=True) if "idle-culler@" in line
    )
