"""``mlhub.yaml``, the bundle's manifest: its fields, their checks (a refusal names the field
and what to write instead), reading and writing it, and model names.

``check_manifest`` is what every part runs (a refusal says which field and what to write; it
imports nothing slow, so a serving process starts fast). ``manifest_schema`` states the same
rules as a JSON Schema, built from the same constants, for editors and other tools; it is
written to ``manifest.schema.json`` beside this module by ``scripts/manifest-schema``, and a unit
test keeps the file current and the two in agreement on real bundles and every refusal.
"""

import re
from pathlib import Path

import yaml

from mlhub.bundle.parity import check_tolerance
from mlhub.bundle.signature import SIGNATURE_KINDS, TYPES
from mlhub.errors import InvalidBundle, InvalidName

MANIFEST = "mlhub.yaml"
FORMAT = 1
RUNTIMES = ("python", "r")
FLAVORS = ("sklearn", "xgboost", "lightgbm", "pyfunc", "onnx", "rds")
SERIALIZATIONS = ("cloudpickle", "skops", "rds")

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


_R_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
_R_PACKAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$")


def write_manifest(path, manifest):
    Path(path, MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))


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
    parity = manifest.get("parity")
    if parity is not None:
        if not isinstance(parity, dict) or not isinstance(parity.get("file"), str):
            raise InvalidBundle(
                f"{MANIFEST}: parity must name its file (parity.json) with its tolerance",
                {"field": "parity"},
            )
        check_tolerance(parity.get("rtol"), parity.get("atol"))
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


def manifest_schema():
    """The manifest's rules as a JSON Schema (draft 2020-12), from the constants
    ``check_manifest`` uses: the same rules, no more (fields it does not check are described,
    not typed; fields it does not name are allowed)."""
    column = {
        "type": "object",
        "required": ["name", "type"],
        "properties": {"name": {"type": "string"}, "type": {"enum": list(TYPES)}},
    }
    r_package = {
        "type": "object",
        "required": ["name", "version"],
        "properties": {
            "name": {"type": "string", "pattern": _R_PACKAGE_RE.pattern},
            "version": {"type": "string"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{MANIFEST}, the manifest of an mlhub model bundle (format {FORMAT})",
        "type": "object",
        "required": ["format", "name", "runtime", "flavor", "model_file"],
        "properties": {
            "format": {"const": FORMAT},
            "name": {
                "type": "string",
                "pattern": _NAME_RE.pattern,
                "description": "a DNS label: 1-63 lowercase letters, digits or '-'",
            },
            "description": {"description": "what the model does, in words"},
            "runtime": {"enum": list(RUNTIMES)},
            "flavor": {"enum": list(FLAVORS)},
            "serialization": {
                "description": f"how model_file was written: {', '.join(SERIALIZATIONS)}, or "
                "mlflow (an MLflow model directory served whole)"
            },
            "model_file": {"type": "string", "description": "a path inside the bundle"},
            "predict_method": {"description": "the method the runtime calls (predict)"},
            "model_class": {"description": "the model's class, for people"},
            "signature": {
                "type": ["object", "null"],
                "description": "the input columns and their types",
                "required": ["kind", "inputs"],
                "properties": {
                    "kind": {"enum": list(SIGNATURE_KINDS)},
                    "inputs": {"type": "array", "minItems": 1, "items": column},
                },
            },
            "example": {"description": "a few input rows, as JSON"},
            "parity": {
                "type": ["object", "null"],
                "description": "what the notebook's model answered for some rows (the parity "
                "check before a version takes traffic)",
                "required": ["file", "rtol", "atol"],
                "properties": {
                    "file": {"type": "string", "description": "JSON: instances, predictions"},
                    "rows": {"type": "integer", "minimum": 0},
                    "rtol": {"type": "number", "minimum": 0},
                    "atol": {"type": "number", "minimum": 0},
                },
            },
            "python": {"description": "the Python version it was saved with"},
            "requirements": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the pip requirements it was captured with",
            },
        },
        "if": {"properties": {"runtime": {"const": "r"}}, "required": ["runtime"]},
        "then": {
            "required": ["serialization", "r_version"],
            "properties": {
                "flavor": {"const": "rds"},
                "serialization": {"const": "rds"},
                "model_file": {"pattern": r"\.rds$"},
                "r_version": {"type": "string", "pattern": _R_VERSION_RE.pattern},
                "r_packages": {"type": "array", "items": r_package},
                "predict_args": {
                    "type": "object",
                    "propertyNames": {"type": "string"},
                    "description": "arguments of predict()",
                },
            },
        },
        "else": {"properties": {"flavor": {"not": {"const": "rds"}}}},
    }
