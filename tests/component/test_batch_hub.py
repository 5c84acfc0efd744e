"""``mlhub batch --model alice/<name>`` through a real ``mlhub up`` (the ``hub`` fixture of
conftest.py): the model is named, resolved to its URL by the publisher with the user's hub
token, and every chunk goes through the proxy route ``/models/alice/<name>/`` to the uWSGI
process the LocalDeployer started. Someone the model is not shared with is refused.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from mlhub.bundle import save_bundle

pytestmark = pytest.mark.component


def batch(hub, token, parquet, dest, state):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLHUB_", "JUPYTERHUB_"))}
    env.update(MLHUB_URL=hub.url, MLHUB_TOKEN=token)
    argv = [sys.executable, "-m", "mlhub.cli", "batch", "--model", "alice/batch-lr"]
    argv += ["--source", str(parquet), "--key", "id", "--dest", str(dest), "--state", str(state)]
    argv += ["--chunk-size", "700", "--no-progress", "--json"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_a_named_model_is_scored_through_the_hub(hub, tmp_path):
    X, y = make_classification(2_000, n_features=20, random_state=0)
    model = LogisticRegression().fit(X, y)
    save_bundle(model, tmp_path / "lr", name="batch-lr", example=X[:5])
    hub.client.publish(tmp_path / "lr")

    rows, _ = make_classification(3_000, n_features=20, random_state=5)
    ids = np.arange(3_000) + 50
    pq.write_table(
        pa.table({"id": ids, **{f"f{i}": rows[:, i] for i in range(20)}}), tmp_path / "in.parquet"
    )

    done = batch(hub, hub.alice, tmp_path / "in.parquet", tmp_path / "out", tmp_path / "a.state")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["rows"], report["scored"], report["rejected"]) == (3_000, 3_000, 0)
    out = pads.dataset(tmp_path / "out", format="parquet").to_table().sort_by("id")
    assert out["id"].to_pylist() == ids.tolist()
    assert out["prediction"].to_pylist() == model.predict(rows).tolist()

    refused = batch(hub, hub.bob, tmp_path / "in.parquet", tmp_path / "bob", tmp_path / "b.state")
    assert refused.returncode == 1
    assert refused.stderr.startswith("mlhub: error:"), refused.stderr
    assert not (tmp_path / "bob").exists()
