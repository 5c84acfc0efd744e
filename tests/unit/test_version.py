"""mlhub's version has one source (hub/mlhub/__init__.py); every place that cannot import it
(Chart.yaml, the chart's image tags, the profiles' images, the R helper, README examples) must
say the same, as ``scripts/set-version`` writes them."""

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import mlhub

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_package_has_the_source_version():
    assert version("mlhub") == mlhub.__version__


def test_every_place_says_the_source_version():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "set-version"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"run scripts/set-version {mlhub.__version__}:\n{done.stdout}"
