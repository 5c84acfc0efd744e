"""The chart tests' Helm: helm-sdkpy in its own Python 3.12 venv (``scripts/helm-venv``),
driven through ``helmrun.py`` one action per process."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART = ROOT / "deploy" / "mlhub"
# The official JupyterHub chart: no registry reachable here serves it, so it lies beside the
# checkout with its provenance (../shared/vendor/README.md), as an air-gapped install has it.
VENDOR = ROOT.parent / "shared" / "vendor" / "helm-charts"
JUPYTERHUB_CHART = "jupyterhub-4.4.0.tgz"


def jupyterhub_chart():
    """The official JupyterHub chart's archive; fails saying what is missing and where."""
    path = VENDOR / JUPYTERHUB_CHART
    if not path.is_file():
        raise AssertionError(
            f"missing {path}: the official JupyterHub chart 4.4.0 (the mlhub chart's dependency, "
            "zero-to-jupyterhub-k8s tag 4.4.0 packaged as its chart repository serves it). No "
            "registry reachable here serves it; put that archive there (see "
            f"{VENDOR.parent / 'README.md'} on a machine that has it)"
        )
    return path


def chart_for_the_test_cluster(path, dependency=True):
    """A copy of the chart at ``path`` that Helm installs on the 1.20 test cluster: the official
    chart in charts/ (``dependency``) or the dependency removed (mlhub's own templates alone),
    and kubeVersion lowered. The chart asks for 1.28+, its dependency's need; on 1.20 the
    official chart's parts that need newer APIs are switched off by the test's values."""
    shutil.copytree(CHART, path)
    meta = yaml.safe_load((path / "Chart.yaml").read_text())
    if dependency:
        (path / "charts").mkdir()
        shutil.copy(jupyterhub_chart(), path / "charts")
    else:
        meta.pop("dependencies")
    meta["kubeVersion"] = ">=1.20.0-0"
    (path / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return path


class HelmFailed(AssertionError):
    """Helm refused the action; ``error`` is its message."""

    def __init__(self, action, error):
        super().__init__(f"helm {action}: {error}")
        self.error = error


def helm_python():
    """The helm-sdkpy venv's python, made on first use (about 20 s, then cached)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "helm-venv")],
        check=True,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        timeout=600,
    )
    return out.stdout.strip().splitlines()[-1]


class Helm:
    def __init__(self, python, kubeconfig=None):
        self.python = python
        self.kubeconfig = kubeconfig

    def __call__(self, action, timeout=300, **request):
        """Helm's ``action`` with ``request``; ``timeout`` is Helm's wait, in seconds."""
        request = {"action": action, "kubeconfig": self.kubeconfig, "timeout": timeout, **request}
        proc = subprocess.run(
            [self.python, str(HERE / "helmrun.py")],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout + 120,
        )
        if proc.returncode != 0:
            raise HelmFailed(action, proc.stderr.strip() or f"exit {proc.returncode}")
        answer = json.loads(proc.stdout)
        if not answer["ok"]:
            raise HelmFailed(action, answer["error"])
        return answer["result"]

    def lint(self, chart=CHART):
        """``(errors, messages)``: how many errors, and ``[(severity, path)]`` of every message.
        (helm-sdkpy passes Helm's messages on without their text.)"""
        result = self("lint", chart=str(chart))
        messages = [(m["Severity"], m["Path"]) for m in result["Messages"] or []]
        return len(result["Errors"] or []), messages
