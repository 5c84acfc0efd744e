"""Objects against the OpenAPI schemas of the Kubernetes versions users run (kubernetes-validate,
strict: an unknown field is an error). The test cluster is 1.20, older than the chart supports,
so newer API rules are checked here, statically: 1.28 (the oldest the chart and its dependency
allow) and the newest version kubernetes-validate ships."""

import kubernetes_validate
from kubernetes_validate.utils import latest_version

VERSIONS = ("1.28.0", latest_version())


def schema_errors(obj, versions=VERSIONS):
    """One line per version whose schema refuses ``obj`` (or does not know its kind)."""
    what = f"{obj.get('apiVersion')} {obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top)"
            errors.append(f"{what} on {version}: {e.message} at {where}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{what} on {version}: no such kind in that version")
    return errors
