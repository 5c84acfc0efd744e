"""What a standard image is made of: its folder, its ``image.yaml``, its build context and the
content hash that tags it.

An image is any ``images/<name>/`` folder with a ``Dockerfile``; ``image.yaml`` beside it says
which repository paths its build context holds and how to smoke-test it (images/README.md has
the format). The context is assembled here as a tar with fixed order, owners and times, so the
same inputs always give the same bytes: its sha256, together with the build arguments and the
base images' ids, is the content hash. An unchanged hash means an unchanged image, which is
what lets ``mlhub images build`` skip it.
"""

import hashlib
import io
import re
import tarfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from mlhub.errors import InvalidImageSpec

SPEC_FILE = "image.yaml"
SITE_DIR = "images/site"  # the mirror and CA set-up every Dockerfile starts with
# Never part of a context: caches and build leftovers that differ between checkouts.
_SKIPPED = {"__pycache__", ".pytest_cache", ".ruff_cache", ".git", ".venv", "node_modules"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
MLHUB_PACKAGE = "@mlhub"  # in image.yaml's context: every file `pip install .` of mlhub needs
LABEXTENSION = "extension/jupyterlab/labextension"  # the JupyterLab extension's build (data-files)

_CHECK = {
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "properties": {
        "method": {"enum": ["GET", "POST", "PUT", "DELETE", "HEAD"]},
        "path": {"type": "string", "pattern": "^/"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "json": {},
        "body": {"type": "string"},
        "status": {"type": "integer"},
        "expect": {"type": "array", "items": {"type": "string"}},
    },
}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "context": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "smoke": {
            "type": "object",
            "required": ["steps"],
            "additionalProperties": False,
            "properties": {
                "volume": {"type": "string", "pattern": "^/"},
                "steps": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "timeout": {"type": "number", "exclusiveMinimum": 0},
                            "env": {"type": "object", "additionalProperties": {"type": "string"}},
                            "run": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            "expect": {"type": "array", "items": {"type": "string"}},
                            "serve": {
                                "type": "object",
                                "required": ["port"],
                                "additionalProperties": False,
                                "properties": {
                                    "command": {"type": "array", "items": {"type": "string"}},
                                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                },
                            },
                            "checks": {"type": "array", "items": _CHECK, "minItems": 1},
                        },
                        "oneOf": [
                            {"required": ["run"], "not": {"required": ["serve"]}},
                            {"required": ["serve", "checks"], "not": {"required": ["run"]}},
                        ],
                    },
                },
            },
        },
    },
}


@dataclass
class ImageSpec:
    """One standard image as the pipeline sees it."""

    name: str
    root: Path  # the repository
    description: str = ""
    context: list = field(default_factory=list)  # repository paths in the build context
    smoke: dict | None = None

    @property
    def folder(self):
        return self.root / "images" / self.name

    @property
    def dockerfile(self):
        """The Dockerfile's path inside the build context."""
        return f"images/{self.name}/Dockerfile"

    def base_images(self, build_args=None):
        """The images the Dockerfile starts from (stages named ``AS x`` excluded), with
        ``${ARG}`` references resolved from ``build_args`` or the ``ARG`` defaults declared
        before the first ``FROM`` (as the engine resolves them)."""
        text = (self.folder / "Dockerfile").read_text()
        first_from = re.search(r"^\s*FROM\s", text, re.I | re.M)
        values = {
            m.group(1): m.group(2) or ""
            for m in re.finditer(
                r"^\s*ARG\s+(\w+)(?:=(\S*))?",
                text[: first_from.start() if first_from else 0],
                re.I | re.M,
            )
        }
        values.update({k: v for k, v in (build_args or {}).items() if k in values})

        def resolve(ref):
            return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), ref)

        stages, bases = set(), []
        for match in re.finditer(r"^\s*FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.I | re.M):
            ref, alias = resolve(match.group(1)), match.group(2)
            if ref.lower() not in stages and ref not in bases and "$" not in ref:
                bases.append(ref)
            if alias:
                stages.add(alias.lower())
        return bases


def load_spec(root, name):
    """The ``ImageSpec`` of ``images/<name>/``; ``InvalidImageSpec`` says what to fix."""
    root = Path(root)
    folder = root / "images" / name
    if not _NAME.match(name) or not (folder / "Dockerfile").is_file():
        known = ", ".join(image_names(root)) or "none"
        raise InvalidImageSpec(
            f"no image {name!r}: an image is a folder images/<name>/ with a Dockerfile "
            f"(known: {known})",
            {"image": name},
        )
    data = {}
    spec_file = folder / SPEC_FILE
    if spec_file.is_file():
        try:
            data = yaml.safe_load(spec_file.read_text()) or {}
            jsonschema.validate(data, SCHEMA)
        except yaml.YAMLError as e:
            raise InvalidImageSpec(f"{spec_file} is not valid YAML: {e}") from None
        except jsonschema.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            raise InvalidImageSpec(
                f"{spec_file}: at {where}: {e.message}", {"file": str(spec_file), "path": where}
            ) from None
    context = [f"images/{name}", SITE_DIR]
    paths = []
    for path in data.get("context", []):
        paths.extend(mlhub_package_paths(root) if path == MLHUB_PACKAGE else [path])
    for path in paths:
        # "path?" is optional: left out while it does not exist (a part still to come).
        optional = path.endswith("?")
        clean = path.rstrip("?").strip("/")
        if optional and ".." not in Path(clean).parts and not (root / clean).exists():
            continue
        if ".." in Path(clean).parts or not (root / clean).exists():
            raise InvalidImageSpec(
                f"{spec_file}: context path {path!r} is not a file or folder of the repository",
                {"file": str(spec_file), "path": path},
            )
        if clean not in context:
            context.append(clean)
    return ImageSpec(name, root, data.get("description", ""), context, data.get("smoke"))


def mlhub_package_paths(root):
    """What installing the mlhub package from source reads: pyproject.toml, the licence, the
    extension's Jupyter config and the JupyterLab extension's build (data-files) and every
    folder of its ``package-dir`` table, so a package added there is in the images' context
    without touching them. The JupyterLab extension is built from TypeScript on the host, where
    Node.js is, so the images need none."""
    try:
        project = tomllib.loads((Path(root) / "pyproject.toml").read_text())
        folders = project["tool"]["setuptools"]["package-dir"].values()
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        raise InvalidImageSpec(
            f"pyproject.toml has no [tool.setuptools] package-dir table ({e}): cannot list "
            "mlhub's sources"
        ) from None
    # nested packages' folders are inside their parent's: keep the outermost
    outer = [f for f in sorted(set(folders)) if not any(f.startswith(o + "/") for o in folders)]
    if not (Path(root) / LABEXTENSION / "package.json").is_file():
        raise InvalidImageSpec(
            f"the JupyterLab extension is not built ({LABEXTENSION} is missing), and installing "
            "mlhub from source ships it: run scripts/build-labextension (make install runs it)",
            {"path": LABEXTENSION},
        )
    return ["pyproject.toml", "LICENSE", "extension/jupyter-config", LABEXTENSION, *outer]


def image_names(root):
    """The names of the folders under ``root/images`` that hold a Dockerfile."""
    return sorted(p.parent.name for p in (Path(root) / "images").glob("*/Dockerfile"))


def discover(root, names=None):
    """Every image under ``root/images`` (or the named ones, in the order given)."""
    if not (Path(root) / "images").is_dir():
        raise InvalidImageSpec(
            f"no images/ folder in {root}: the standard images are built from a checkout of the "
            "mlhub repository (an installed mlhub has no Dockerfiles); run mlhub images from the "
            "checkout's venv",
            {"root": str(root)},
        )
    return [load_spec(root, n) for n in (names or image_names(root))]


def build_order(specs, namespace, build_args=None, load=None):
    """``specs`` ordered so an image built ``FROM <namespace>/<other image>`` comes after that
    image (serving-mlflow after serving-python); otherwise in the order given. With ``load``
    (name -> ImageSpec), such a base missing from ``specs`` is added before its image."""
    by_name = {s.name: s for s in specs}
    ordered, placed = [], set()

    def place(spec, seen=()):
        if spec.name in placed:
            return
        if spec.name in seen:
            raise InvalidImageSpec(f"images built from each other: {' -> '.join(seen)}")
        for base in spec.base_images(build_args):
            repo = base.rsplit(":", 1)[0]
            if not repo.startswith(f"{namespace}/"):
                continue
            name = repo[len(namespace) + 1 :]
            if name not in by_name and load is not None and name in image_names(spec.root):
                by_name[name] = load(name)
            if name in by_name:
                place(by_name[name], (*seen, spec.name))
        placed.add(spec.name)
        ordered.append(spec)

    for spec in specs:
        place(spec)
    return ordered


def _walk(path):
    if path.is_file():
        yield path
        return
    for child in sorted(path.iterdir()):
        if child.name in _SKIPPED or child.name.endswith(_SKIPPED_SUFFIXES):
            continue
        if child.is_dir() and not child.is_symlink():
            yield from _walk(child)
        elif child.is_file():
            yield child


def build_context(spec, extra_files=None):
    """The build context as tar bytes: the spec's paths plus ``extra_files``
    (``{path in context: bytes}``, e.g. the site's CA certificates), in a fixed order with
    fixed owners and times so equal inputs give equal bytes."""
    entries = {}
    for rel in spec.context:
        for f in _walk(spec.root / rel):
            entries[f.relative_to(spec.root).as_posix()] = f
    for rel, data in (extra_files or {}).items():
        entries[rel] = data
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(entries):
            source = entries[rel]
            data = source if isinstance(source, bytes) else source.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            executable = not isinstance(source, bytes) and source.stat().st_mode & 0o100
            info.mode = 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def content_hash(context, build_args, base_ids, labels=None):
    """The image's tag: sha256 over the context bytes, the build arguments, the labels the
    pipeline gives it and the ids of the base images (a re-made ``debian:bookworm-slim`` is a
    different input), 16 hex digits."""
    h = hashlib.sha256(context)
    for key in sorted(build_args):
        h.update(f"\0arg {key}={build_args[key]}".encode())
    for key in sorted(labels or {}):
        h.update(f"\0label {key}={labels[key]}".encode())
    for base in base_ids:
        h.update(f"\0base {base}".encode())
    return h.hexdigest()[:16]
