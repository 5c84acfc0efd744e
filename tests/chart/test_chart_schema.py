"""values.schema.yaml documents every value, and values.schema.json is what it generates."""

import json
import runpy

import jsonschema
import pytest
import yaml
from support.helmtool import CHART, ROOT

SCHEMA_YAML = yaml.safe_load((CHART / "values.schema.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def resolve(node, root):
    while "$ref" in node:
        node = {**root["$defs"][node["$ref"].rsplit("/", 1)[-1]], **node}
        node.pop("$ref")
    return node


def undocumented(value, node, root, path="$"):
    """Paths of keys in ``value`` whose schema has no description (or no entry at all)."""
    node = resolve(node, root)
    missing = []
    if isinstance(value, dict):
        named = node.get("additionalProperties")  # a map of free names, documented once
        for key, item in value.items():
            child = node.get("properties", {}).get(key, named if isinstance(named, dict) else None)
            where = f"{path}.{key}"
            if child is None or not resolve(child, root).get("description"):
                missing.append(where)
            else:
                missing += undocumented(item, child, root, where)
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            missing += undocumented(item, node["items"], root, f"{path}[{i}]")
    return missing


def test_every_value_has_a_description():
    assert undocumented(VALUES, SCHEMA_YAML, SCHEMA_YAML) == []


def test_the_walk_finds_an_undocumented_key():
    assert undocumented({"publisher": {"surprise": 1}}, SCHEMA_YAML, SCHEMA_YAML) == [
        "$.publisher.surprise"
    ]


def test_the_json_schema_helm_reads_is_generated_from_the_yaml():
    build = runpy.run_path(str(ROOT / "scripts" / "chart-schema"))["build"]
    assert (CHART / "values.schema.json").read_text() == build()


def test_default_values_are_valid():
    jsonschema.Draft202012Validator(SCHEMA).validate(VALUES)


def test_profiles_are_checked_with_the_spawner_profile_schema():
    from mlhub.profiles import PROFILES_DIR

    validator = jsonschema.Draft202012Validator(SCHEMA)
    shipped = [yaml.safe_load(p.read_text()) for p in sorted(PROFILES_DIR.glob("*.yaml"))]
    validator.validate({**VALUES, "profiles": shipped})
    broken = {**shipped[0], "sizes": [{"slug": "s", "display_name": "S", "mem_limit": "2 GB"}]}
    with pytest.raises(jsonschema.ValidationError, match="2 GB"):
        validator.validate({**VALUES, "profiles": [broken]})


def test_the_production_example_is_valid_and_postgres_needs_a_home_for_accounts():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    example = yaml.safe_load((CHART.parent / "examples" / "production-values.yaml").read_text())
    merged = {**VALUES, **example, "jupyterhub": {**VALUES["jupyterhub"], **example["jupyterhub"]}}
    validator.validate(merged)
    # with the hub's database on PostgreSQL there is no hub volume: the accounts need a URL
    hub = {**example["jupyterhub"]["hub"], "extraEnv": {"MLHUB_MODE": "kubernetes"}}
    without = {**merged, "jupyterhub": {**merged["jupyterhub"], "hub": hub}}
    with pytest.raises(jsonschema.ValidationError, match="MLHUB_ACCOUNTS_DB"):
        validator.validate(without)
