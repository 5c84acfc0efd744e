"""Which rights users' code runs with, as the hub's operator meets it (``MlhubSettings.user_mode``).

- Single-user mode: ``mlhub up`` run by an ordinary account (a laptop). It works for one person
  exactly as before and says so; a second account is refused with a message that says how to
  run a team, unless ``shared_single_user`` is set, which warns at every start.
- Multi-user mode needs root, and an ordinary account cannot manage a root-owned data directory.
- A data directory of single-user mode (or an earlier mlhub, whose files were 0644/0755 and
  protected only by a 0700 data directory) is taken over by the first multi-user start: every
  workspace handed to its user, nothing lost, nothing readable by another account.
"""

import fcntl
import json
import os
import pwd
import stat
import subprocess
import sys

import pytest
import requests
from support.embedded_hub import (
    PUBLISHER_CONFIG,
    EmbeddedHub,
    remove_stale_accounts,
    uid_of,
    wait_for,
)
from support.kernel_channel import execute, start_kernel
from support.publishing import constant_bundle, model_pids, predict

from mlhub.publisher.client import PublisherClient

pytestmark = [pytest.mark.component, pytest.mark.slow]

LAPTOP_USER = "mlhubtest-ada"  # an ordinary account, made and removed by the fixture


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def laptop_user():
    subprocess.run(["useradd", "--no-create-home", LAPTOP_USER], check=True)
    try:
        yield pwd.getpwnam(LAPTOP_USER)
    finally:
        subprocess.run(["userdel", LAPTOP_USER], check=False)


@pytest.fixture
def laptop(tmp_path, laptop_user):
    """A hub run by an ordinary account, in a folder of its own."""
    home = tmp_path / "ada"
    home.mkdir()
    os.chown(home, laptop_user.pw_uid, laptop_user.pw_gid)
    hub = EmbeddedHub(home, run_as=LAPTOP_USER)
    yield hub
    hub.kill()


def test_single_user_mode_is_for_one_person_and_says_so(laptop, laptop_user):
    banner = laptop.start()
    assert f"mode:         single-user (everything runs as {LAPTOP_USER}; for one person)" in banner
    assert "WARNING" not in banner
    assert os.stat(laptop.data_dir).st_uid == laptop_user.pw_uid
    assert mode(laptop.data_dir) == 0o700

    refused = laptop.users("add", "bob")
    assert refused.returncode == 1
    assert "a second account is refused" in refused.stderr
    assert "run mlhub as root (multi-user mode" in refused.stderr
    assert "c.MlhubSettings.shared_single_user = True" in refused.stderr
    assert "bob" not in laptop.users("list").stdout

    # it works as before: the one person's server runs as the account that runs mlhub
    session = laptop.login("admin", laptop.admin_password())
    reply = laptop.hub_api(session, "POST", "/users/admin/server", json={"profile": "python"})
    assert reply.status_code in (201, 202), reply.text
    laptop.wait_ready(session, "admin")
    assert uid_of(laptop.server_pid("admin")) == laptop_user.pw_uid
    assert laptop.server_env("admin")["HOME"] == str(laptop.workspace("admin"))
    assert laptop.stop() == 0


def test_shared_single_user_mode_is_allowed_with_a_warning_at_every_start(laptop):
    laptop.config_file.write_text(
        laptop.config_file.read_text() + "c.MlhubSettings.shared_single_user = True\n"
    )
    laptop.start()
    assert laptop.users("add", "bob").returncode == 0
    assert laptop.stop() == 0
    banner = laptop.start()
    assert "WARNING: single-user mode with shared accounts (admin, bob)" in banner
    assert "can read and change each" in banner
    assert laptop.stop() == 0


def test_multi_user_mode_needs_root_and_a_root_data_dir_needs_root(laptop, tmp_path):
    laptop.config_file.write_text(
        laptop.config_file.read_text() + "c.MlhubSettings.user_mode = 'multi'\n"
    )
    refused = subprocess.run(laptop.command("up"), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "user_mode is 'multi' (a system account per user), which needs root" in refused.stderr

    # a multi-user install's data directory (root's) is not an ordinary account's to change
    (tmp_path / "server").mkdir()
    root_owned = EmbeddedHub(tmp_path / "server")
    root_owned.data_dir.mkdir(parents=True)
    root_owned.run_as = LAPTOP_USER
    refused = root_owned.users("add", "eve")
    assert refused.returncode == 1
    assert f"the data directory {root_owned.data_dir} belongs to uid 0" in refused.stderr
    assert "sudo mlhub" in refused.stderr


def test_kubernetes_mode_manages_accounts_on_a_volume_of_the_pods_group(laptop_user, tmp_path):
    """The hub pod's volume belongs to root and to the pod's fsGroup (what provisioners make):
    ``kubectl exec deploy/hub -- mlhub users add`` works there, and a volume the hub's account
    cannot write is refused with what to fix."""
    gid = pwd.getpwnam(LAPTOP_USER).pw_gid
    (tmp_path / "pod").mkdir()
    hub = EmbeddedHub(tmp_path / "pod", config="c.MlhubSettings.mode = 'kubernetes'\n")
    hub.run_as = LAPTOP_USER
    hub.data_dir.mkdir()
    os.chown(hub.data_dir, 0, gid)
    hub.data_dir.chmod(0o2775)  # as the kubelet leaves a volume for fsGroup
    assert hub.users("add", "ada").returncode == 0
    listed = hub.users("list")
    assert listed.returncode == 0 and "ada" in listed.stdout, listed

    hub.data_dir.chmod(0o755)  # a volume without the pod's group
    refused = hub.users("add", "bob")
    assert refused.returncode == 1
    assert f"the data directory {hub.data_dir} is not writable by this account" in refused.stderr
    assert "fsGroup" in refused.stderr


TRY_ALL = """
import json, os, sys
readable = []
for path in json.load(sys.stdin):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").close()
        readable.append(path)
    except OSError:
        pass
print(json.dumps(readable))
"""


def readable_by(user, top, allowed=()):
    """What account ``user`` can list or open of everything below ``top`` (found as root),
    but for the folders ``allowed``."""
    paths = [str(top)]
    for root, dirs, files in os.walk(top):
        paths += [os.path.join(root, name) for name in dirs + files]
    paths = [p for p in paths if not any(p == a or p.startswith(f"{a}/") for a in allowed)]
    assert len(paths) > 20
    gid = pwd.getpwnam(user).pw_gid
    out = subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups"]
        + [sys.executable, "-c", TRY_ALL],
        input=json.dumps(paths),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_a_single_user_data_dir_is_taken_over_by_multi_user_mode(tmp_path, laptop_user):
    """Run as root in single-user mode (everything root's, as every mlhub before multi-user
    mode), with an earlier version's modes (0644 files, 0755 folders); then start again in
    multi-user mode."""
    single = "c.MlhubSettings.user_mode = 'single'\nc.MlhubSettings.shared_single_user = True\n"
    hub = EmbeddedHub(tmp_path, config=PUBLISHER_CONFIG + single)
    try:
        assert "single-user" in hub.start()
        password = hub.add_user("alice")
        token = hub.token("alice", password)
        session = hub.login("alice", password)
        hub.hub_api(session, "POST", "/users/alice/server", json={"profile": "python"})
        hub.wait_ready(session, "alice")
        server = f"{hub.url}user/alice"
        kernel = start_kernel(server, token)
        execute(server, kernel, "open('results.csv', 'w').write('a,b\\n1,2\\n')", token)
        client = PublisherClient(url=hub.url, token=token, poll_interval=0.2)
        client.publish(constant_bundle(tmp_path / "bundle", 3.0), "churn")
        key = client.create_key("churn")["key"]
        assert hub.stop() == 0
        workspace = hub.workspace("alice")
        assert os.stat(workspace / "results.csv").st_uid == 0
        subprocess.run(["chmod", "-R", "go+rX", str(hub.data_dir)], check=True)
        hub.data_dir.chmod(0o700)  # all that protected an earlier version's data

        hub.config_file.write_text(hub.config_file.read_text().replace(single, ""))
        banner = hub.start()
        assert "mode:         multi-user" in banner
        alice = pwd.getpwnam("mlhub-alice")
        # her workspace is hers, whole, with nothing lost
        for path in (workspace, workspace / "results.csv"):
            assert (os.stat(path).st_uid, os.stat(path).st_gid) == (alice.pw_uid, alice.pw_gid)
        assert mode(workspace) == 0o700
        assert (workspace / "results.csv").read_text() == "a,b\n1,2\n"
        # her model serves again, as her, with the key she had
        wait_for(lambda: predict(hub, "alice", "churn", key).status_code == 200, "her model")
        assert predict(hub, "alice", "churn", key).json() == {"predictions": [3.0]}
        assert {uid_of(pid) for pid in model_pids(hub, "alice", "churn")} == {alice.pw_uid}
        # the platform's files are root's alone; another account finds nothing at all
        for name in ("admin_password", "proxy_token", "accounts.sqlite", "jupyterhub.sqlite"):
            assert mode(hub.data_dir / name) == 0o600, name
        assert mode(hub.data_dir) == 0o711
        assert readable_by(LAPTOP_USER, hub.data_dir, [str(hub.data_dir / "R-library")]) == []
        # and alice's account reaches her workspace; her server starts there
        session = hub.login("alice", password)
        hub.hub_api(session, "POST", "/users/alice/server", json={"profile": "python"})
        hub.wait_ready(session, "alice")
        assert uid_of(hub.server_pid("alice")) == alice.pw_uid
        listing = requests.get(
            f"{server}/api/contents/", headers={"Authorization": f"token {token}"}, timeout=30
        ).json()
        assert "results.csv" in {item["name"] for item in listing["content"]}
        assert hub.stop() == 0
    finally:
        hub.kill()


def shadow_expiry(name):
    """The account-expiry field of ``name`` in /etc/shadow ("" when it never expires)."""
    with open("/etc/shadow") as f:
        return next(line for line in f if line.startswith(f"{name}:")).split(":")[7]


def test_deleting_an_account_locks_its_system_account_and_keeps_the_workspace(tmp_path):
    hub = EmbeddedHub(tmp_path)  # mlhub users works on the data directory; no hub needed
    try:
        added = subprocess.run(
            hub.command("users", "add", "dora"), capture_output=True, text=True, check=True
        )
        dora = pwd.getpwnam("mlhub-dora")
        assert f"system account 'mlhub-dora' (uid {dora.pw_uid})" in added.stdout
        workspace = hub.workspace("dora")
        (workspace / "thesis.tex").write_text("chapter 1")

        deleted = hub.users("delete", "dora")
        assert deleted.returncode == 0
        assert "system account 'mlhub-dora' locked" in deleted.stdout
        assert f"workspace kept in {workspace}" in deleted.stdout
        assert shadow_expiry("mlhub-dora") == "1"  # expired: no login, su included
        assert (workspace / "thesis.tex").read_text() == "chapter 1"

        # added again: the same account, unlocked, with her workspace as it was
        hub.add_user("dora")
        assert pwd.getpwnam("mlhub-dora").pw_uid == dora.pw_uid
        assert shadow_expiry("mlhub-dora") == ""
        assert (workspace / "thesis.tex").read_text() == "chapter 1"

        removed = hub.users("delete", "dora", "--remove-workspace")
        assert removed.returncode == 0 and "and its workspace" in removed.stdout
        assert not workspace.exists()
        with pytest.raises(KeyError):
            pwd.getpwnam("mlhub-dora")
    finally:
        hub.kill()


def test_accounts_a_killed_earlier_run_left_do_not_stop_this_runs_hubs(tmp_path_factory):
    """The test suite's own hygiene (it failed a CI run once): an earlier pytest run killed before
    its hubs' teardown leaves ``mlhub-<name>`` accounts homed in its folder, which every hub of
    this run would refuse as another mlhub's. They are removed when a hub starts, unless that
    earlier hub still runs (holds its ``mlhub-up.lock``)."""
    earlier = tmp_path_factory.getbasetemp().parent / "pytest-stale-test"
    ours = tmp_path_factory.mktemp("hub") / "data"
    made = {}
    for name in ("gone", "live"):
        data = earlier / name / "data"
        (data / "workspaces").mkdir(parents=True, exist_ok=True)
        home = data / "workspaces" / name
        account = f"mlhubtest-{name}"
        subprocess.run(["useradd", "-c", f"mlhub {name}", "-d", str(home), account], check=True)
        made[name] = (account, data)
    lock = open(made["live"][1] / "mlhub-up.lock", "a+")  # noqa: SIM115 (a running hub's lock)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        remove_stale_accounts(ours)
        names = {entry.pw_name for entry in pwd.getpwall()}
        assert made["gone"][0] not in names
        assert made["live"][0] in names
    finally:
        lock.close()
        for account, _ in made.values():
            subprocess.run(["userdel", account], capture_output=True, check=False)
