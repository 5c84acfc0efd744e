"""The model bundle: one artifact for every runtime (see docs/design.md, "The model bundle").

A bundle is a directory::

    mlhub.yaml          manifest: name, runtime, flavor, signature, example, requirements
    model/              the model file(s)
    requirements.txt    what the model was captured with (pip format)

It travels as a deterministic ``tar.gz``. Its version id is the sha256 of its *contents* (paths
and file bytes, not tar metadata), so publishing the same bundle twice is one version.

Only ``load_model`` runs model code (unpickling executes code): it is called in the owner's own
serving process and nowhere else. Everything else here reads YAML and bytes.

The package's modules: ``manifest`` (mlhub.yaml and names), ``signature`` (input types and their
inference), ``requirements`` (what a pickle needs), ``save``, ``archive`` (tar.gz and digest)
and ``load``. The names below are the bundle API the rest of mlhub uses.
"""

from mlhub.bundle.archive import bundle_digest, pack, unpack
from mlhub.bundle.load import load_model
from mlhub.bundle.manifest import (
    FLAVORS,
    FORMAT,
    MANIFEST,
    RUNTIMES,
    SERIALIZATIONS,
    check_manifest,
    check_r_manifest,
    load_manifest,
    validate_name,
    write_manifest,
)
from mlhub.bundle.requirements import capture_requirements
from mlhub.bundle.save import detect_flavor, save_bundle, save_r_bundle
from mlhub.bundle.signature import EXAMPLE_ROWS, SIGNATURE_KINDS, TYPES, infer_signature

__all__ = [
    "EXAMPLE_ROWS",
    "FLAVORS",
    "FORMAT",
    "MANIFEST",
    "RUNTIMES",
    "SERIALIZATIONS",
    "SIGNATURE_KINDS",
    "TYPES",
    "bundle_digest",
    "capture_requirements",
    "check_manifest",
    "check_r_manifest",
    "detect_flavor",
    "infer_signature",
    "load_manifest",
    "load_model",
    "pack",
    "save_bundle",
    "save_r_bundle",
    "unpack",
    "validate_name",
    "write_manifest",
]
