"""Writing bundles: a Python model (cloudpickle or skops) or an R model (an ``.rds``) with its
manifest, signature, example and requirements."""

import importlib.metadata
import platform
import shutil
import site
import sys
from pathlib import Path

from mlhub.bundle.manifest import (
    FORMAT,
    check_manifest,
    validate_name,
    write_manifest,
)
from mlhub.bundle.parity import ATOL, RTOL, check_tolerance, notebook_answers, write_parity
from mlhub.bundle.requirements import _pickled_modules, capture_requirements
from mlhub.bundle.signature import EXAMPLE_ROWS, infer_signature
from mlhub.errors import InvalidBundle


def detect_flavor(model):
    """Name the flavor of ``model`` from the library its class comes from."""
    top = type(model).__module__.split(".")[0]
    if top == "sklearn":
        return "sklearn"
    if top in ("xgboost", "lightgbm"):
        return top
    return "pyfunc"


def _local_modules(names):
    """The imported modules among ``names`` that are files under the working folder (the
    notebook's) and belong to no installed distribution: a serving environment cannot import
    them, so their code is pickled with the model (cloudpickle by value)."""
    here = Path.cwd().resolve()
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *site.getsitepackages())}
    distributed = importlib.metadata.packages_distributions()
    found = []
    for name in sorted(names):
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if not file or name in distributed:
            continue
        path = Path(file).resolve()
        if path.is_relative_to(here) and not any(path.is_relative_to(p) for p in installed):
            found.append(module)
    return found


def save_bundle(
    model,
    path,
    *,
    name,
    example=None,
    flavor=None,
    serialization="cloudpickle",
    requirements=None,
    description="",
    predict_method="predict",
    validate=None,
    rtol=RTOL,
    atol=ATOL,
):
    """Write ``model`` as a bundle directory at ``path`` and return its manifest.

    The example (and ``validate``, rows of the same inputs, sampled) is run through the model
    here, so a model that cannot predict on it fails in the notebook with the model's own
    error, not after deployment; the answers are the parity record (``mlhub.bundle.parity``)
    every serving process must reproduce within ``rtol``/``atol`` before it takes traffic.
    """
    validate_name(name)
    if not callable(getattr(model, predict_method, None)):
        raise InvalidBundle(
            f"{type(model).__name__} has no callable {predict_method}(): "
            "publish a fitted model or any object with a predict method",
            {"field": "model"},
        )
    if serialization not in ("cloudpickle", "skops"):
        raise InvalidBundle(
            f"serialization {serialization!r} is not supported; use 'cloudpickle' or 'skops'",
            {"field": "serialization"},
        )
    flavor = flavor or detect_flavor(model)
    check_tolerance(rtol, atol)
    signature, example_json, answers = (None, None, None)
    if example is not None:
        signature, example_json = infer_signature(example)
        answers = notebook_answers(getattr(model, predict_method), example, validate)
    elif validate is not None:
        raise InvalidBundle(
            "validate needs an example too: publish with example=X.head(), validate=X_test",
            {"field": "validate"},
        )

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    (path / "model").mkdir(parents=True)

    import cloudpickle

    data = cloudpickle.dumps(model, protocol=4)
    local = _local_modules(_pickled_modules(data))
    if local:  # code next to the notebook travels with the model, as it has no package
        for module in local:
            cloudpickle.register_pickle_by_value(module)
        try:
            data = cloudpickle.dumps(model, protocol=4)
        finally:
            for module in local:
                cloudpickle.unregister_pickle_by_value(module)
    modules = _pickled_modules(data)
    trusted = None
    if serialization == "skops":
        import skops.io as sio

        model_file = "model/model.skops"
        sio.dump(model, path / model_file)
        trusted = sorted(sio.get_untrusted_types(file=path / model_file))
        modules.add("skops")
    else:
        model_file = "model/model.pkl"
        (path / model_file).write_bytes(data)
        modules.add("cloudpickle")
    if signature is not None and signature["kind"] == "dataframe":
        modules.add("pandas")  # the serving runtime rebuilds a DataFrame for such models

    reqs = list(requirements) if requirements is not None else capture_requirements(modules)
    manifest = {
        "format": FORMAT,
        "name": name,
        "description": description,
        "runtime": "python",
        "flavor": flavor,
        "serialization": serialization,
        "model_file": model_file,
        "predict_method": predict_method,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "signature": signature,
        "example": example_json,
        "python": platform.python_version(),
        "requirements": reqs,
    }
    if trusted is not None:
        manifest["skops_trusted"] = trusted
    if answers is not None:
        manifest["parity"] = write_parity(path, *answers, rtol=rtol, atol=atol)
    (path / "requirements.txt").write_text("".join(f"{r}\n" for r in reqs))
    write_manifest(path, manifest)
    return manifest


def save_r_bundle(
    model_rds,
    path,
    *,
    name,
    r_version,
    r_packages=(),
    signature=None,
    example=None,
    model_class="",
    description="",
    predict_args=None,
    parity=None,
):
    """Write an R model (the bytes of its ``saveRDS`` file) as a bundle; return its manifest.

    ``parity`` is what the model answered in R for some rows (``{"instances", "predictions",
    "rtol", "atol"}``, from ``mlhub::publish``): the parity record the R serving runtime must
    reproduce before the version takes traffic.

    The R helper (``mlhub::publish``) captures what only R knows (the RDS bytes, the example's
    column types and factor levels, the R version and package versions) and the notebook
    server extension calls this, so the bundle format lives in Python only. The RDS is never
    read here: only the R serving runtime loads it.
    """
    validate_name(name)
    if not isinstance(model_rds, bytes) or not model_rds:
        raise InvalidBundle("the R model file is empty: save it with saveRDS", {"field": "model"})
    if signature is not None and example is None:
        raise InvalidBundle("a signature needs its example rows", {"field": "example"})
    packages = [dict(p) if isinstance(p, dict) else p for p in r_packages]
    manifest = {
        "format": FORMAT,
        "name": name,
        "description": description,
        "runtime": "r",
        "flavor": "rds",
        "serialization": "rds",
        "model_file": "model/model.rds",
        "predict_method": "predict",
        "predict_args": dict(predict_args or {}),
        "model_class": model_class,
        "signature": signature,
        "example": list(example[:EXAMPLE_ROWS]) if example is not None else None,
        "r_version": r_version,
        "r_packages": packages,
        "requirements": [],
    }
    check_manifest(manifest)
    manifest["requirements"] = [f"{p['name']}=={p['version']}" for p in packages]
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    (path / "model").mkdir(parents=True)
    (path / manifest["model_file"]).write_bytes(model_rds)
    (path / "r-packages.txt").write_text("".join(f"{r}\n" for r in manifest["requirements"]))
    if parity is not None:
        if not isinstance(parity, dict) or not {"instances", "predictions"} <= parity.keys():
            raise InvalidBundle(
                "parity needs the rows (instances) and the model's predictions for them",
                {"field": "parity"},
            )
        manifest["parity"] = write_parity(
            path,
            parity["instances"],
            parity["predictions"],
            rtol=parity.get("rtol", RTOL),
            atol=parity.get("atol", ATOL),
        )
    write_manifest(path, manifest)
    return manifest
