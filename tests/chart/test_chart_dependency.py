"""The mlhub chart against its real dependency, the official JupyterHub chart 4.4.0 (the
archive beside the checkout, helmtool.jupyterhub_chart): what Helm takes from the parent alone
must agree with what the dependency needs and does."""

import tarfile

import pytest
import yaml
from support.helmtool import CHART, jupyterhub_chart

pytestmark = pytest.mark.component


def dependency_file(name):
    with tarfile.open(jupyterhub_chart()) as archive:
        return yaml.safe_load(archive.extractfile(f"jupyterhub/{name}"))


MLHUB = yaml.safe_load((CHART / "Chart.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def test_the_dependency_is_the_vendored_official_chart():
    [dependency] = MLHUB["dependencies"]
    meta = dependency_file("Chart.yaml")
    assert (dependency["name"], meta["name"], meta["version"]) == (
        "jupyterhub",
        "jupyterhub",
        "4.4.0",
    )


def test_kube_version_promises_no_more_than_the_dependency_needs():
    """Helm checks only the parent's kubeVersion: a lower one lets an install on 1.27 go
    through and fail later on the dependency's policy/v1 objects."""
    assert MLHUB["kubeVersion"] == dependency_file("Chart.yaml")["kubeVersion"] == ">=1.28.0-0"


def test_values_that_would_undo_mlhub_are_switched_off():
    defaults = dependency_file("values.yaml")["singleuser"]
    ours = VALUES["jupyterhub"]["singleuser"]
    # the dependency's [] would become c.KubeSpawner.profile_list and replace mlhub's profiles;
    # null removes its key (Helm drops null values when it merges a subchart's)
    assert defaults["profileList"] == [] and "profileList" in ours and ours["profileList"] is None
    # its privileged iptables init container would fail the restricted Pod Security Standard;
    # its singleuser NetworkPolicy keeps pods from the metadata server instead
    assert defaults["cloudMetadata"]["blockWithIptables"] is True
    assert ours["cloudMetadata"]["blockWithIptables"] is False
    assert defaults["networkPolicy"]["enabled"] is True
    assert defaults["networkPolicy"]["egressAllowRules"]["cloudMetadataServer"] is False
