"""A real ``mlhub up`` in Kubernetes mode against the test cluster, and the browser steps of a user
spawning a profile there: shared by the cluster tests that log in and spawn."""

import contextlib
import secrets
import textwrap

import pytest
import requests

from support.embedded_hub import EmbeddedHub, wait_for
from support.kubetest import BRIDGE_IP
from support.labpage import SUBMIT, notebook, wait_for_kernel

USER = "ada"


# Every page load: copy the spawn page's event log (#progress-log) to sessionStorage.
RECORD_PROGRESS = """
new MutationObserver(() => {
  const events = [...document.querySelectorAll('.progress-log-event')].map((e) => e.textContent);
  if (events.length) sessionStorage.setItem('progress', JSON.stringify(events));
}).observe(document, {subtree: true, childList: true});
"""


def kube_mode_config(namespace, storage_class):
    """The mlhub config of a hub in kubernetes mode on the test cluster: user pods in
    ``namespace``, workspaces claimed in ``storage_class``, images from the node's engine."""
    return textwrap.dedent(
        f"""
        c.MlhubSettings.mode = "kubernetes"
        c.MlhubSettings.internal_ip = {BRIDGE_IP!r}
        c.KubeSpawner.namespace = {namespace!r}
        c.KubeSpawner.storage_class = {storage_class!r}
        c.KubeSpawner.storage_capacity = "1Gi"
        c.KubeSpawner.image_pull_policy = "Never"
        c.KubeSpawner.delete_grace_period = 1
        """
    )


@contextlib.contextmanager
def kube_mode_hub(tmp_path_factory, kube_cluster, kube_api, extra_config=""):
    """A real ``mlhub up`` in kubernetes mode, spawning into a namespace of its own, with a
    PersistentVolume for ``USER``'s workspace claim; ``USER`` exists (``hub.password``)."""
    suffix = secrets.token_hex(3)
    namespace = storage_class = f"mlhub-spawn-{suffix}"
    kube_api.create_namespace(namespace)
    volume = tmp_path_factory.mktemp("workspace")
    volume.chmod(0o777)
    config = kube_mode_config(namespace, storage_class) + textwrap.dedent(extra_config)
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
