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

import contextlib
import secrets
import textwrap

import pytest
import requests
from support.embedded_hub import EmbeddedHub, wait_for
from support.kubetest import BRIDGE_IP
from support.labpage import SUBMIT, log_in, notebook, wait_for_kernel
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

USER = "ada"
# Every page load: copy the spawn page's event log (#progress-log) to sessionStorage.
RECORD_PROGRESS = """
new MutationObserver(() => {
  const events = [...document.querySelectorAll('.progress-log-event')].map((e) => e.textContent);
  if (events.length) sessionStorage.setItem('progress', JSON.stringify(events));
}).observe(document, {subtree: true, childList: true});
"""
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


@contextlib.contextmanager
def kube_mode_hub(tmp_path_factory, kube_cluster, kube_api, extra_config=""):
    """A real ``mlhub up`` in kubernetes mode, spawning into a namespace of its own, with a
    PersistentVolume for ``USER``'s workspace claim; ``USER`` exists (``hub.password``)."""
    suffix = secrets.token_hex(3)
    namespace = storage_class = f"mlhub-spawn-{suffix}"
    kube_api.create_namespace(namespace)
    volume = tmp_path_factory.mktemp("workspace")
    volume.chmod(0o777)
    config = textwrap.dedent(
        f"""
        c.MlhubSettings.mode = "kubernetes"
        c.MlhubSettings.internal_ip = {BRIDGE_IP!r}
        c.KubeSpawner.namespace = {namespace!r}
        c.KubeSpawner.storage_class = {storage_class!r}
        c.KubeSpawner.storage_capacity = "1Gi"
        c.KubeSpawner.image_pull_policy = "Never"
        c.KubeSpawner.delete_grace_period = 1
        """
    ) + textwrap.dedent(extra_config)
    hub = EmbeddedHub(tmp_path_factory.mktemp("kubespawn"), config=config)
    try:
        kube_api.create_host_path_volume(storage_class, volume)
        # KubeSpawner's client reads $KUBECONFIG once, when the hub imports it
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KUBECONFIG", kube_cluster.kubeconfig)
            hub.start()
        hub.namespace, hub.volume = namespace, volume
        hub.password = hub.add_user(USER)
        yield hub
        hub.stop()
    finally:
        hub.kill()
        kube_api.delete_namespace(namespace)
        kube_api.request("DELETE", f"/api/v1/persistentvolumes/{storage_class}")


@pytest.fixture(scope="module")
def kube_hub(tmp_path_factory, kube_cluster, kube_api, notebook_images):
    with kube_mode_hub(tmp_path_factory, kube_cluster, kube_api) as hub:
        yield hub


def stop_server(hub, session):
    hub.hub_api(session, "DELETE", f"/users/{USER}/server").raise_for_status()

    def stopped():
        model = hub.hub_api(session, "GET", f"/users/{USER}").json()
        return "" not in model["servers"]

    wait_for(stopped, f"{USER}'s server to stop", timeout=120)


def spawn_profile_in_browser(page, url, namespace, kube_api, auth, profile):
    """On the hub at ``url`` (``USER`` logged in on ``page``, which records the progress log):
    pick ``profile`` (size small) on KubeSpawner's form, see the pod's events on the progress
    page, get a pod of the profile's image with mlhub's security context and workspace, and
    JupyterLab with the profile's kernels, one of them idle in a notebook."""
    page.goto(f"{url}hub/spawn")
    # KubeSpawner's form: one radio per allowed profile, the sizes as its options
    page.check(f"input[name=profile][value={profile.slug}]")
    page.select_option(f"select[name='profile-option-{profile.slug}--size']", "small")
    page.evaluate("sessionStorage.removeItem('progress')")
    page.click(SUBMIT)
    page.wait_for_url(f"**/user/{USER}/lab**", timeout=240_000)
    # the progress page showed the pod's own events while it started
    events = page.evaluate("JSON.parse(sessionStorage.getItem('progress') || '[]')")
    assert any(f"Successfully assigned {namespace}/jupyter-{USER}" in e for e in events), events

    pod = kube_api.get(f"/api/v1/namespaces/{namespace}/pods/jupyter-{USER}")
    [container] = pod["spec"]["containers"]
    assert container["image"] == profile.image
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["runAsNonRoot"] is True
    claim = {"claimName": f"mlhub-workspace-{USER}"}
    assert {"name": "workspace", "persistentVolumeClaim": claim} in pod["spec"]["volumes"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["MLHUB_PROFILE"], env["MLHUB_SIZE"]) == (profile.slug, "small")

    # JupyterLab from the pod, with the profile's kernels only
    specs = requests.get(f"{url}user/{USER}/api/kernelspecs", headers=auth, timeout=30).json()
    assert set(specs["kernelspecs"]) == set(profile.kernels)
    filename, kernel = f"{profile.slug}.ipynb", profile.kernels[0]
    requests.put(
        f"{url}user/{USER}/api/contents/{filename}",
        json={"type": "notebook", "content": notebook([], kernel, kernel, "")},
        headers=auth,
        timeout=30,
    ).raise_for_status()
    # ?reset: not the tabs of the previous server (its notebooks' kernels may not be here)
    page.goto(f"{url}user/{USER}/lab/tree/{filename}?reset")
    assert wait_for_kernel(page, timeout=180_000).endswith(" | Idle")


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
