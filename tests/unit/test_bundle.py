"""The bundle format: saving, content digests, safe unpacking, manifest checks, MLflow input."""

import importlib
import io
import subprocess
import sys
import tarfile

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlhub import bundle
from mlhub.bundle import requirements
from mlhub.errors import InvalidBundle, InvalidName


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(200, n_features=4, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def lr(data):
    X, y = data
    return LogisticRegression().fit(X, y)


@pytest.mark.parametrize("name", ["iris", "defect-rf", "a", "m1", "x" * 63])
def test_valid_names(name):
    assert bundle.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Iris", "-a", "a-", "a_b", "a.b", "x" * 64, None, "a b"])
def test_invalid_names_say_what_a_name_must_be(name):
    with pytest.raises(InvalidName) as err:
        bundle.validate_name(name)
    assert "DNS label" in err.value.message
    assert err.value.status == 400


def test_save_array_model_records_signature_and_requirements(tmp_path, lr, data):
    X, _ = data
    manifest = bundle.save_bundle(lr, tmp_path / "b", name="lr", example=X[:3])
    assert manifest["signature"] == {
        "kind": "array",
        "inputs": [{"name": f"x{i}", "type": "double"} for i in range(4)],
    }
    assert manifest["example"] == X[:3].tolist()
    assert manifest["flavor"] == "sklearn"
    assert any(r.startswith("scikit-learn==") for r in manifest["requirements"])
    assert any(r.startswith("numpy==") for r in manifest["requirements"])
    assert (tmp_path / "b" / "requirements.txt").read_text().splitlines() == manifest[
        "requirements"
    ]
    assert bundle.load_manifest(tmp_path / "b") == manifest
    model = bundle.load_model(tmp_path / "b")
    np.testing.assert_array_equal(model.predict(X), lr.predict(X))


def test_save_dataframe_pipeline(tmp_path, data):
    X, y = data
    df = pd.DataFrame(X, columns=["temp", "pressure", "thickness", "speed"])
    df["speed"] = (df["speed"] * 10).astype("int64")
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(df, y)
    manifest = bundle.save_bundle(pipe, tmp_path / "b", name="pipe", example=df.head(2))
    sig = manifest["signature"]
    assert sig["kind"] == "dataframe"
    assert [c["name"] for c in sig["inputs"]] == ["temp", "pressure", "thickness", "speed"]
    assert sig["inputs"][3]["type"] == "long"
    assert manifest["example"][0]["temp"] == pytest.approx(df["temp"][0])


def test_same_content_is_the_same_version(tmp_path, lr, data):
    X, _ = data
    bundle.save_bundle(lr, tmp_path / "a", name="lr", example=X[:2])
    digest = bundle.bundle_digest(tmp_path / "a")
    assert digest.startswith("sha256:") and len(digest) == 71
    # pack -> unpack keeps the digest, and packing is byte-for-byte deterministic
    packed = bundle.pack(tmp_path / "a")
    assert packed == bundle.pack(tmp_path / "a")
    bundle.unpack(io.BytesIO(packed), tmp_path / "c")
    assert bundle.bundle_digest(tmp_path / "c") == digest
    # a changed file is a new version
    (tmp_path / "c" / "requirements.txt").write_text("numpy\n")
    assert bundle.bundle_digest(tmp_path / "c") != digest


def test_saving_the_same_model_twice_is_one_version(tmp_path, lr, data):
    X, _ = data
    bundle.save_bundle(lr, tmp_path / "a", name="lr", example=X[:2])
    bundle.save_bundle(lr, tmp_path / "b", name="lr", example=X[:2])
    assert bundle.bundle_digest(tmp_path / "a") == bundle.bundle_digest(tmp_path / "b")


def test_object_without_predict_is_refused(tmp_path):
    with pytest.raises(InvalidBundle, match="no callable predict"):
        bundle.save_bundle(object(), tmp_path / "b", name="nope")


def test_example_the_model_cannot_take_is_refused(tmp_path, lr):
    with pytest.raises(InvalidBundle, match="failed to predict on the example"):
        bundle.save_bundle(lr, tmp_path / "b", name="lr", example=[[1.0, 2.0]])


def test_ragged_records_are_refused(tmp_path, lr):
    with pytest.raises(InvalidBundle, match="same columns"):
        bundle.infer_signature([{"a": 1, "b": 2}, {"a": 1}])


def test_unpack_refuses_path_traversal(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    buf.seek(0)
    with pytest.raises(InvalidBundle, match="outside the bundle"):
        bundle.unpack(buf, tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists()


def test_unpack_refuses_links(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model/model.pkl")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    buf.seek(0)
    with pytest.raises(InvalidBundle, match="link or device"):
        bundle.unpack(buf, tmp_path / "x")


def test_unpack_enforces_the_size_limit(tmp_path, lr, data):
    bundle.save_bundle(lr, tmp_path / "a", name="lr", example=data[0][:2])
    packed = bundle.pack(tmp_path / "a")
    with pytest.raises(InvalidBundle, match="exceeds the limit of 100 bytes"):
        bundle.unpack(io.BytesIO(packed), tmp_path / "x", max_bytes=100)


def test_unpack_of_garbage_says_it_is_not_an_archive(tmp_path):
    with pytest.raises(InvalidBundle, match="not a readable bundle archive"):
        bundle.unpack(io.BytesIO(b"this is not a tarball"), tmp_path / "x")


def test_manifest_errors_name_the_field(tmp_path, lr, data):
    bundle.save_bundle(lr, tmp_path / "a", name="lr", example=data[0][:2])
    manifest = yaml.safe_load((tmp_path / "a" / bundle.MANIFEST).read_text())
    manifest["runtime"] = "julia"
    bundle.write_manifest(tmp_path / "a", manifest)
    with pytest.raises(InvalidBundle) as err:
        bundle.load_manifest(tmp_path / "a")
    assert err.value.detail == {"field": "runtime"}
    assert "julia" in err.value.message


def test_corrupt_pickle_fails_to_load_with_a_clear_error(tmp_path, lr, data):
    bundle.save_bundle(lr, tmp_path / "a", name="lr", example=data[0][:2])
    (tmp_path / "a" / "model" / "model.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(InvalidBundle, match="could not be loaded"):
        bundle.load_model(tmp_path / "a")


def test_pickled_module_scan_runs_no_code():
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("this must not run",))

    data = pickle.dumps({"a": Boom(), "b": np.float64(1.0)}, protocol=4)
    assert {"builtins", "numpy"} <= requirements._pickled_modules(data)


def test_skops_round_trip(tmp_path, lr, data):
    pytest.importorskip("skops")
    X, _ = data
    manifest = bundle.save_bundle(
        lr, tmp_path / "s", name="lr", example=X[:2], serialization="skops"
    )
    assert manifest["model_file"] == "model/model.skops"
    model = bundle.load_model(tmp_path / "s")
    np.testing.assert_array_equal(model.predict(X), lr.predict(X))


# ---------------------------------------------------------------- R bundles

R_SIGNATURE = {
    "kind": "dataframe",
    "inputs": [
        {"name": "temp", "type": "double"},
        {"name": "line", "type": "category", "levels": ["a", "b"]},
    ],
}


def r_bundle(path, **changes):
    args = {
        "name": "defect-r",
        "r_version": "4.2.2",
        "r_packages": [{"name": "randomForest", "version": "4.7-1.1"}],
        "signature": R_SIGNATURE,
        "example": [{"temp": 1.5, "line": "a"}],
        "model_class": "randomForest.formula",
        "predict_args": {"type": "response"},
        **changes,
    }
    return bundle.save_r_bundle(b"X\n\x00RDS bytes", path, **args)


def test_r_bundle_round_trips_through_pack_and_unpack(tmp_path):
    manifest = r_bundle(tmp_path / "b")
    assert (manifest["runtime"], manifest["flavor"], manifest["serialization"]) == (
        "r",
        "rds",
        "rds",
    )
    assert manifest["requirements"] == ["randomForest==4.7-1.1"]
    assert (tmp_path / "b" / "model" / "model.rds").read_bytes() == b"X\n\x00RDS bytes"
    assert (tmp_path / "b" / "r-packages.txt").read_text() == "randomForest==4.7-1.1\n"
    unpacked = bundle.unpack(io.BytesIO(bundle.pack(tmp_path / "b")), tmp_path / "u")
    assert unpacked == bundle.load_manifest(tmp_path / "b") == manifest
    assert bundle.bundle_digest(tmp_path / "u") == bundle.bundle_digest(tmp_path / "b")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"r_version": "four"}, "r_version"),
        ({"r_packages": [{"name": "random Forest", "version": "1"}]}, "r_packages[0]"),
        ({"r_packages": [{"name": "stats"}]}, "r_packages[0]"),
        ({"predict_args": {1: "x"}}, "predict_args"),
        ({"name": "Defect_R"}, "name"),
        ({"example": None}, "example"),
    ],
)
def test_r_bundle_refuses_bad_fields(tmp_path, changes, field):
    with pytest.raises((InvalidBundle, InvalidName)) as caught:
        r_bundle(tmp_path / "b", **changes)
    assert caught.value.detail["field"] == field


def test_rds_flavor_needs_the_r_runtime():
    manifest = {"format": 1, "name": "m", "runtime": "python", "flavor": "rds", "model_file": "x"}
    with pytest.raises(InvalidBundle, match="flavor 'rds' is an R model"):
        bundle.check_manifest(manifest)


def test_r_runtime_needs_an_rds_model():
    manifest = {
        "format": 1,
        "name": "m",
        "runtime": "r",
        "flavor": "rds",
        "model_file": "m.pkl",
        "serialization": "rds",
        "r_version": "4.2.2",
    }
    with pytest.raises(InvalidBundle, match="an R model_file is an .rds file"):
        bundle.check_manifest(manifest)


MODULE = """
class Doubler:
    def predict(self, X):
        return [2 * x[0] for x in X]
"""
LOAD = (
    "import sys; from mlhub.bundle import load_model; "
    "print(load_model(sys.argv[1]).predict([[21]]))"
)


def test_code_next_to_the_notebook_travels_with_the_model(tmp_path, monkeypatch):
    """A model class from a module beside the notebook (no package, so no serving environment
    has it) is pickled by value and loads anywhere; one from elsewhere stays a reference, and
    loading it where the module is missing names the module."""
    notebook, elsewhere = tmp_path / "notebook", tmp_path / "site"
    for folder, name in ((notebook, "plantmodels"), (elsewhere, "othermodels")):
        folder.mkdir()
        (folder / f"{name}.py").write_text(MODULE)
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.chdir(notebook)
    local = importlib.import_module("plantmodels").Doubler()
    other = importlib.import_module("othermodels").Doubler()
    bundle.save_bundle(local, tmp_path / "local", name="local")
    bundle.save_bundle(other, tmp_path / "other", name="other")
    for name in ("local", "other"):  # a fresh Python, as a serving process: neither on its path
        done = subprocess.run(
            [sys.executable, "-c", LOAD, str(tmp_path / name)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        if name == "local":
            assert done.stdout.strip() == "[42]", done.stderr
        else:
            assert "needs the Python package 'othermodels'" in done.stderr, done.stderr
