"""The README's "Call it" and "Manage it" commands, run as written (shell blocks read from
README.md, only the hub's address put in) against a real ``mlhub up`` where ada has published
``defect-rf`` from a notebook before, as the README's story goes."""

import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from support.embedded_hub import VENV_BIN, running_hub

from mlhub.bundle import save_bundle
from mlhub.publisher.client import PublisherClient

pytestmark = [pytest.mark.component, pytest.mark.slow]
README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"


def shell_block(after):
    """The first ```bash block after the line containing ``after``, as one script."""
    text = README.read_text()
    start = text.index(after)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    return "\n".join(line.strip() for line in block.group(1).splitlines())


def defect_bundle(path, scale):
    X = pd.DataFrame({"temp": [1.0, 2.0, 3.0, 4.0], "pressure": [0.0, 1.0, 0.0, 1.0]})
    model = LinearRegression().fit(X, scale * (X["temp"] + X["pressure"]))
    save_bundle(model, path, name="defect-rf", example=X.head(2))
    return path


@pytest.fixture(scope="module")
def ada(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("readme"), "", ("ada",)) as hub:
        work = tmp_path_factory.mktemp("work")
        client = PublisherClient(url=hub.url, token=hub.ada, poll_interval=0.2)
        client.publish(defect_bundle(work / "notebook", 1.0), "defect-rf")
        defect_bundle(work / "my-bundle", 2.0)  # the README's ./my-bundle
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "MLHUB_URL": hub.url,
            "MLHUB_TOKEN": hub.ada,
            "KEY": client.create_key("defect-rf", "readme")["key"],
        }
        yield hub, work, env


def run(script, hub, work, env):
    script = script.replace(README_URL, hub.url.rstrip("/"))
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_call_it(ada):
    hub, work, env = ada
    done = run(shell_block("**Call it.**"), hub, work, env)
    assert done.returncode == 0, done.stderr
    assert '{"predictions":[4.6' in done.stdout.replace(" ", ""), done.stdout


def test_manage_it(ada):
    hub, work, env = ada
    done = run(shell_block("**Manage it**"), hub, work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "defect-rf" in done.stdout
    assert "mlhk_" in done.stdout  # keys create shows the new key once
    models = PublisherClient(url=hub.url, token=hub.ada).list()
    assert "defect-rf" not in [m["name"] for m in models]  # the block ends with delete
