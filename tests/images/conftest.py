"""The images layer: the real Docker engine, every standard image built through the pipeline.

``engine`` runs ``scripts/docker-engine up`` (idempotent: it starts dockerd and makes the local
``debian:bookworm-slim`` only if they are missing) and stops the engine at the end of the
session only if this session started it: it is shared with the Kubernetes test cluster and
with anyone else on the machine. ``built`` builds every image under ``images/`` with
``ImagePipeline.build`` (cached layers and content-hash tags make a second session fast).
"""

import subprocess
from pathlib import Path

import pytest

from mlhub.image_pipeline.pipeline import ImagePipeline, connect

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "scripts" / "docker-engine"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.images)
            item.add_marker(pytest.mark.slow)
            # The first test to ask for `built` pays for every cold build (about 20 minutes).
            item.add_marker(pytest.mark.timeout(3600))


@pytest.fixture(scope="session")
def engine():
    was_running = subprocess.run([ENGINE, "status"], capture_output=True).returncode == 0
    subprocess.run([ENGINE, "up"], check=True)
    client = connect()
    yield client
    client.close()
    if not was_running:
        subprocess.run([ENGINE, "down"], check=False)


class Messages(list):
    """The pipeline's progress lines, kept for assertions (and still printed)."""

    def __call__(self, line):
        print(line)
        self.append(line)


@pytest.fixture(scope="session")
def pipeline(engine):
    return ImagePipeline(client=engine, say=Messages())


@pytest.fixture(scope="session")
def built(pipeline):
    """``{name: "mlhub/<name>:<hash>"}`` for every standard image."""
    return pipeline.build()
