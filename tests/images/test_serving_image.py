"""The serving-python image serves a scikit-learn bundle with the whole serving contract.

The bundle is made here with ``mlhub.bundle.save_bundle`` (the image pins the same
scikit-learn as the developer environment) and reaches the container the two ways the image
supports: a read-only mount, or fetched at start from an HTTP server with a token. The
fetch server listens on the Docker bridge's own address (containers reach the host there),
never on another network.
"""

import hashlib
import json
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.ensemble import RandomForestClassifier
from support.image_containers import run_published, wait_answer
from support.standin_http import StandInHandler, StandInServer

from mlhub.bundle import bundle_digest, pack, save_bundle
from mlhub.image_pipeline.smoke import published_port

KEY = "mlhk_image-test-key"


@pytest.fixture(scope="module")
def serving(built):
    return built["serving-python"]


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(7)
    return pd.DataFrame({"temp": rng.normal(size=200), "pressure": rng.normal(size=200)})


@pytest.fixture(scope="module")
def model(frame):
    y = (frame["temp"] + frame["pressure"] > 0).astype(int)
    return RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, y)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, model, frame):
    path = tmp_path_factory.mktemp("bundle") / "defects"
    save_bundle(model, path, name="defects", example=frame.head(3))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def access(tmp_path_factory):
    path = tmp_path_factory.mktemp("access") / "access.json"
    path.write_text(json.dumps({"key_hashes": [hashlib.sha256(KEY.encode()).hexdigest()]}))
    path.chmod(0o644)
    return path


def start(engine, image, env=None, volumes=None):
    return run_published(engine, image, 8080, environment=env, volumes=volumes)


def wait_ready(container, url, timeout=90):
    return wait_answer(container, f"{url}/readyz", timeout=timeout, interval=0.3).json()


@pytest.fixture(scope="module")
def server(engine, serving, bundle, access):
    container, url = start(
        engine,
        serving,
        env={
            "MLHUB_ACCESS_FILE": "/etc/mlhub/access.json",
            "MLHUB_WORKERS": "3",
            "MLHUB_MAX_BODY_BYTES": "4096",
            "MLHUB_URL_PREFIX": "/models/alice/defects",
        },
        volumes={
            str(bundle): {"bind": "/var/lib/mlhub/bundle", "mode": "ro"},
            str(access): {"bind": "/etc/mlhub/access.json", "mode": "ro"},
        },
    )
    try:
        wait_ready(container, url)
        yield url
    finally:
        container.remove(force=True)


AUTH = {"Authorization": f"token {KEY}"}


def test_predictions_equal_the_model_in_process(server, model, frame):
    rows = frame.head(20)
    reply = requests.post(
        f"{server}/v1/predict", json={"instances": rows.to_dict("records")}, headers=AUTH
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == model.predict(rows).tolist()
    # rows in signature order, with the prefix, and with probabilities
    reply = requests.post(
        f"{server}/models/alice/defects/v1/predict?proba=true",
        json={"instances": rows.values.tolist()},
        headers=AUTH,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == model.predict(rows).tolist()
    assert np.allclose(reply.json()["probabilities"], model.predict_proba(rows))


def test_the_rest_of_the_contract(server, bundle):
    assert requests.get(f"{server}/healthz").json()["status"] == "ok"
    ready = requests.get(f"{server}/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == bundle_digest(bundle)
    meta = requests.get(f"{server}/v1/metadata", headers=AUTH).json()
    assert meta["name"] == "defects" and meta["flavor"] == "sklearn"
    v2 = requests.post(
        f"{server}/v2/models/defects/infer",
        json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [2.0, 2.0]}]},
        headers=AUTH,
    )
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [1], v2.text
    assert requests.get(f"{server}/v2/models/defects/ready", headers=AUTH).status_code == 200
    assert "/v1/predict" in requests.get(f"{server}/openapi.json", headers=AUTH).json()["paths"]
    metrics = requests.get(f"{server}/metrics", headers=AUTH).text
    assert "mlhub_requests_total" in metrics
    # MLHUB_WORKERS from the container's environment reached uWSGI
    assert "mlhub_workers 3" in metrics


def test_bad_input_gets_a_json_4xx_and_serving_goes_on(server):
    cases = [
        (b"{not json", {}, 400, "invalid_input"),
        (json.dumps({"instances": [{"temp": "hot", "pressure": 1}]}).encode(), {}, 400, "temp"),
        (json.dumps({"instances": [[1.0]]}).encode(), {}, 400, "invalid_input"),
        (b"x" * 5000, {}, 413, "payload_too_large"),  # nginx, at MLHUB_MAX_BODY_BYTES
    ]
    for body, headers, status, text in cases:
        reply = requests.post(
            f"{server}/v1/predict",
            data=body,
            headers={"Content-Type": "application/json", **AUTH, **headers},
        )
        assert reply.status_code == status, (body[:40], reply.text)
        assert reply.headers["Content-Type"].startswith("application/json")
        assert text in reply.text and "error" in reply.json()
    assert requests.post(f"{server}/v1/predict", json={"instances": [[1, 2]]}).status_code == 401
    wrong = requests.post(
        f"{server}/v1/predict", json={"instances": [[1, 2]]}, headers={"X-Api-Key": "mlhk_no"}
    )
    assert wrong.status_code == 401
    assert requests.get(f"{server}/nowhere", headers=AUTH).status_code == 404
    ok = requests.post(f"{server}/v1/predict", json={"instances": [[1, 2]]}, headers=AUTH)
    assert ok.status_code == 200


class BundleServer(StandInServer):
    """Serves one packed bundle at /bundle.tar.gz to requests with the right token; ``hold``
    makes it wait before answering (a slow network), so a test can act mid-fetch."""

    def __init__(self, host, archive, token):
        self.hold = threading.Event()
        self.hold.set()
        self.requests = 0
        outer = self

        class Handler(StandInHandler):
            def do_GET(self):
                outer.requests += 1
                outer.hold.wait(60)
                if self.headers.get("Authorization") != f"token {token}":
                    self.send_error(401)
                    return
                self.reply(200, archive, "application/gzip")

        super().__init__(Handler, host)
        self.url += "/bundle.tar.gz"

    def close(self):
        self.hold.set()
        super().close()


def bridge_address():
    """The host's address on Docker's default bridge (docker0), which containers reach."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=True
    ).stdout
    return out.split(" inet ", 1)[1].split("/", 1)[0]


@pytest.fixture
def bundle_server(engine, bundle):
    server = BundleServer(bridge_address(), pack(bundle), token="s3cret-fetch-token")
    yield server
    server.close()


def fetch_env(bundle_server, bundle, token="s3cret-fetch-token"):
    return {
        "MLHUB_BUNDLE_URL": bundle_server.url,
        "MLHUB_BUNDLE_TOKEN": token,
        "MLHUB_MODEL_VERSION": bundle_digest(bundle),
        "MLHUB_AUTH": "off",
        "MLHUB_WORKERS": "1",
    }


SERVER_ENVIRONMENTS = """
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) != os.getpid():
        with open(f"/proc/{pid}/cmdline", "rb") as f, open(f"/proc/{pid}/environ", "rb") as e:
            print(f.read().replace(b"\\0", b" ")[:60], e.read())
"""


def digest_inside(container):
    code, out = container.exec_run(
        [
            "python",
            "-c",
            "from mlhub.bundle import bundle_digest; print(bundle_digest('/var/lib/mlhub/bundle'))",
        ]
    )
    assert code == 0, out
    return out.decode().strip()


def test_fetched_bundle_is_ready_only_after_it_loaded_and_survives_a_kill(
    engine, serving, bundle, bundle_server, model, frame
):
    bundle_server.hold.clear()  # the fetch hangs until we let it go
    container, url = start(engine, serving, env=fetch_env(bundle_server, bundle))
    try:
        deadline = time.monotonic() + 30
        while bundle_server.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bundle_server.requests == 1
        with pytest.raises(requests.ConnectionError):  # nothing listens before the model is in
            requests.get(f"{url}/readyz", timeout=2)
        # Killed in the middle of the fetch: nothing half-written may count as the bundle.
        container.kill()
        container.wait(timeout=30)
        bundle_server.hold.set()
        container.start()
        url = f"http://127.0.0.1:{published_port(container, 8080)}"
        assert wait_ready(container, url)["version"] == bundle_digest(bundle)
        assert digest_inside(container) == bundle_digest(bundle)
        # The token is in no server process (nor in PID 1, which re-executed itself without
        # it). `docker exec` gives its own process the container's environment: skip that one.
        code, out = container.exec_run(["python", "-c", SERVER_ENVIRONMENTS])
        assert code == 0 and b"uwsgi" in out and b"nginx" in out, out
        assert b"s3cret-fetch-token" not in out

        # Killed in the middle of a request: the request fails, nothing else does.
        def slow_body():
            yield b'{"instances": ['
            time.sleep(1.5)
            yield b"[1.0, 2.0]]}"

        errors = []

        def call():
            try:
                requests.post(f"{url}/v1/predict", data=slow_body(), timeout=30)
            except requests.RequestException as e:
                errors.append(e)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)
        container.kill()
        caller.join(30)
        assert errors, "the request was cut by the kill"
        container.wait(timeout=30)
        fetches = bundle_server.requests
        container.start()
        url = f"http://127.0.0.1:{published_port(container, 8080)}"
        assert wait_ready(container, url)["version"] == bundle_digest(bundle)
        assert bundle_server.requests == fetches, "an intact bundle is not fetched again"
        assert digest_inside(container) == bundle_digest(bundle)
        rows = frame.head(5)
        reply = requests.post(f"{url}/v1/predict", json={"instances": rows.values.tolist()})
        assert reply.json()["predictions"] == model.predict(rows).tolist()
    finally:
        container.remove(force=True)


def test_a_wrong_token_or_digest_stops_the_container_with_the_reason(
    engine, serving, bundle, bundle_server
):
    for env, reason in (
        (fetch_env(bundle_server, bundle, token="wrong"), "the publisher answered 401"),
        (
            {**fetch_env(bundle_server, bundle), "MLHUB_MODEL_VERSION": "sha256:" + "0" * 64},
            "not the version sha256:000",
        ),
        (
            {**fetch_env(bundle_server, bundle), "MLHUB_MODEL_VERSION": ""},
            "MLHUB_BUNDLE_URL needs MLHUB_MODEL_VERSION=sha256:",
        ),
        ({"MLHUB_AUTH": "off"}, "no model bundle at /var/lib/mlhub/bundle"),
    ):
        container = engine.containers.run(serving, environment=env, detach=True)
        try:
            assert container.wait(timeout=60)["StatusCode"] == 2
            assert reason in container.logs().decode()
        finally:
            container.remove(force=True)
