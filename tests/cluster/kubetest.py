"""Helpers of the cluster tests: the test cluster (scripts/kube-cluster), a serving image in its
Docker engine, and a small synchronous client of the real API server for assertions.

The cluster is shared like the Docker engine: ``Cluster.up()`` starts it only if it is not
running and ``down()`` stops it only if this session started it.
"""

import hashlib
import importlib.metadata
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import requests
import urllib3
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kube-cluster"
DOCKERFILE = Path(__file__).with_name("Dockerfile.serving-test")
CA_DIR = Path("/usr/local/share/ca-certificates")
# what the serving runtime and the test models need, at the versions the test venv pickles with
IMAGE_PACKAGES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "joblib",
    "threadpoolctl",
    "flask",
    "orjson",
    "uwsgi",
    "PyYAML",
    "jsonschema",
    "cloudpickle",
    "requests",
)
SOURCES = (
    "setup.py",
    "pyproject.toml",
    "hub",
    "spawner_profiles",
    "images/serving-python/serving",
    "extension/python",
    "extension/jupyter-config",
)


class Cluster:
    def __init__(self):
        self.started = False
        self.kubeconfig = None

    def running(self):
        return subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0

    def up(self):
        if not self.running():
            subprocess.run([SCRIPT, "up"], check=True)
            self.started = True
        env = subprocess.run([SCRIPT, "env"], capture_output=True, text=True, check=True).stdout
        self.kubeconfig = env.strip().split("=", 1)[1]
        return self

    def down(self):
        if self.started:
            subprocess.run([SCRIPT, "down"], check=True)


def _pip_packages():
    return [f"{p}=={importlib.metadata.version(p)}" for p in IMAGE_PACKAGES]


def _ca_files():
    return sorted(CA_DIR.glob("*.crt")) if CA_DIR.is_dir() else []


def _source_files():
    """The project's files as git sees them (tracked, or new and not ignored): what
    ``pip install`` of the project needs, without .venv, data or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in sorted(filter(None, listed.split("\0"))):
        path = ROOT / name
        if path.is_file() and not name.startswith(("tests/", "bench/", "docs/")):
            yield path


def serving_image():
    """A serving image in the shared Docker engine, built if its inputs changed (tag = their
    hash, so a second run reuses it)."""
    digest = hashlib.sha256(DOCKERFILE.read_bytes())
    digest.update(" ".join(_pip_packages()).encode())
    for f in _source_files():
        digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    for f in _ca_files():
        digest.update(f.read_bytes())
    tag = f"mlhub-test/serving-python:{digest.hexdigest()[:16]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    with tempfile.TemporaryDirectory() as ctx:
        for f in _source_files():
            target = Path(ctx, "src", f.relative_to(ROOT))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        shutil.copy2(DOCKERFILE, Path(ctx, "Dockerfile"))
        Path(ctx, "ca").mkdir()
        for f in _ca_files():
            shutil.copy2(f, Path(ctx, "ca", f.name))
        subprocess.run(
            [
                "docker",
                "build",
                "-q",
                "-t",
                tag,
                "--build-arg",
                f"PIP_PACKAGES={' '.join(_pip_packages())}",
                ctx,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return tag


class KubeAPI:
    """GET/POST/DELETE on the API server with the kubeconfig's token (tests only)."""

    def __init__(self, kubeconfig):
        conf = yaml.safe_load(Path(kubeconfig).read_text())
        self.server = conf["clusters"][0]["cluster"]["server"]
        self.session = requests.Session()
        self.session.verify = False
        self.session.headers["Authorization"] = f"Bearer {conf['users'][0]['user']['token']}"

    def request(self, method, path, **kwargs):
        # verify per request: REQUESTS_CA_BUNDLE in the environment would override the session
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            return self.session.request(
                method, self.server + path, timeout=30, verify=False, **kwargs
            )

    def get(self, path, **params):
        resp = self.request("GET", path, params=params)
        resp.raise_for_status()
        return resp.json()

    def items(self, path, selector):
        return self.get(path, labelSelector=selector)["items"]

    def create_namespace(self, name):
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.request("POST", "/api/v1/namespaces", json=body).raise_for_status()
        # pods are admitted once the namespace's default service account exists
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default").ok:
                return
            time.sleep(0.3)
        raise AssertionError(f"no default service account in {name}")

    def delete_namespace(self, name):
        self.request("DELETE", f"/api/v1/namespaces/{name}")


# Until the images pipeline (`mlhub images build`) is on the branch, a stand-in for its
# images/site/setup.sh, which the serving-r Dockerfile runs first: only apt's package lists.
_SITE_STAND_IN = """#!/bin/sh
set -eu
[ "${1:-}" = r ] && exit 0
apt-get update -q >/dev/null
"""


def serving_r_image():
    """The serving-r image (images/serving-r) in the shared Docker engine, built from the files
    its image.yaml lists (tag = their hash, so a second run reuses it)."""
    image_dir = ROOT / "images" / "serving-r"
    spec = yaml.safe_load((image_dir / "image.yaml").read_text())
    paths = [ROOT / p for p in spec["context"]] + [image_dir]
    files = sorted(
        f
        for p in paths
        for f in ([p] if p.is_file() else p.rglob("*"))
        if f.is_file() and "__pycache__" not in f.parts
    )
    site = ROOT / "images" / "site"
    site_files = sorted(f for f in site.rglob("*") if f.is_file()) if site.is_dir() else []
    digest = hashlib.sha256()
    for f in files + site_files:
        digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    digest.update(b"" if site_files else _SITE_STAND_IN.encode())
    tag = f"mlhub-test/serving-r:{digest.hexdigest()[:16]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    with tempfile.TemporaryDirectory() as ctx:
        for f in files + site_files:
            target = Path(ctx, f.relative_to(ROOT))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        if not site_files:
            Path(ctx, "images", "site").mkdir(parents=True)
            Path(ctx, "images", "site", "setup.sh").write_text(_SITE_STAND_IN)
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, "-f", "images/serving-r/Dockerfile", ctx],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return tag
