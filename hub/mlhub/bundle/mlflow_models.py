"""MLflow model directories as mlhub bundles: what ``mlhub models publish DIR`` and
``PublisherClient.publish`` do with a folder holding an ``MLmodel`` file.

A scikit-learn model is taken over in mlhub's own form, its pickle or skops file as MLflow wrote
it (no MLflow needed to serve it, and the runtime's numpy fast path applies). Every other
MLflow model with a ``python_function`` flavor (XGBoost, LightGBM, a ``PythonModel`` with its
artifacts, ...) travels whole, as MLflow saved it, and is served by MLflow's own loader
(``mlflow.pyfunc.load_model``, flavor ``pyfunc`` with serialization ``mlflow``), so it predicts
exactly what ``mlflow.pyfunc.load_model(DIR).predict`` gives in the notebook; serving it needs
``mlflow-skinny`` where the model runs (the refusal says so): in Kubernetes mode the
serving-mlflow image, which the deployer picks for such bundles. Nothing here loads the model.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import yaml

from mlhub.bundle import EXAMPLE_ROWS, FORMAT, validate_name, write_manifest
from mlhub.errors import InvalidBundle

# MLflow column types -> mlhub signature types
_TYPES = {
    "double": "double",
    "float": "double",
    "long": "long",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
}
MLFLOW_DIR = "model"  # where a bundle keeps a whole MLflow model directory


def is_mlflow_dir(path):
    return os.path.isfile(os.path.join(path, "MLmodel"))


def from_mlflow(mlflow_dir, dest, name):
    """Write a bundle for the MLflow model in ``mlflow_dir`` into ``dest``; return its manifest."""
    src = Path(mlflow_dir)
    if not is_mlflow_dir(src):
        raise InvalidBundle(
            "not an MLflow model directory: MLmodel is missing", {"field": "MLmodel"}
        )
    mlmodel = yaml.safe_load((src / "MLmodel").read_text()) or {}
    flavors = mlmodel.get("flavors") or {}
    validate_name(name)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "model").mkdir(parents=True)
    sk = flavors.get("sklearn")
    if sk and sk.get("serialization_format", "cloudpickle") in ("cloudpickle", "pickle", "skops"):
        fields = _take_sklearn(src, dest, sk)
    elif "python_function" in flavors:
        shutil.rmtree(dest / "model")
        shutil.copytree(src, dest / MLFLOW_DIR, symlinks=False)
        fields = {
            "flavor": "pyfunc",
            "serialization": "mlflow",
            "model_file": f"{MLFLOW_DIR}/MLmodel",
            "predict_method": "predict",
            "mlflow_flavors": sorted(flavors),
        }
    else:
        raise InvalidBundle(
            f"this MLflow model has the flavors {sorted(flavors)} and no python_function "
            "flavor, so nothing can call its predict(): save it with a flavor that has one "
            "(mlflow.sklearn, mlflow.xgboost, mlflow.lightgbm, mlflow.pyfunc, ...)",
            {"field": "flavors", "flavors": sorted(flavors)},
        )
    reqs = _requirements(src)
    (dest / "requirements.txt").write_text("".join(f"{r}\n" for r in reqs))
    manifest = {
        "format": FORMAT,
        "name": name,
        "description": f"converted from MLflow model {src.name}",
        "runtime": "python",
        **fields,
        "signature": _signature(mlmodel),
        "example": _example(src),
        "python": (flavors.get("python_function") or {}).get(
            "python_version", sys.version.split()[0]
        ),
        "requirements": reqs,
    }
    write_manifest(dest, manifest)
    return manifest


def _take_sklearn(src, dest, sk):
    """A scikit-learn flavor in mlhub's own form: its pickle, or its skops file with the types
    it holds trusted (the owner saved them)."""
    if sk.get("serialization_format") == "skops":
        import skops.io as sio

        model_file = "model/model.skops"
        shutil.copyfile(src / sk["pickled_model"], dest / model_file)
        trusted = sk.get("skops_trusted_types") or sio.get_untrusted_types(file=dest / model_file)
        return {
            "flavor": "sklearn",
            "serialization": "skops",
            "model_file": model_file,
            "skops_trusted": sorted(trusted),
            "predict_method": "predict",
        }
    shutil.copyfile(src / sk["pickled_model"], dest / "model" / "model.pkl")
    return {
        "flavor": "sklearn",
        "serialization": "cloudpickle",
        "model_file": "model/model.pkl",
        "predict_method": "predict",
    }


def _signature(mlmodel):
    """MLflow's column signature as mlhub's (a tensor signature gives none: untyped input)."""
    sig = (mlmodel.get("signature") or {}).get("inputs")
    cols = json.loads(sig) if isinstance(sig, str) else sig
    if not cols or not all("name" in c and c.get("type") in _TYPES for c in cols):
        return None
    return {
        "kind": "dataframe",
        "inputs": [{"name": c["name"], "type": _TYPES[c["type"]]} for c in cols],
    }


def _example(src):
    ex_file = src / "input_example.json"
    if not ex_file.is_file():
        return None
    raw = json.loads(ex_file.read_text())
    split = raw.get("dataframe_split", raw) if isinstance(raw, dict) else None
    if not isinstance(split, dict) or "columns" not in split or "data" not in split:
        return None
    return [dict(zip(split["columns"], row, strict=True)) for row in split["data"][:EXAMPLE_ROWS]]


def _requirements(src):
    req_file = src / "requirements.txt"
    if not req_file.is_file():
        return []
    return [
        ln.strip()
        for ln in req_file.read_text().splitlines()
        if ln.strip() and not ln.startswith(("#", "-"))
    ]
