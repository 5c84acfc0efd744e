"""Helpers of the tests that publish to a live hub (``support.embedded_hub``) and call the
models through its proxy, as users do: a bundle told apart by what it predicts, a publisher
client, a prediction, and what a published model runs as."""

import json
import os
import subprocess

import numpy as np
import requests
import yaml
from sklearn.dummy import DummyRegressor

from mlhub.bundle import save_bundle
from mlhub.publisher.client import PublisherClient
from support.embedded_hub import VENV_BIN, process_table


def constant_bundle(path, value, name="const"):
    """A bundle whose model predicts ``value`` for every row: versions are told apart by it."""
    model = DummyRegressor(strategy="constant", constant=value).fit(np.zeros((2, 2)), [0, 0])
    save_bundle(model, path, name=name, example=[[0.0, 0.0]])
    return path


def as_an_older_library_answered(bundle, row, answer):
    """Change a bundle's parity record as a notebook with scikit-learn 0.24 would have written
    it: ``answer`` for ``row``, and that version pinned. Returns the bundle."""
    record = json.loads((bundle / "parity.json").read_text())
    record["predictions"][row] = answer
    (bundle / "parity.json").write_text(json.dumps(record))
    manifest = yaml.safe_load((bundle / "mlhub.yaml").read_text())
    manifest["requirements"] = [
        "scikit-learn==0.24.2" if r.startswith("scikit-learn==") else r
        for r in manifest["requirements"]
    ]
    (bundle / "mlhub.yaml").write_text(yaml.safe_dump(manifest))
    return bundle


def client(hub, token):
    return PublisherClient(url=hub.url, token=token, poll_interval=0.2)


def models_cli(hub, token, *args):
    """``mlhub models ARGS`` as a user who logged in (``token`` in the environment), as a
    terminal runs it: ``(exit code, stdout, stderr)``."""
    done = subprocess.run(
        [f"{VENV_BIN}/mlhub", "models", *args],
        env={**os.environ, "MLHUB_URL": hub.url, "MLHUB_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


def predict(hub, owner, name, token, rows=([1.0, 2.0],)):
    return requests.post(
        f"{hub.url}models/{owner}/{name}/v1/predict",
        json={"instances": list(rows)},
        headers={"Authorization": f"token {token}"} if token else {},
        timeout=30,
    )


def processes_serving(path):
    """Pids working in ``path`` (the unpacked bundles of one model): every process of a serving
    instance runs in its bundle directory, also one the fork server forked (whose command line
    is the fork server's)."""
    root = os.path.realpath(path) + os.sep
    pids = []
    for pid in process_table():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if (cwd + os.sep).startswith(root):
            pids.append(pid)
    return pids


def live_instance(hub, name):
    (instance,) = [i for i in hub.client.get(name)["instances"] if i["state"] == "live"]
    return instance


def steps(hub, name):
    return [e["step"] for e in hub.client.events(name)]


def model_pids(hub, owner, name):
    """Pids of every process serving ``owner``'s model (each works in one of its bundles)."""
    return processes_serving(hub.data_dir / "models" / owner / name)
