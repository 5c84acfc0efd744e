"""Helm's own lint of the chart (offline, with the real Helm engine), and what Helm does with
the JupyterHub dependency, which cannot be downloaded here and is absent from charts/."""

import pytest

from mlhub import __version__ as VERSION

pytestmark = pytest.mark.component

INFO, WARNING, ERROR = 1, 2, 3


def without_dependencies(doc):
    doc.pop("dependencies")


def test_chart_lints_clean_but_for_the_absent_jupyterhub_chart(helm, chart_copy):
    errors, messages = helm.lint()
    assert errors == 0
    # Helm lints a chart whose dependency is missing from charts/ with one warning on the chart
    # itself ("missing these dependencies"; helm-sdkpy drops the text) ...
    chart_warnings = [m for m in messages if m[0] >= WARNING]
    assert len(chart_warnings) == 1 and chart_warnings[0][1].endswith("mlhub")
    # ... and that warning is the dependency: without it, nothing is left but the icon info
    chart = chart_copy.edit("Chart.yaml", without_dependencies).path
    errors, messages = helm.lint(chart)
    assert (errors, messages) == (0, [(INFO, "Chart.yaml")])


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda v: v.update(publicUrl="http://no-slash"), id="publicUrl-no-slash"),
        pytest.param(lambda v: v["models"].update(namespace="Models_NS"), id="bad-namespace"),
        pytest.param(lambda v: v["publisher"].update(port="8090"), id="port-as-text"),
        pytest.param(lambda v: v.update(unknown=1), id="unknown-key"),
        pytest.param(
            lambda v: v.update(profiles=[{"slug": "x", "display_name": "X", "kernels": []}]),
            id="profile-without-sizes-or-kernels",
        ),
        pytest.param(lambda v: v["jupyterhub"]["cull"].update(users=True), id="cull-users"),
    ],
)
def test_helm_refuses_bad_values(helm, chart_copy, change):
    chart = chart_copy.edit("values.yaml", change).path
    errors, _ = helm.lint(chart)
    assert errors >= 1


def test_a_good_profile_list_is_accepted(helm, chart_copy):
    profile = {
        "slug": "gpu-python",
        "display_name": "Python on GPUs",
        "image": f"mlhub/notebook-python:{VERSION}",
        "kernels": ["python3"],
        "groups": ["gpu-users"],
        "sizes": [{"slug": "one", "display_name": "1 GPU", "gpu": 1, "mem_limit": "16G"}],
    }
    chart = chart_copy.edit("values.yaml", lambda v: v.update(profiles=[profile])).path
    errors, _ = helm.lint(chart)
    assert errors == 0


def test_a_broken_template_is_an_error(helm, chart_copy):
    template = chart_copy.path / "templates" / "publisher-service.yaml"
    template.write_text(template.read_text() + "\n  bad: {{ .Values.publisher.nothing.here }}\n")
    errors, messages = helm.lint(chart_copy.path)
    assert errors >= 1
    assert (ERROR, "templates/") in messages
