"""The model bundle: one artifact for every runtime (see docs/design.md, "The model bundle").

A bundle is a directory::

    mlhub.yaml          manifest: name, runtime, flavor, signature, example, requirements
    model/              the model file(s)
    requirements.txt    what the model was captured with (pip format)

It travels as a deterministic ``tar.gz``. Its version id is the sha256 of its *contents* (paths
and file bytes, not tar metadata), so publishing the same bundle twice is one version.

Only ``load_model`` runs model code (unpickling executes code): it is called in the owner's own
serving process and nowhere else. Everything else here reads YAML and bytes.
"""

import hashlib
import importlib.metadata
import io
import json
import pickletools
import platform
import re
import shutil
import tarfile
from pathlib import Path

import yaml

from mlhub.errors import InvalidBundle, InvalidName

MANIFEST = "mlhub.yaml"
FORMAT = 1
RUNTIMES = ("python", "r")
FLAVORS = ("sklearn", "xgboost", "lightgbm", "pyfunc", "onnx", "rds")
SERIALIZATIONS = ("cloudpickle", "skops", "rds")
TYPES = ("double", "float", "long", "integer", "boolean", "string", "category")
SIGNATURE_KINDS = ("dataframe", "array")
EXAMPLE_ROWS = 5

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def validate_name(name, what="model name"):
    """Return ``name`` if it is a DNS label (it becomes a URL part and a Kubernetes name)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidName(
            f"{what} {name!r} is not valid: use 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit (a DNS label), e.g. 'defect-rf'",
            {"field": "name", "value": name if isinstance(name, str) else repr(name)},
        )
    return name


# ---------------------------------------------------------------- signature


def _column_type(dtype):
    kind = getattr(dtype, "kind", None)
    name = str(dtype)
    if name == "category":
        return "category"
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "long" if dtype.itemsize >= 8 else "integer"
    if kind == "f":
        return "double" if dtype.itemsize >= 8 else "float"
    return "string"


def _python_type(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    return "string"


def infer_signature(example):
    """Describe the model input from an example: a DataFrame, an array, rows or records.

    Returns ``(signature, example_json)``: the signature dict stored in the manifest and the
    first rows of the example in JSON form (records for data frames, rows for arrays).
    """
    import numpy as np

    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None

    if pd is not None and isinstance(example, pd.Series):
        example = example.to_frame().T
    if pd is not None and isinstance(example, pd.DataFrame):
        inputs = []
        for col in example.columns:
            entry = {"name": str(col), "type": _column_type(example[col].dtype)}
            if entry["type"] == "category":
                entry["levels"] = [str(v) for v in example[col].cat.categories]
            inputs.append(entry)
        head = example.head(EXAMPLE_ROWS)
        rows = json.loads(head.to_json(orient="records", date_format="iso"))
        return {"kind": "dataframe", "inputs": inputs}, rows
    if isinstance(example, (list, tuple)) and example and isinstance(example[0], dict):
        names = list(example[0])
        for i, rec in enumerate(example):
            if not isinstance(rec, dict) or list(rec) != names:
                got = list(rec) if isinstance(rec, dict) else rec
                raise InvalidBundle(
                    f"example record {i} has columns {got!r}, but record 0 has {names}: "
                    "every record needs the same columns",
                    {"field": "example", "row": i},
                )
        inputs = [{"name": str(n), "type": _python_type(example[0][n])} for n in names]
        return {"kind": "dataframe", "inputs": inputs}, [dict(r) for r in example[:EXAMPLE_ROWS]]
    try:
        arr = np.asarray(example)
    except Exception as exc:  # ragged lists and the like
        raise InvalidBundle(
            f"the example could not be read as a table ({exc}); pass a DataFrame, a 2-D array, "
            "a list of rows or a list of records",
            {"field": "example"},
        ) from exc
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InvalidBundle(
            f"the example has shape {arr.shape}; a model input must be 2-D (rows x features)",
            {"field": "example", "shape": list(arr.shape)},
        )
    col_type = _column_type(arr.dtype)
    inputs = [{"name": f"x{i}", "type": col_type} for i in range(arr.shape[1])]
    return {"kind": "array", "inputs": inputs}, arr[:EXAMPLE_ROWS].tolist()


# ---------------------------------------------------------------- requirements


def _pickled_modules(data):
    """Top-level module names that a pickle references (its GLOBAL / STACK_GLOBAL ops).

    We read the opcode stream instead of unpickling so capturing requirements runs no code.
    """
    modules = set()
    memo = {}
    recent = []
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            recent.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = recent[-1] if recent else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(arg))
        elif name == "GLOBAL":
            modules.add(str(arg).split(" ", 1)[0].split(".")[0])
        elif name == "STACK_GLOBAL" and len(recent) >= 2 and isinstance(recent[-2], str):
            modules.add(recent[-2].split(".")[0])
        if len(recent) > 4:
            del recent[:-4]
    return modules


def capture_requirements(modules, extra=("numpy",)):
    """Pin the installed distributions that provide ``modules`` (``dist==version``)."""
    mapping = importlib.metadata.packages_distributions()
    pins = {}
    for mod in set(modules) | set(extra):
        for dist in mapping.get(mod, []):
            try:
                pins[dist.lower()] = f"{dist}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                continue
    pins.pop("mlhub", None)
    return sorted(pins.values(), key=str.lower)


# ---------------------------------------------------------------- saving


def detect_flavor(model):
    """Name the flavor of ``model`` from the library its class comes from."""
    top = type(model).__module__.split(".")[0]
    if top == "sklearn":
        return "sklearn"
    if top in ("xgboost", "lightgbm"):
        return top
    return "pyfunc"


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
):
    """Write ``model`` as a bundle directory at ``path`` and return its manifest.

    The example is run through the model once, so a model that cannot predict on its own
    example fails here, in the notebook, with the model's own error, not after deployment.
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
    signature, example_json = (None, None)
    if example is not None:
        signature, example_json = infer_signature(example)
        try:
            getattr(model, predict_method)(example)
        except Exception as exc:
            raise InvalidBundle(
                f"the model failed to predict on the example ({type(exc).__name__}: {exc}); "
                "pass an example with the columns and types the model was trained on",
                {"field": "example"},
            ) from exc

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    (path / "model").mkdir(parents=True)

    import cloudpickle

    data = cloudpickle.dumps(model, protocol=4)
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
):
    """Write an R model (the bytes of its ``saveRDS`` file) as a bundle; return its manifest.

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
    write_manifest(path, manifest)
    return manifest


def write_manifest(path, manifest):
    Path(path, MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))


# ---------------------------------------------------------------- reading


def _need(manifest, key, types, allowed=None):
    value = manifest.get(key)
    # a YAML true is an int to Python: no field here is a boolean
    if (
        not isinstance(value, types)
        or isinstance(value, bool)
        or (allowed is not None and value not in allowed)
    ):
        hint = f" (one of {', '.join(map(str, allowed))})" if allowed else ""
        raise InvalidBundle(
            f"{MANIFEST}: field {key!r} is missing or invalid: got {value!r}{hint}",
            {"field": key},
        )
    return value


def check_manifest(manifest):
    """Validate a manifest dict; raise ``InvalidBundle`` naming the first bad field."""
    if not isinstance(manifest, dict):
        raise InvalidBundle(f"{MANIFEST} must be a mapping", {"field": MANIFEST})
    _need(manifest, "format", int, (FORMAT,))
    validate_name(_need(manifest, "name", str))
    _need(manifest, "runtime", str, RUNTIMES)
    _need(manifest, "flavor", str, FLAVORS)
    _need(manifest, "model_file", str)
    sig = manifest.get("signature")
    if sig is not None:
        if not isinstance(sig, dict) or sig.get("kind") not in SIGNATURE_KINDS:
            raise InvalidBundle(
                f"{MANIFEST}: signature.kind must be one of {SIGNATURE_KINDS}",
                {"field": "signature.kind"},
            )
        inputs = sig.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise InvalidBundle(
                f"{MANIFEST}: signature.inputs must be a non-empty list",
                {"field": "signature.inputs"},
            )
        for i, col in enumerate(inputs):
            if (
                not isinstance(col, dict)
                or not isinstance(col.get("name"), str)
                or col.get("type") not in TYPES
            ):
                raise InvalidBundle(
                    f"{MANIFEST}: signature.inputs[{i}] needs a 'name' and a 'type' in {TYPES}",
                    {"field": f"signature.inputs[{i}]"},
                )
    reqs = manifest.get("requirements", [])
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise InvalidBundle(
            f"{MANIFEST}: requirements must be a list of strings", {"field": "requirements"}
        )
    if manifest["runtime"] == "r":
        check_r_manifest(manifest)
    elif manifest["flavor"] == "rds":
        raise InvalidBundle(
            f"{MANIFEST}: flavor 'rds' is an R model: its runtime must be 'r'", {"field": "runtime"}
        )
    return manifest


_R_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
_R_PACKAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$")


def check_r_manifest(manifest):
    """The fields an R bundle needs: an RDS model, the R version and the packages it uses."""
    _need(manifest, "flavor", str, ("rds",))
    _need(manifest, "serialization", str, ("rds",))
    if not manifest["model_file"].endswith(".rds"):
        raise InvalidBundle(
            f"{MANIFEST}: an R model_file is an .rds file, got {manifest['model_file']!r}",
            {"field": "model_file"},
        )
    r_version = _need(manifest, "r_version", str)
    if not _R_VERSION_RE.match(r_version):
        raise InvalidBundle(
            f"{MANIFEST}: r_version {r_version!r} is not an R version such as '4.2.2'",
            {"field": "r_version"},
        )
    packages = manifest.get("r_packages", [])
    if not isinstance(packages, list):
        raise InvalidBundle(
            f"{MANIFEST}: r_packages must be a list of {{name, version}}", {"field": "r_packages"}
        )
    for i, pkg in enumerate(packages):
        if (
            not isinstance(pkg, dict)
            or not isinstance(pkg.get("name"), str)
            or not _R_PACKAGE_RE.match(pkg["name"])
            or not isinstance(pkg.get("version"), str)
        ):
            raise InvalidBundle(
                f"{MANIFEST}: r_packages[{i}] needs an R package 'name' and a 'version' "
                f"string, got {pkg!r}",
                {"field": f"r_packages[{i}]"},
            )
    args = manifest.get("predict_args", {})
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise InvalidBundle(
            f"{MANIFEST}: predict_args must map argument names of predict() to values",
            {"field": "predict_args"},
        )


def load_manifest(path):
    """Read and validate ``mlhub.yaml`` from a bundle directory."""
    mpath = Path(path, MANIFEST)
    if not mpath.is_file():
        raise InvalidBundle(f"not a model bundle: {MANIFEST} is missing", {"field": MANIFEST})
    try:
        manifest = yaml.safe_load(mpath.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidBundle(f"{MANIFEST} is not valid YAML: {exc}", {"field": MANIFEST}) from exc
    check_manifest(manifest)
    model_file = Path(path, manifest["model_file"])
    try:
        inside = model_file.resolve().is_relative_to(Path(path).resolve()) and model_file.exists()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        inside = False
    if not inside:
        raise InvalidBundle(
            f"{MANIFEST}: model_file {manifest['model_file']!r} is not in the bundle",
            {"field": "model_file"},
        )
    return manifest


def _files(path):
    root = Path(path)
    return sorted(p for p in root.rglob("*") if p.is_file())


def bundle_digest(path):
    """The version id: sha256 over each file's relative path and content, in sorted order."""
    root = Path(path)
    outer = hashlib.sha256()
    for f in _files(root):
        inner = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                inner.update(block)
        outer.update(f"{f.relative_to(root).as_posix()}\0{inner.hexdigest()}\n".encode())
    return "sha256:" + outer.hexdigest()


def pack(path, fileobj=None):
    """Write the bundle as a deterministic tar.gz to ``fileobj`` (or return the bytes)."""
    root = Path(path)
    out = fileobj if fileobj is not None else io.BytesIO()
    import gzip

    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for f in _files(root):
            info = tarfile.TarInfo(f.relative_to(root).as_posix())
            info.size = f.stat().st_size
            info.mode = 0o644
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    if fileobj is None:
        return out.getvalue()
    return None


def unpack(fileobj, dest, max_bytes=None):
    """Safely extract a bundle tar(.gz) into ``dest`` and return its validated manifest.

    Refuses absolute paths, ``..``, links and devices, and stops at ``max_bytes`` of content,
    so an upload cannot write outside ``dest`` or fill the disk.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            for member in tar:
                name = member.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts:
                    raise InvalidBundle(
                        f"bundle entry {name!r} points outside the bundle", {"field": "archive"}
                    )
                if member.isdir():
                    (dest / name).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise InvalidBundle(
                        f"bundle entry {name!r} is a link or device; bundles hold regular files",
                        {"field": "archive"},
                    )
                total += member.size
                if max_bytes is not None and total > max_bytes:
                    raise InvalidBundle(
                        f"bundle content exceeds the limit of {max_bytes} bytes",
                        {"field": "archive", "limit": max_bytes},
                    )
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise InvalidBundle(
            f"the upload is not a readable bundle archive (tar.gz): {exc}", {"field": "archive"}
        ) from exc
    return load_manifest(dest)


# ---------------------------------------------------------------- loading (serving only)


def load_model(path, manifest=None):
    """Load the model object of a Python bundle. Runs model code: serving processes only."""
    manifest = manifest or load_manifest(path)
    if manifest["runtime"] != "python":
        raise InvalidBundle(
            f"runtime {manifest['runtime']!r} is not served by the Python runtime",
            {"field": "runtime"},
        )
    model_file = Path(path, manifest["model_file"])
    serialization = manifest.get("serialization", "cloudpickle")
    try:
        if serialization == "mlflow":  # a whole MLflow model (mlhub.mlflow_models)
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(str(model_file.parent))
        elif serialization == "skops":
            import skops.io as sio

            trusted = manifest.get("skops_trusted", [])
            untrusted = set(sio.get_untrusted_types(file=model_file)) - set(trusted)
            if untrusted:
                raise InvalidBundle(
                    f"the skops file holds types the bundle did not declare: {sorted(untrusted)}",
                    {"field": "skops_trusted"},
                )
            model = sio.load(model_file, trusted=trusted)
        else:
            import cloudpickle

            with open(model_file, "rb") as fh:
                model = cloudpickle.load(fh)
    except InvalidBundle:
        raise
    except ModuleNotFoundError as exc:
        where = (
            "install mlhub's mlflow extra (pip install 'mlhub[mlflow]'), or in Kubernetes mode "
            "serve it with the serving-mlflow image"
            if serialization == "mlflow" and (exc.name or "").split(".")[0] == "mlflow"
            else "add it to the bundle's requirements or use an image that has it"
        )
        raise InvalidBundle(
            f"the model needs the Python package {exc.name!r}, which this serving environment "
            f"lacks; {where}",
            {"field": "requirements", "module": exc.name},
        ) from exc
    except Exception as exc:
        raise InvalidBundle(
            f"{manifest['model_file']} could not be loaded ({type(exc).__name__}: {exc}); "
            "is it a model saved by mlhub.publish?",
            {"field": "model_file"},
        ) from exc
    method = manifest.get("predict_method", "predict")
    if not callable(getattr(model, method, None)):
        raise InvalidBundle(
            f"the loaded object ({type(model).__name__}) has no callable {method}()",
            {"field": "predict_method"},
        )
    return model
