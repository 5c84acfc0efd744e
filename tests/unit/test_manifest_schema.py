"""The JSON Schema of mlhub.yaml (``mlhub.bundle.manifest.manifest_schema``, written to
``manifest.schema.json`` for editors and tools) states the rules ``check_manifest`` applies: the
file is current, real bundles pass both, and every manifest one refuses the other refuses."""

import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlhub import bundle
from mlhub.bundle.manifest import manifest_schema
from mlhub.errors import InvalidBundle, InvalidName

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(manifest_schema())

PYTHON = {
    "format": 1,
    "name": "iris",
    "runtime": "python",
    "flavor": "sklearn",
    "model_file": "model/model.pkl",
    "signature": {"kind": "dataframe", "inputs": [{"name": "x", "type": "double"}]},
    "requirements": ["scikit-learn==1.6.1"],
}
R = {
    "format": 1,
    "name": "iris-r",
    "runtime": "r",
    "flavor": "rds",
    "serialization": "rds",
    "model_file": "model/model.rds",
    "r_version": "4.2.2",
    "r_packages": [{"name": "randomForest", "version": "4.7-1.1"}],
    "predict_args": {"type": "response"},
}


def checker_accepts(manifest):
    try:
        bundle.check_manifest(manifest)
    except (InvalidBundle, InvalidName):
        return False
    return True


def test_the_schema_file_is_current_and_shipped():
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "manifest-schema"), "--check"], check=True
    )
    shipped = importlib.resources.files("mlhub.bundle").joinpath("manifest.schema.json")
    assert json.loads(shipped.read_text()) == manifest_schema()
    jsonschema.Draft202012Validator.check_schema(manifest_schema())


def test_real_bundles_pass_both(tmp_path):
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20) % 3})
    model = LogisticRegression().fit(X, np.arange(20) % 2)
    saved = [
        bundle.save_bundle(model, tmp_path / "pickle", name="lr", example=X.head()),
        bundle.save_bundle(
            model, tmp_path / "skops", name="lr", example=X.head(), serialization="skops"
        ),
        bundle.save_r_bundle(
            b"X\n\x00RDS",
            tmp_path / "r",
            name="lr-r",
            r_version="4.2.2",
            r_packages=[{"name": "stats", "version": "4.2.2"}],
            signature={"kind": "dataframe", "inputs": [{"name": "a", "type": "double"}]},
            example=[{"a": 1.0}],
        ),
    ]
    for manifest in saved:
        assert checker_accepts(manifest)
        assert VALIDATOR.is_valid(manifest), list(VALIDATOR.iter_errors(manifest))


def changed(base, **changes):
    out = {k: v for k, v in base.items() if k not in changes or changes[k] is not ...}
    out.update({k: v for k, v in changes.items() if v is not ...})
    return out


CASES = [
    # (manifest, accepted)
    (PYTHON, True),
    (R, True),
    (changed(PYTHON, signature=None, extra_field={"anything": 1}, description=3), True),
    (changed(PYTHON, format=2), False),
    (changed(PYTHON, format=True), False),
    (changed(PYTHON, format=...), False),
    (changed(PYTHON, name="Iris_1"), False),
    (changed(PYTHON, name="a" * 64), False),
    (changed(PYTHON, runtime="julia"), False),
    (changed(PYTHON, flavor="torch"), False),
    (changed(PYTHON, flavor="rds"), False),
    (changed(PYTHON, model_file=3), False),
    (
        changed(PYTHON, signature={"kind": "tensor", "inputs": [{"name": "x", "type": "double"}]}),
        False,
    ),
    (changed(PYTHON, signature={"kind": "array", "inputs": []}), False),
    (
        changed(PYTHON, signature={"kind": "array", "inputs": [{"name": "x", "type": "int128"}]}),
        False,
    ),
    (changed(PYTHON, signature={"kind": "array", "inputs": [{"type": "double"}]}), False),
    (changed(PYTHON, requirements="numpy"), False),
    (changed(PYTHON, requirements=["numpy", 2]), False),
    (changed(PYTHON, r_version="four", predict_args=[1]), True),  # R fields: not read here
    (changed(R, flavor="sklearn"), False),
    (changed(R, serialization="cloudpickle"), False),
    (changed(R, serialization=...), False),
    (changed(R, model_file="model/model.pkl"), False),
    (changed(R, r_version="four"), False),
    (changed(R, r_version=...), False),
    (changed(R, r_packages=[{"name": "random Forest", "version": "1"}]), False),
    (changed(R, r_packages=[{"name": "stats"}]), False),
    (changed(R, r_packages={"stats": "1"}), False),
    (changed(R, predict_args={1: "x"}), False),
    (changed(R, predict_args=["type"]), False),
]


@pytest.mark.parametrize(("manifest", "accepted"), CASES)
def test_the_schema_and_the_checker_agree(manifest, accepted):
    assert checker_accepts(manifest) is accepted
    assert VALIDATOR.is_valid(manifest) is accepted
