"""``mlhub up`` for real: JupyterHub, its proxy and the publisher on free ports in a temp data dir.

Log in through the real login form, spawn with a profile through the real spawn form, check the
server runs with the profile (environment, kernels, limits, workspace), the scopes its token
carries, a group-restricted profile refused, a broken profile refused at start, Ctrl-C leaving no
process behind, and a restart keeping users and workspaces.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from support.embedded_hub import MLHUB, EmbeddedHub, process_table, wait_for

from mlhub.profiles import PROFILES_DIR

pytestmark = [pytest.mark.component, pytest.mark.slow]

TEAM_PROFILE = """\
display_name: Team only
slug: team
description: A profile only the team group may start.
groups: [team]
kernels: [python3]
environment: {TEAM_SECRET: "42"}
sizes:
  - {slug: tiny, display_name: "Tiny: 1 CPU, 1 GB", cpu_limit: 1, mem_limit: 1G}
"""


@pytest.fixture
def profiles_dir(tmp_path):
    """The shipped profiles plus one restricted to the group "team"."""
    directory = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (directory / "team.yaml").write_text(TEAM_PROFILE)
    return directory


@pytest.fixture
def hub(tmp_path, profiles_dir):
    instance = EmbeddedHub(tmp_path, profiles_dir=profiles_dir)
    yield instance
    instance.kill()


def memory_cgroup(pid):
    """The memory cgroup (v1) the hub put process ``pid`` in, or None if it put it in none
    (this machine does not let the hub create cgroups)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and "/mlhub/" in path:
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    return None


def spawn(hub, session, profile, size, user):
    """POST the spawn form; return the response (a redirect to spawn-pending when accepted)."""
    return session.post(
        hub.url + "hub/spawn",
        data={"profile": profile, f"profile-option-{profile}--size": size, "_xsrf": session.xsrf},
        timeout=120,
    )


def test_broken_profile_stops_startup(tmp_path, profiles_dir):
    broken = profiles_dir / "python.yaml"
    broken.write_text(broken.read_text().replace("mem_limit: 4G", "mem_limit: lots"))
    hub = EmbeddedHub(tmp_path, profiles_dir=profiles_dir)
    result = subprocess.run(hub.command("up"), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"{broken}: $.sizes[1].mem_limit: 'lots'" in result.stderr
    assert not (hub.data_dir / "jupyterhub.sqlite").exists()  # the hub never started


def test_login_spawn_with_profile(hub):
    banner = hub.start()
    password = hub.admin_password()
    assert f"mlhub is running at {hub.url}" in banner
    assert "admin user:   admin" in banner
    assert f"password:     {password}" in banner  # printed on the first start

    wrong = hub.login("admin", "not-the-password")
    assert wrong.login_response.status_code == 403
    assert "Invalid username or password" in wrong.login_response.text
    unknown = hub.login("nobody", password)
    assert unknown.login_response.status_code == 403

    started = time.monotonic()
    session = hub.login("admin", password)
    assert session.login_response.url == hub.url + "hub/spawn"  # logged in, on the spawn page
    form = session.login_response.text
    for name in ("Python (standard)", "Python + R", "R", "Team only"):  # admins see all
        assert f'<span class="h5">{name}</span>' in form
    r = spawn(hub, session, "python", "medium", "admin")
    assert r.status_code == 200 and "/hub/spawn-pending/admin" in r.url
    server = hub.wait_ready(session, "admin")
    print(f"\nlogin -> ready notebook server: {time.monotonic() - started:.1f} s")
    assert server["user_options"] == {"profile": "python", "size": "medium"}

    # the server runs with the profile's environment and limits, in the user's workspace
    pid = hub.server_pid("admin")
    env = hub.server_env("admin")
    workspace = hub.workspace("admin")
    assert env["MLHUB_PROFILE"] == "python" and env["MLHUB_SIZE"] == "medium"
    assert env["MLHUB_RUNTIME"] == "python"
    assert env["MLHUB_PUBLISHER_URL"] == hub.url + "services/mlhub-publisher/"
    assert env["MLHUB_PUBLIC_URL"] == hub.url
    assert env["MEM_LIMIT"] == str(4 * 1024**3) and env["CPU_LIMIT"] == "2.0"
    assert env["HOME"] == str(workspace) == env["JUPYTERHUB_ROOT_DIR"]
    assert Path(f"/proc/{pid}/cwd").resolve() == workspace
    group = memory_cgroup(pid)
    if group:
        assert (group / "memory.limit_in_bytes").read_text().strip() == str(4 * 1024**3)

    # the server's own token: reaching the server and the publisher, and publishing
    token = env["JUPYTERHUB_API_TOKEN"]
    auth = {"Authorization": f"token {token}"}
    me = requests.get(hub.url + "hub/api/user", headers=auth, timeout=30).json()
    assert {"custom:mlhub:models", "access:services!service=mlhub-publisher"} <= set(me["scopes"])
    assert "custom:mlhub:admin" not in me["scopes"]

    # the kernels offered are the profile's; the notebook root is the workspace
    specs = requests.get(hub.url + "user/admin/api/kernelspecs", headers=auth, timeout=30).json()
    assert set(specs["kernelspecs"]) == {"python3"} and specs["default"] == "python3"
    (workspace / "notes.txt").write_text("kept")
    listing = requests.get(hub.url + "user/admin/api/contents/", headers=auth, timeout=30).json()
    assert "notes.txt" in {item["name"] for item in listing["content"]}

    # a token made on /hub/token carries the user's scopes, admin ones included
    r = hub.hub_api(session, "POST", "/users/admin/tokens", json={"note": "test"})
    assert r.status_code == 201, r.text
    scopes = requests.get(
        hub.url + "hub/api/user",
        headers={"Authorization": f"token {r.json()['token']}"},
        timeout=30,
    ).json()["scopes"]
    assert {"custom:mlhub:models", "custom:mlhub:admin", "access:services"} <= set(scopes)

    assert hub.stop() == 0
    assert hub.alive() == {}


def test_group_restricted_profile(hub):
    hub.start()
    password = hub.add_user("bob")
    session = hub.login("bob", password)
    form = session.login_response.text
    assert "Python (standard)" in form and "Team only" not in form
    assert "1 more profile(s) are reserved for groups you are not in" in form

    refused = spawn(hub, session, "team", "tiny", "bob")
    assert refused.status_code == 403
    assert "The profile &#39;Team only&#39; is restricted to the groups team" in refused.text
    assert "you are in no group" in refused.text
    assert hub.server_pid("bob") is None

    # once bob is in the group (and logs in again), the profile is his
    assert hub.users("set", "bob", "--group", "team").returncode == 0
    session = hub.login("bob", password)
    assert "Team only" in session.login_response.text
    accepted = spawn(hub, session, "team", "tiny", "bob")
    assert "/hub/spawn-pending/bob" in accepted.url
    hub.wait_ready(session, "bob")
    env = hub.server_env("bob")
    assert env["MLHUB_PROFILE"] == "team" and env["TEAM_SECRET"] == "42"
    assert env["MEM_LIMIT"] == str(1024**3)
    assert hub.stop() == 0


def test_ctrl_c_stops_everything_and_restart_keeps_state(hub):
    hub.start()
    password = hub.add_user("carol", "team")
    session = hub.login("carol", password)
    spawn(hub, session, "python", "small", "carol")
    hub.wait_ready(session, "carol")
    group = memory_cgroup(hub.server_pid("carol"))
    token = hub.server_env("carol")["JUPYTERHUB_API_TOKEN"]
    auth = {"Authorization": f"token {token}"}
    kernel = requests.post(hub.url + "user/carol/api/kernels", headers=auth, json={}, timeout=60)
    assert kernel.status_code == 201
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (hub.workspace("carol") / "model.ipynb").write_text(json.dumps(notebook))
    wait_for(
        lambda: any("ipykernel" in cmd for cmd in hub.remember().values()), "the kernel process"
    )
    kinds = {
        kind
        for cmd in hub.seen.values()
        for kind in ("jupyterhub -f", "configurable-http-proxy", "mlhub.publisher", "singleuser")
        if kind in cmd
    }
    assert kinds == {"jupyterhub -f", "configurable-http-proxy", "mlhub.publisher", "singleuser"}

    assert hub.stop(signal.SIGINT) == 0
    assert "mlhub: stopped." in hub.output
    assert hub.alive() == {}, "processes left after Ctrl-C"
    strays = [cmd for _, cmd in process_table().values() if str(hub.data_dir) in cmd]
    assert strays == []
    # carol's cgroup is removed (the one her server ran in, not any "carol" of another hub
    # on this machine)
    assert group is None or not group.exists()

    # restart: same users, same workspace, no new admin password
    banner = hub.start()
    assert f"password:     in {hub.data_dir / 'admin_password'}" in banner
    session = hub.login("carol", password)
    assert session.login_response.url == hub.url + "hub/spawn"
    spawn(hub, session, "python", "small", "carol")
    hub.wait_ready(session, "carol")
    token = hub.server_env("carol")["JUPYTERHUB_API_TOKEN"]
    kept = requests.get(
        hub.url + "user/carol/api/contents/model.ipynb",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert kept.status_code == 200 and kept.json()["content"] == notebook
    assert hub.admin_password() and hub.login("admin", hub.admin_password()).login_response.ok
    assert hub.stop(signal.SIGTERM) == 0
    assert hub.alive() == {}


def test_second_up_on_the_same_data_dir_is_refused(hub):
    hub.start()
    second = subprocess.run(
        [MLHUB, "up", "--data-dir", str(hub.data_dir), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLHUB_CONFIG_FILE": str(hub.config_file)},
    )
    assert second.returncode == 2
    assert f"another 'mlhub up' (pid {hub.proc.pid}) is using {hub.data_dir}" in second.stderr
    assert hub.stop() == 0


def test_second_ctrl_c_kills_everything_at_once(hub):
    hub.start()
    session = hub.login("admin", hub.admin_password())
    spawn(hub, session, "python", "small", "admin")
    hub.wait_ready(session, "admin")
    hub.remember()
    hub.proc.send_signal(signal.SIGINT)
    hub.proc.send_signal(signal.SIGINT)
    assert hub.proc.wait(timeout=180) == 0
    assert hub.alive() == {}
    # and the next start cleans up after the hard stop
    hub.start()
    session = hub.login("admin", hub.admin_password())
    assert session.login_response.url == hub.url + "hub/spawn"
    assert hub.stop(signal.SIGHUP) == 0
    assert hub.alive() == {}
