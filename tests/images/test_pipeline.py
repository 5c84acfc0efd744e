"""``mlhub images build|test|push`` on the real engine: content-hash tags, smoke tests, layer
reuse, clear errors, and a push to (and pull from) a real registry: Debian's docker-registry
(the CNCF distribution registry) on 127.0.0.1."""

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from support.embedded_hub import free_port

from mlhub import __version__
from mlhub.errors import ImageError
from mlhub.image_pipeline.pipeline import ImagePipeline

ROOT = Path(__file__).resolve().parents[2]
MLHUB = str(Path(sys.executable).parent / "mlhub")
SERVING_CONTEXT = ["pyproject.toml", "LICENSE", "hub", "spawner_profiles", "extension", "images"]


def test_every_image_is_tagged_by_hash_and_version_and_labelled(engine, built):
    assert set(built) >= {
        "notebook-python",
        "notebook-r",
        "notebook-python-r",
        "serving-python",
        "serving-r",
        "serving-mlflow",
        "hub",
        "proxy",
    }
    # serving-mlflow is serving-python plus MLflow: its layers start with every one of
    # serving-python's, so a node that has one pulls only the difference
    python_layers = engine.images.get(built["serving-python"]).attrs["RootFS"]["Layers"]
    mlflow_layers = engine.images.get(built["serving-mlflow"]).attrs["RootFS"]["Layers"]
    assert mlflow_layers[: len(python_layers)] == python_layers
    assert len(mlflow_layers) > len(python_layers)
    for name, ref in built.items():
        image = engine.images.get(ref)
        assert {f"mlhub/{name}:{__version__}", f"mlhub/{name}:latest"} <= set(image.tags)
        labels = image.labels
        assert labels["org.opencontainers.image.title"] == f"mlhub {name}"
        assert labels["org.opencontainers.image.version"] == __version__
        assert "org.opencontainers.image.source" in labels
        assert labels["org.opencontainers.image.description"]  # the Dockerfile's
        assert labels["dev.mlhub.image.inputs"] == ref.rsplit(":", 1)[1]
        # never root: the images' own user, or nobody for the proxy (the official JupyterHub
        # chart runs configurable-http-proxy as 65534)
        assert image.attrs["Config"]["User"] == ("65534" if name == "proxy" else "1000"), name
        # No secret in the image's configuration (the environment a container starts with).
        for entry in image.attrs["Config"]["Env"] or []:
            key = entry.split("=", 1)[0].upper()
            assert not any(s in key for s in ("TOKEN", "SECRET", "PASSWORD")), (name, entry)
        print(f"{name}: {image.attrs['Size'] / 1e6:.0f} MB")


def test_unchanged_inputs_are_not_rebuilt(engine, built):
    said = []
    pipeline = ImagePipeline(client=engine, say=said.append)
    # hub is built from the proxy image (its npm proxy tree): that one is checked first
    assert pipeline.build(["serving-python", "hub"]) == {
        "serving-python": built["serving-python"],
        "proxy": built["proxy"],
        "hub": built["hub"],
    }
    assert said == [
        f"serving-python: up to date ({built['serving-python']})",
        f"proxy: up to date ({built['proxy']})",
        f"hub: up to date ({built['hub']})",
    ]
    # naming an image built from another standard image builds (here: checks) that one first
    said.clear()
    assert list(pipeline.build(["serving-mlflow"])) == ["serving-python", "serving-mlflow"]
    assert said == [
        f"serving-python: up to date ({built['serving-python']})",
        f"serving-mlflow: up to date ({built['serving-mlflow']})",
    ]


@pytest.fixture
def repo_copy(tmp_path):
    """A copy of the repository's build inputs, to change without touching the work tree."""
    for rel in SERVING_CONTEXT:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, tmp_path / rel)
    return tmp_path


@pytest.fixture
def scratch(engine):
    """A namespace for images built from changed copies, so the real tags never move."""
    namespace = f"mlhub-scratch-{uuid.uuid4().hex[:8]}"
    yield namespace
    for image in engine.images.list():
        for tag in image.tags:
            if tag.startswith(f"{namespace}/"):
                engine.images.remove(tag)


def test_a_code_change_rebuilds_only_the_layers_after_the_stack(engine, built, repo_copy, scratch):
    changed = repo_copy / "hub" / "mlhub" / "errors.py"
    # Unique, so no earlier run of this test left the changed layer in the engine's cache.
    changed.write_text(changed.read_text() + f"\n# a code change {uuid.uuid4().hex}\n")
    said = []
    pipeline = ImagePipeline(root=repo_copy, client=engine, say=said.append, namespace=scratch)
    ref = pipeline.build(["serving-python"])["serving-python"]
    assert ref.rsplit(":", 1)[1] != built["serving-python"].rsplit(":", 1)[1]
    assert f"serving-python: building {ref}" in said[0]
    output = "\n".join(said)
    # The pinned stack's layer came from the cache; mlhub's own layer was built again.
    steps = {s.split("\n", 1)[0]: s for s in output.split("Step ")[1:]}
    install = next(s for s in steps.values() if "-r /tmp/requirements.txt" in s.split("\n")[0])
    assert "Using cache" in install
    copy = next(s for s in steps.values() if s.split("\n")[0].endswith("COPY . /tmp/mlhub"))
    assert "Using cache" not in copy

    # Another change: the new build takes the aliases, the previous hash tag is dropped.
    changed.write_text(changed.read_text() + f"# another {uuid.uuid4().hex}\n")
    second = pipeline.build(["serving-python"])["serving-python"]
    tags = {t for image in engine.images.list(name=f"{scratch}/serving-python") for t in image.tags}
    assert second in tags and ref not in tags
    assert engine.images.get(f"{scratch}/serving-python:latest").id == engine.images.get(second).id


def write_image(root, name, dockerfile, spec=None):
    folder = root / "images" / name
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile)
    if spec is not None:
        (folder / "image.yaml").write_text(spec)
    (root / "images" / "site").mkdir(exist_ok=True)


def test_a_failed_build_is_one_clear_error(engine, tmp_path, scratch):
    write_image(tmp_path, "broken", "FROM debian:bookworm-slim\nRUN echo about to fail && exit 3\n")
    with pytest.raises(ImageError) as failed:
        ImagePipeline(
            root=tmp_path, client=engine, say=lambda line: None, namespace=scratch
        ).build()
    assert "broken: the build failed" in failed.value.message
    assert "returned a non-zero code: 3" in failed.value.message
    assert "about to fail" in failed.value.message  # the build's last lines


def test_a_new_image_folder_is_picked_up_and_needs_a_smoke_test(engine, tmp_path, scratch):
    write_image(tmp_path, "serving-r", "FROM debian:bookworm-slim\nUSER 1000\n")
    pipeline = ImagePipeline(root=tmp_path, client=engine, say=lambda line: None, namespace=scratch)
    assert [s.name for s in pipeline.images()] == ["serving-r"]
    with pytest.raises(ImageError, match="serving-r: declares no smoke test"):
        pipeline.test()
    (tmp_path / "images" / "serving-r" / "image.yaml").write_text(
        "smoke:\n  steps:\n    - name: says hello\n      run: [echo, hello]\n"
        "      expect: [goodbye]\n"
    )
    with pytest.raises(ImageError, match=r"'says hello' failed: the output lacks \['goodbye'\]"):
        pipeline.test()


def test_the_command_line_builds_tests_and_reports_errors_without_tracebacks(built, tmp_path):
    ok = subprocess.run(
        [MLHUB, "images", "test", "hub"], capture_output=True, text=True, timeout=600
    )
    assert ok.returncode == 0, ok.stderr
    assert f"hub: up to date ({built['hub']})" in ok.stderr
    assert "hub: smoke test: hub, proxy and publisher start: ok" in ok.stderr
    assert f"hub: tested {built['hub']}" in ok.stdout

    for args, env, message in (
        (["build"], {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}, "no Docker engine answers"),
        (["build", "no-such-image"], {}, "no image 'no-such-image'"),
        (["push", "hub"], {"MLHUB_IMAGES_REGISTRY": ""}, "no registry to push to"),
    ):
        failed = subprocess.run(
            [MLHUB, "images", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
        )
        assert failed.returncode == 1
        assert f"mlhub images: error: {message}" in failed.stderr
        assert "Traceback" not in failed.stderr


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1 (Docker trusts a loopback registry over HTTP)."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n"
    )
    proc = subprocess.Popen(
        ["/usr/bin/docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/v2/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the registry did not start"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def test_push_then_pull_from_a_real_registry(engine, built, registry):
    said = []
    pipeline = ImagePipeline(client=engine, say=said.append)
    pushed = pipeline.push(["hub"], registry=registry)
    tag = built["hub"].rsplit(":", 1)[1]
    assert pushed == {"hub": f"{registry}/mlhub/hub:{tag}"}
    assert any("Pushed" in line for line in said)  # per-layer progress
    base = f"http://{registry}/v2"
    assert "mlhub/hub" in requests.get(f"{base}/_catalog").json()["repositories"]
    tags = set(requests.get(f"{base}/mlhub/hub/tags/list").json()["tags"])
    assert tags == {tag, __version__, "latest"}

    # Pull it back as a machine without the image would.
    local = engine.images.get(built["hub"]).id
    engine.images.remove(f"{registry}/mlhub/hub:{tag}")
    engine.images.remove(f"{registry}/mlhub/hub:{__version__}")
    engine.images.remove(f"{registry}/mlhub/hub:latest")
    pulled = engine.images.pull(f"{registry}/mlhub/hub", tag=tag)
    try:
        assert pulled.id == local
    finally:
        engine.images.remove(f"{registry}/mlhub/hub:{tag}")
