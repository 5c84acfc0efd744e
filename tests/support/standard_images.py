"""The standard images (images/<name>, issue 4) in the cluster's Docker engine, for the cluster
tests that run them: the hub image (the chart's publisher) and the notebook images (the
profiles' pods)."""

import importlib.util
import subprocess

from support.embedded_hub import VENV_BIN


def present(ref):
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def standard_images(refs):
    """Of ``refs`` (``mlhub/<name>:<tag>``), the ones in the engine after building them with
    ``mlhub images build`` (a no-op for unchanged inputs). Where this mlhub has no image
    pipeline yet, the ones already there."""
    names = sorted({ref.split("/", 1)[1].split(":")[0] for ref in refs})
    if importlib.util.find_spec("mlhub.image_pipeline") is not None:
        subprocess.run([str(VENV_BIN / "mlhub"), "images", "build", *names], check=True)
    return [ref for ref in refs if present(ref)]
