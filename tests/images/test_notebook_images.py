"""Each notebook image starts jupyterhub-singleuser and a Jupyter server whose kernels start.

KubeSpawner runs these images' default command (``python -m mlhub.extension.singleuser``, which is
``jupyterhub-singleuser``) with the hub's
``JUPYTERHUB_*`` environment, and the server checks in with the hub's API before it serves.
The hub here is the real hub image (embedded mode, so it needs no cluster), reached through
its proxy on the Docker bridge. The kernels are listed and each is started through the
server's REST API and runs code over its websocket: a kernel that is listed but cannot run
(a broken IRkernel, a missing R library) fails here.
"""

import pytest
import requests
from support.image_containers import run_published, wait_answer
from support.kernel_channel import execute

KERNELS = {
    "notebook-python": {"python3"},
    "notebook-r": {"ir"},
    "notebook-python-r": {"python3", "ir"},
}
TOKEN = "image-test-token"


def run(engine, image, command=None, env=None):
    return run_published(engine, image, 8888, command=command, environment=env)


@pytest.fixture(scope="module")
def hub_api(engine, built):
    """The hub image's API as other containers reach it (through its proxy)."""
    hub, url = run_published(
        engine,
        built["hub"],
        8000,
        command=["mlhub", "up"],
        environment={"MLHUB_MODE": "embedded", "MLHUB_IP": "0.0.0.0"},
    )
    try:
        wait_answer(hub, f"{url}/hub/api")
        hub.reload()
        yield f"http://{hub.attrs['NetworkSettings']['IPAddress']}:8000/hub/api"
    finally:
        hub.remove(force=True)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_singleuser_starts_as_the_hub_would_start_it(engine, built, hub_api, name):
    container, url = run(
        engine,
        built[name],
        env={
            "JUPYTERHUB_SERVICE_PREFIX": "/user/ada/",
            "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/ada/",
            "JUPYTERHUB_API_URL": hub_api,
            "JUPYTERHUB_API_TOKEN": "not-a-real-token",
            "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ada",
            "JUPYTERHUB_USER": "ada",
        },
    )
    try:
        assert "version" in wait_answer(container, f"{url}/user/ada/api").json()
        # The server runs as the image's user, not root.
        code, out = container.exec_run(["id", "-u"])
        assert out.decode().strip() == "1000"
        # Without a hub login the user's pages redirect to the hub's OAuth, not an error.
        lab = requests.get(f"{url}/user/ada/lab", allow_redirects=False)
        assert lab.status_code == 302 and "oauth" in lab.headers["Location"]
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_expected_kernel_is_listed_and_starts(engine, built, name):
    container, url = run(
        engine,
        built[name],
        ["jupyter", "server", "--ip=0.0.0.0", "--port=8888", f"--IdentityProvider.token={TOKEN}"],
    )
    auth = {"Authorization": f"token {TOKEN}"}
    try:
        specs = wait_answer(container, f"{url}/api/kernelspecs", auth).json()["kernelspecs"]
        assert KERNELS[name] <= set(specs)
        for kernel in KERNELS[name]:
            started = requests.post(f"{url}/api/kernels", json={"name": kernel}, headers=auth)
            assert started.status_code == 201, started.text
            kernel_id = started.json()["id"]
            code = "print(6 * 7)" if kernel == "python3" else "cat(6 * 7)"
            assert execute(url, kernel_id, code, TOKEN) == "42", (kernel, container.logs().decode())
        # The mlhub server extension is loaded: its route answers, saying what is missing.
        status = requests.get(f"{url}/mlhub/api/status", headers=auth)
        assert status.status_code == 200, status.text
        assert status.json()["publisher"]["reachable"] is False
        assert "MLHUB_PUBLISHER_URL" in status.text
    finally:
        container.remove(force=True)
