"""Fixtures of the chart tests: a real Helm engine (helm-sdkpy) and copies of the chart."""

import shutil

import pytest
import yaml
from support.helmtool import CHART, Helm, helm_python


@pytest.fixture(scope="session")
def helm():
    return Helm(helm_python())


class ChartCopy:
    """A copy of the chart in a temp folder, to change before handing it to Helm."""

    def __init__(self, path):
        self.path = path
        shutil.copytree(CHART, path)

    def edit(self, name, change):
        """Rewrite the YAML file ``name`` with ``change(doc)`` (which edits it in place)."""
        file = self.path / name
        doc = yaml.safe_load(file.read_text())
        change(doc)
        file.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self


@pytest.fixture
def chart_copy(tmp_path):
    return ChartCopy(tmp_path / "mlhub")
