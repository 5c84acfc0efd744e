"""The publisher's OpenAPI 3 description: kept as ``openapi.yaml``, served as JSON.

YAML so it reads and reviews like documentation; a unit test checks it against the route table.
"""

from pathlib import Path

import yaml

SPEC_FILE = Path(__file__).with_name("openapi.yaml")


def load_spec(service_prefix="/services/mlhub-publisher/", max_workers=None):
    """The document, with ``servers`` pointing at where this publisher is mounted and the
    replica bound this publisher enforces (``PublisherApp.max_workers``)."""
    spec = yaml.safe_load(SPEC_FILE.read_text())
    spec["servers"] = [{"url": service_prefix.rstrip("/")}]
    if max_workers is not None:
        scale = spec["paths"]["/api/models/{user}/{name}/scale"]["post"]
        schema = scale["requestBody"]["content"]["application/json"]["schema"]
        schema["properties"]["replicas"]["maximum"] = max_workers
    return spec
