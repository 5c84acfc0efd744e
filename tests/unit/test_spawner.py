"""ProfileLocalSpawner without processes: the form, the server-side check, what a start applies."""

import resource
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from jupyterhub.objects import Hub
from tornado import web

from mlhub import spawner as spawner_module
from mlhub.errors import Conflict
from mlhub.spawner import ProfileLocalSpawner, safe_name

PROFILES = {
    "python.yaml": """\
        display_name: Python (standard)
        slug: python
        default: true
        kernels: [python3]
        environment: {MLHUB_RUNTIME: python}
        sizes:
          - {slug: small, display_name: Small, default: true, cpu_limit: 1, mem_limit: 2G}
          - {slug: large, display_name: Large, cpu_limit: 4, mem_limit: 8G, mem_guarantee: 4G}
          - {slug: gpu, display_name: GPU, gpu: 1}
    """,
    "python-r.yaml": """\
        display_name: Python + R
        slug: python-r
        kernels: [python3, ir]
        sizes: [{slug: small, display_name: Small}]
    """,
    "r.yaml": """\
        display_name: R
        slug: r
        kernels: [ir]
        sizes: [{slug: small, display_name: Small}]
    """,
    "secret.yaml": """\
        display_name: Team only
        slug: team
        groups: [team]
        kernels: [python3]
        sizes: [{slug: small, display_name: Small}]
    """,
}


@pytest.fixture
def profiles_dir(tmp_path):
    directory = tmp_path / "profiles"
    directory.mkdir()
    for name, text in PROFILES.items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory


@pytest.fixture(autouse=True)
def machine(monkeypatch):
    """This machine: a Python kernel, no R kernel, no GPU."""
    monkeypatch.setattr(spawner_module, "installed_kernels", lambda: {"python3"})
    monkeypatch.setattr(spawner_module, "gpu_count", lambda: 0)


def make_spawner(profiles_dir, tmp_path, groups=(), admin=False, user_options=None):
    user = SimpleNamespace(
        name="alice",
        admin=admin,
        groups=[SimpleNamespace(name=g) for g in groups],
        url="/user/alice/",
    )
    home = tmp_path / "workspaces" / "alice"
    home.mkdir(parents=True, exist_ok=True)  # as start() does
    return ProfileLocalSpawner(
        user=user,
        hub=Hub(),
        profiles_dir=str(profiles_dir),
        home_dir=str(home),
        # the hub's own account (single-user mode); multi-user mode's system accounts are
        # made for real in tests/component/test_tenant_isolation.py
        system_users=None,
        user_options=user_options or {},
    )


def test_workspace_is_home_and_notebook_root(profiles_dir, tmp_path):
    spawner = make_spawner(profiles_dir, tmp_path)
    assert spawner.home_dir == str(tmp_path / "workspaces" / "alice")
    assert spawner.notebook_dir == spawner.home_dir
    assert spawner.cmd[1:] == ["-m", "mlhub.extension.singleuser"]
    assert spawner.default_url == "/lab"


def test_form_lists_allowed_profiles_and_says_what_is_missing(profiles_dir, tmp_path):
    html = make_spawner(profiles_dir, tmp_path)._render_options_form(None)
    assert 'value="python" checked' in " ".join(html.split())
    assert "Python + R" in html and "Team only" not in html
    assert "1 more profile(s) are reserved for groups you are not in" in html
    # R: its only kernel is missing, so it cannot be picked
    assert 'id="profile-item-r" value="r" disabled' in " ".join(html.split())
    assert '<code>ir</code> <span class="text-danger">(not installed on this machine)' in html
    # the GPU size is listed but disabled
    assert "GPU (Needs 1 GPU(s); this machine has 0.)" in " ".join(html.split())
    assert 'name="profile-option-python--size"' in html


def test_form_shows_group_profiles_to_members_and_admins(profiles_dir, tmp_path):
    for kwargs in ({"groups": ["team"]}, {"admin": True}):
        html = make_spawner(profiles_dir, tmp_path, **kwargs)._render_options_form(None)
        assert "Team only" in html and "reserved for groups" not in html


def test_form_preselects_the_previous_choice(profiles_dir, tmp_path):
    spawner = make_spawner(
        profiles_dir, tmp_path, user_options={"profile": "python", "size": "large"}
    )
    html = " ".join(spawner._render_options_form(None).split())
    assert 'value="large" selected' in html


def test_form_post_becomes_user_options(profiles_dir, tmp_path):
    spawner = make_spawner(profiles_dir, tmp_path)
    form = {"profile": ["python"], "profile-option-python--size": ["large"], "_xsrf": ["x"]}
    assert spawner.options_from_form(form) == {"profile": "python", "size": "large"}
    assert spawner.options_from_form({}) == {}


@pytest.mark.parametrize(
    "form, status, message",
    [
        ({"profile": ["team"]}, 403, "'Team only' is restricted to the groups team"),
        ({"profile": ["r"]}, 409, "Its kernels (ir) are not installed on this machine"),
        ({"profile": ["nope"]}, 400, "Unknown profile 'nope'"),
        (
            {"profile": ["python"], "profile-option-python--size": ["gpu"]},
            409,
            "Needs 1 GPU(s)",
        ),
    ],
)
def test_refused_choices_are_clear_http_errors(profiles_dir, tmp_path, form, status, message):
    spawner = make_spawner(profiles_dir, tmp_path)
    with pytest.raises(web.HTTPError) as e:
        spawner.options_from_form(form)
    assert e.value.status_code == status
    assert message in e.value.jupyterhub_message  # what the spawn page shows


def test_rest_api_options_are_checked_too(profiles_dir, tmp_path):
    spawner = make_spawner(profiles_dir, tmp_path)
    with pytest.raises(web.HTTPError) as e:
        spawner.apply_user_options(spawner, {"profile": "team"})
    assert e.value.status_code == 403
    member = make_spawner(profiles_dir, tmp_path, groups=["team"])
    member.apply_user_options(member, {"profile": "team"})
    assert member.profile.slug == "team"


def test_start_applies_size_and_kernels(profiles_dir, tmp_path):
    spawner = make_spawner(profiles_dir, tmp_path)
    spawner.apply_user_options(spawner, {"profile": "python", "size": "large"})
    assert (spawner.profile.slug, spawner.size.slug) == ("python", "large")
    assert (spawner.mem_limit, spawner.mem_guarantee) == (8 * 1024**3, 4 * 1024**3)
    assert (spawner.cpu_limit, spawner.cpu_guarantee) == (4, None)
    args = spawner.get_args()
    assert "--KernelSpecManager.allowed_kernelspecs=['python3']" in args
    assert "--MappingKernelManager.default_kernel_name=python3" in args
    # the next start with another size resets what the previous one set
    spawner.apply_user_options(spawner, {})
    assert (spawner.size.slug, spawner.mem_guarantee, spawner.cpu_limit) == ("small", None, 1)


def test_mixed_profile_offers_only_the_installed_kernels(profiles_dir, tmp_path):
    spawner = make_spawner(profiles_dir, tmp_path)
    spawner.apply_user_options(spawner, {"profile": "python-r"})
    assert "--KernelSpecManager.allowed_kernelspecs=['python3']" in spawner.get_args()


@pytest.mark.parametrize(
    "name, expected",
    [("alice", "alice"), ("a.b-c_d@example.org", "a.b-c_d@example.org")],
)
def test_safe_names_are_kept(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "x" * 200, "a b"])
def test_unsafe_names_are_escaped(name):
    escaped = safe_name(name)
    assert "/" not in escaped and not escaped.startswith(".") and len(escaped) <= 100
    assert escaped != safe_name(name + "!")


def run_with_preexec(spawner):
    """Run a child with the spawner's preexec_fn; return (RLIMIT_DATA soft limit, cwd)."""
    script = "import os, resource; print(resource.getrlimit(resource.RLIMIT_DATA)[0], os.getcwd())"
    out = subprocess.run(
        [sys.executable, "-c", script],
        preexec_fn=spawner.make_preexec_fn(spawner.user.name),
        capture_output=True,
        text=True,
        check=True,
    )
    limit, cwd = out.stdout.split()
    return int(limit), cwd


def test_without_cgroups_memory_is_capped_per_process(profiles_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(spawner_module.Cgroups, "detect", staticmethod(lambda **kw: None))
    spawner = make_spawner(profiles_dir, tmp_path)
    spawner.apply_user_options(spawner, {"profile": "python", "size": "small"})
    assert run_with_preexec(spawner) == (2 * 1024**3, spawner.home_dir)

    spawner.limit_method = "none"
    assert run_with_preexec(spawner)[0] == resource.RLIM_INFINITY

    spawner.limit_method = "cgroup"
    with pytest.raises(Conflict, match="no writable cgroup hierarchy"):
        spawner.make_preexec_fn("alice")


@pytest.mark.parametrize("profile, helper", [("r", True), ("python-r", True), ("python", False)])
def test_r_profiles_get_the_r_helper_on_r_libs(
    profiles_dir, tmp_path, monkeypatch, profile, helper
):
    """With R on the machine, a server whose profile has IRkernel finds ``library(mlhub)``:
    the helper is installed (for real, with R CMD INSTALL) into ``r_library``, first on
    ``R_LIBS``; a Python-only server gets neither."""
    from mlhub import rlang

    if rlang.rscript() is None:
        pytest.fail(f"R is not installed: {rlang.INSTALL_HINT} (scripts/system-deps does it)")
    monkeypatch.setattr(spawner_module, "installed_kernels", lambda: {"python3", "ir"})
    spawner = make_spawner(profiles_dir, tmp_path)
    spawner.r_library = str(tmp_path / "R-library")
    spawner.apply_user_options(spawner, {"profile": profile})
    monkeypatch.setenv("R_LIBS", "/elsewhere")
    env = spawner.get_env()
    if helper:
        assert env["R_LIBS"].split(":")[0] == spawner.r_library
        rlang.install_helper(spawner.r_library)  # what start() does before the server starts
        found = subprocess.run(
            ["Rscript", "-e", "cat(find.package('mlhub'))"],
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert found.stdout.startswith(spawner.r_library), found.stderr
    else:
        assert spawner.r_library not in env.get("R_LIBS", "")
