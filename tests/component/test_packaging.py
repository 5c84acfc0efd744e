"""mlhub as users install it: a wheel built from this checkout, installed with ``pip install``
and no extras into a fresh venv (dependencies from the package index, as users get them).

It must carry every file the parts read at run time (profiles, templates, the R runtime and
helper, the OpenAPI document, the notebook extension's Jupyter config, the licence), install no
test or lint tool and no optional stack, run the embedded platform's modules, and tell a user
who calls an optional part which extra to install.
"""

import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from mlhub import __version__

pytestmark = [pytest.mark.component, pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
LABEXTENSION = f"mlhub-{__version__}.data/data/share/jupyter/labextensions/@mlhub/jupyterlab"
# what only the extras (or a developer) install
NOT_IN_A_PLAIN_INSTALL = {
    "pytest",
    "ruff",
    "playwright",
    "pre-commit",
    "schemathesis",
    "tritonclient",
    "kubernetes-validate",
    "xgboost",
    "lightgbm",
    "docker",
    "mlflow-skinny",
    "kubernetes-asyncio",
    "jupyterhub-kubespawner",
    "pyarrow",
    "psycopg",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("mlhub-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    where = tmp_path_factory.mktemp("plain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run(
        [str(where / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=800
    )
    return where


def test_the_wheel_carries_every_file_the_parts_read(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in [
        "mlhub/jupyterhub_config.py",
        "mlhub/proxy_timeouts.js",
        "mlhub/publisher/openapi.yaml",
        "mlhub/profiles/python.yaml",
        "mlhub/profiles/profile.schema.json",
        "mlhub/bundle/signature_types.json",
        "mlhub/bundle/manifest.schema.json",
        "mlhub/serving/app.py",
        "mlhub/serving_r/serve.R",
        "mlhub/serving_r/runtime/app.R",
        "mlhub/extension_r/mlhub/DESCRIPTION",
        "mlhub/image_pipeline/spec.py",
        f"mlhub-{__version__}.data/data/etc/jupyter/jupyter_server_config.d/mlhub.json",
        f"{LABEXTENSION}/package.json",
        f"{LABEXTENSION}/install.json",
        f"mlhub-{__version__}.dist-info/licenses/LICENSE",
    ]:
        assert needed in names, needed
    assert any(n.startswith("mlhub/templates/") and n.endswith(".html") for n in names)
    assert any(n.startswith(f"{LABEXTENSION}/static/remoteEntry.") for n in names)
    # nothing from the repository around the package (tests, images' Dockerfiles, the chart)
    assert not [n for n in names if n.startswith(("tests/", "images/", "deploy/", "hub/"))]


def test_a_plain_install_has_no_test_tool_and_no_optional_stack(venv):
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {line.split("==")[0].lower().replace("_", "-") for line in listed.split()}
    assert installed & NOT_IN_A_PLAIN_INSTALL == set()
    assert {"jupyterhub", "jupyterlab", "scikit-learn", "pyuwsgi", "skops"} <= installed
    assert version("mlhub") == __version__


def test_the_embedded_platform_runs_from_a_plain_install(venv):
    modules = [
        "mlhub.up",
        "mlhub.spawner",
        "mlhub.publisher.app",
        "mlhub.deployers.local",
        "mlhub.serving.app",
        "mlhub.serving_r.launch",
        "mlhub.extension.handlers",
        "mlhub.profiles",
    ]
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {', '.join(modules)}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    cli = subprocess.run([str(venv / "bin" / "mlhub"), "--version"], capture_output=True, text=True)
    assert cli.stdout.strip() == f"mlhub {__version__}"
    models = subprocess.run(
        [str(venv / "bin" / "mlhub"), "models", "--help"], capture_output=True, text=True
    )
    assert models.returncode == 0 and "publish" in models.stdout


def test_jupyterlab_finds_the_prebuilt_extension_without_node(venv):
    """The Publish button and the Models panel come with ``pip install``: JupyterLab lists
    the extension as installed by mlhub, enabled and compatible with its own version."""
    listed = subprocess.run(
        [str(venv / "bin" / "jupyter"), "labextension", "list"],
        capture_output=True,
        text=True,
    )
    line = next((ln for ln in listed.stderr.splitlines() if "@mlhub/jupyterlab" in ln), "")
    assert f"v{__version__}" in line and "enabled" in line and "OK" in line, listed.stderr
    assert "(python, mlhub)" in line


def test_an_optional_part_says_which_extra_to_install(venv):
    batch = subprocess.run([str(venv / "bin" / "mlhub"), "batch"], capture_output=True, text=True)
    assert batch.returncode == 1
    assert "pip install 'mlhub[batch]'" in batch.stderr
    helped = subprocess.run(
        [str(venv / "bin" / "mlhub"), "batch", "--help"], capture_output=True, text=True
    )
    assert "pip install 'mlhub[batch]'" in helped.stdout
    images = subprocess.run(
        [str(venv / "bin" / "mlhub"), "images", "build"], capture_output=True, text=True
    )
    # the image pipeline builds from a checkout: an installed mlhub says so instead of building
    # nothing
    assert images.returncode != 0
    assert "no images/ folder" in images.stderr and "checkout" in images.stderr
