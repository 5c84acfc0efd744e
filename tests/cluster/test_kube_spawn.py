"""The hub in Kubernetes mode on the real test cluster, driven in headless Chromium.

A real ``mlhub up`` with ``MlhubSettings.mode = "kubernetes"`` (the same jupyterhub_config.py;
the hub process runs on this machine, its API on the docker bridge where pods reach it). A user
logs in through the form, picks each shipped profile (whose image the images pipeline built) on
KubeSpawner's spawn page, watches the pod's events on the progress page, and gets JupyterLab
from a pod of the profile's notebook image, with a kernel of the profile. The workspace is one
PVC per user: a file saved in the first server is there in the next one.

The test cluster has no volume provisioner, so the test makes the user's PersistentVolume
(hostPath) in a storage class of its own; KubeSpawner makes the claim, as on a real cluster.
"""

import pytest
import requests
from support.embedded_hub import wait_for
from support.kube_hub import (
    RECORD_PROGRESS,
    USER,
    kube_mode_hub,
    spawn_profile_in_browser,
    stop_server,
)
from support.labpage import log_in
from support.standard_images import standard_images

from mlhub.profiles import load_profiles

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.component,
    # a cold machine builds the notebook images first (cached by content afterwards)
    pytest.mark.timeout(3600),
]

PROFILES = load_profiles()


@pytest.fixture(scope="module")
def notebook_images(kube_cluster):
    """The profiles whose notebook image is in the cluster's engine (all of them once the
    images pipeline builds them)."""
    present = standard_images([p.image for p in PROFILES])
    usable = [p for p in PROFILES if p.image in present]
    if not usable:
        pytest.skip("no notebook image: `mlhub images build notebook-python` makes it (issue 4)")
    return usable


@pytest.fixture(scope="module")
def kube_hub(tmp_path_factory, kube_cluster, kube_api, notebook_images):
    with kube_mode_hub(tmp_path_factory, kube_cluster, kube_api) as hub:
        yield hub


def test_each_profile_spawns_its_image_and_loads_jupyterlab(
    kube_hub, kube_api, browser_page, notebook_images
):
    hub, page = kube_hub, browser_page
    session = hub.login(USER, hub.password)
    log_in(page, hub.url, USER, hub.password)
    # the spawn page reloads itself when the server is ready: keep what its event log showed
    page.add_init_script(RECORD_PROGRESS)
    token = hub.token(USER, hub.password)
    auth = {"Authorization": f"token {token}"}

    for i, profile in enumerate(notebook_images):
        spawn_profile_in_browser(page, hub.url, hub.namespace, kube_api, auth, profile)

        # the workspace persists across servers: the earlier profiles' notebooks are here
        contents = f"{hub.url}user/{USER}/api/contents"
        listing = requests.get(contents, headers=auth, timeout=30).json()
        names = {item["name"] for item in listing["content"]}
        assert {f"{p.slug}.ipynb" for p in notebook_images[: i + 1]} <= names
        stop_server(hub, session)

    # the workspace claim outlives the servers (and sits on the test's volume)
    claim = kube_api.get(
        f"/api/v1/namespaces/{hub.namespace}/persistentvolumeclaims/mlhub-workspace-{USER}"
    )
    assert claim["status"]["phase"] == "Bound"
    saved = {f.name for f in hub.volume.iterdir()}
    assert {f"{p.slug}.ipynb" for p in notebook_images} <= saved


def test_an_idle_server_is_stopped_by_the_culler(
    tmp_path_factory, kube_cluster, kube_api, notebook_images
):
    """jupyterhub-idle-culler with only its four scopes stops a server nobody uses; the
    workspace claim stays. (A short timeout here; the default is an hour.)"""
    culling = "c.IdleCuller.timeout = 20\nc.IdleCuller.every = 5\n"
    with kube_mode_hub(tmp_path_factory, kube_cluster, kube_api, culling) as hub:
        session = hub.login(USER, hub.password)
        options = {"profile": notebook_images[0].slug}
        start = hub.hub_api(session, "POST", f"/users/{USER}/server", json=options)
        assert start.status_code in (201, 202), start.text
        hub.wait_ready(session, USER)

        def culled():
            return "" not in hub.hub_api(session, "GET", f"/users/{USER}").json()["servers"]

        wait_for(culled, "the culler to stop the idle server", timeout=180, interval=2)
        # stopped by the culler (its log line, in the hub's log), not by a crash
        log = (hub.data_dir / "logs" / "jupyterhub.log").read_text()
        assert f"Culling server {USER}" in log
        claims = kube_api.get(
            f"/api/v1/namespaces/{hub.namespace}/persistentvolumeclaims/mlhub-workspace-{USER}"
        )
        assert claims["status"]["phase"] == "Bound"
        pods = f"/api/v1/namespaces/{hub.namespace}/pods"
        pods = kube_api.items(pods, "component=singleuser-server")
        assert pods == [] or all(p["metadata"].get("deletionTimestamp") for p in pods)
