"""The mlhub command line: users, the models command's registration, and up's preparations."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from mlhub import cli, instances, up
from mlhub.accounts import AccountStore
from mlhub.publisher.client import PublisherClient
from mlhub.settings import load_settings


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    # cli sets MLHUB_* variables for its child processes; keep them inside this test
    for name in ("MLHUB_DATA_DIR", "MLHUB_CONFIG_FILE", "MLHUB_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    # one OS account for everyone (as on a laptop): these tests make no system accounts; the
    # multi-user mode's are made in tests/component/test_tenant_isolation.py
    monkeypatch.setenv("MLHUB_USER_MODE", "single")
    umask = os.umask(0o022)  # mlhub users sets 077 for itself; keep it to these tests
    # the data folder of an instance (mlhub up makes it; a users command never does)
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # this test's instances only
    yield tmp_path / "data"
    os.umask(umask)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_users_add_list_passwd_set_delete(data_dir, capsys):
    d = ["--data-dir", str(data_dir)]
    code, out, _ = run(capsys, "users", *d, "add", "alice", "--group", "r-users")
    assert code == 0 and "created account 'alice' in groups r-users" in out
    password = out.split("password: ")[1].strip()
    store = AccountStore(data_dir / "accounts.sqlite")
    assert store.authenticate("alice", password)

    code, out, _ = run(capsys, "users", *d, "list")
    assert out.splitlines() == ["NAME   ADMIN  GROUPS", "alice  no     r-users"]

    code, out, _ = run(capsys, "users", *d, "passwd", "alice")
    new_password = out.split("password: ")[1].strip()
    assert store.authenticate("alice", new_password) and not store.authenticate("alice", password)

    code, out, _ = run(
        capsys, "users", *d, "set", "alice", "--admin", "--group", "a", "--group", "b"
    )
    assert out.strip() == "'alice': admin yes, groups a, b"
    code, out, _ = run(capsys, "users", *d, "set", "alice", "--no-groups")
    assert out.strip() == "'alice': admin yes, groups none"

    code, out, _ = run(capsys, "users", *d, "delete", "alice")
    assert code == 0 and store.get("alice") is None
    code, _, err = run(capsys, "users", *d, "delete", "alice")
    assert code == 1 and "No account named 'alice'" in err


def test_users_password_from_stdin(data_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("chosen-password\n"))
    code, out, _ = run(
        capsys, "users", "--data-dir", str(data_dir), "add", "bob", "--password-stdin"
    )
    assert code == 0 and "password:" not in out
    assert AccountStore(data_dir / "accounts.sqlite").authenticate("bob", "chosen-password")


def test_users_errors_are_one_line(data_dir, capsys):
    code, _, err = run(capsys, "users", "--data-dir", str(data_dir), "add", "Bad Name")
    assert code == 1 and err.startswith("mlhub: error: Invalid user name 'Bad Name'")


def test_admin_password_file_follows_passwd(data_dir, capsys):
    settings = load_settings({"MLHUB_DATA_DIR": str(data_dir), "MLHUB_USER_MODE": "single"})
    first = up.prepare(settings)
    assert (data_dir / "admin_password").read_text().strip() == first
    _, out, _ = run(capsys, "users", "--data-dir", str(data_dir), "passwd", "admin")
    second = out.split("password: ")[1].strip()
    assert (data_dir / "admin_password").read_text().strip() == second


def test_models_command_is_registered():
    parser, run_models = cli.build_parser()
    assert "models" in parser.format_help()
    assert run_models.__module__ == "mlhub.cli_models"


def test_missing_models_module_gets_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlhub.cli_models", None)  # import now fails
    code, _, err = run(capsys, "models", "list")
    assert code == 1
    assert "'mlhub models' is not available (ModuleNotFoundError: " in err


def test_prepare_creates_layout_secrets_and_admin_once(tmp_path):
    settings = load_settings(
        {"MLHUB_DATA_DIR": str(tmp_path / "data"), "MLHUB_USER_MODE": "single"}
    )
    password = up.prepare(settings)
    assert password
    for name in ("proxy_token", "admin_password", "accounts.sqlite"):
        assert stat.S_IMODE(os.stat(settings.path(name)).st_mode) == 0o600, name
    assert os.path.isdir(settings.path("workspaces")) and os.path.isdir(settings.path("logs"))
    token = up.ensure_secret(settings.path("proxy_token"))
    assert len(token) == 64
    assert up.prepare(settings) is None  # the second start keeps the account and the token
    assert up.ensure_secret(settings.path("proxy_token")) == token


def test_check_ports_names_the_setting(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = load_settings({"MLHUB_HUB_PORT": str(port)})
        settings.port = settings.proxy_api_port = settings.publisher_port = 0
        with pytest.raises(Exception) as e:
            up.check_ports(settings)
    assert f"127.0.0.1:{port} is not free" in e.value.message
    assert "MlhubSettings.hub_port" in e.value.message


def test_descendants_sees_the_whole_tree():
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(200):
            found = up.descendants(os.getpid())
            if any(cmd.startswith("sleep 60") for cmd in found.values()):
                break
            time.sleep(0.05)
        assert child.pid in found
        assert any(cmd.startswith("sleep 60") for cmd in found.values())
    finally:
        for pid in up.descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()


def test_banner_names_another_authenticator(tmp_path):
    config = tmp_path / "mlhub_config.py"
    config.write_text("c.JupyterHub.authenticator_class = 'ldapauthenticator.LDAPAuthenticator'\n")
    settings = load_settings({"MLHUB_CONFIG_FILE": str(config), "MLHUB_DATA_DIR": str(tmp_path)})
    assert up._login_lines(settings, None) == [
        "  log in with:  ldapauthenticator.LDAPAuthenticator"
    ]


def test_users_never_makes_a_data_folder_and_finds_the_running_one(data_dir, capsys, tmp_path):
    """Run from another folder, the banner's `mlhub users add` made a new ./mlhub-data and
    exited 0: now it uses the instance mlhub up runs, or says there is none."""
    os.chdir(tmp_path)  # no ./mlhub-data here
    code, _, err = run(capsys, "users", "add", "ada")
    assert code == 1 and "there is no mlhub data folder here" in err
    assert "no 'mlhub up' runs for this account" in err and "--data-dir" in err
    assert not (tmp_path / "mlhub-data").exists()
    # a folder named on purpose is made (accounts set up before the first mlhub up)
    code, _, _ = run(capsys, "users", "--data-dir", str(tmp_path / "new"), "add", "eve")
    assert code == 0 and (tmp_path / "new" / "accounts.sqlite").exists()
    os.environ.pop("MLHUB_DATA_DIR")  # what --data-dir set for its own (child) processes

    # an instance this account runs (this test process stands for its `mlhub up`)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mlhub", "up"])
    try:
        settings = load_settings({"MLHUB_DATA_DIR": str(data_dir), "MLHUB_PORT": "9000"})
        forget = instances.record(settings, pid=running.pid)
        assert json.loads((data_dir / "instance.json").read_text())["hub_port"] == 9081
        code, out, _ = run(capsys, "users", "add", "ada")
        assert code == 0 and "created account 'ada'" in out
        assert [a.name for a in AccountStore(str(data_dir / "accounts.sqlite")).list()] == ["ada"]
        os.environ.pop("MLHUB_DATA_DIR")
        assert PublisherClient().url == "http://127.0.0.1:9000/"  # mlhub models finds it too
        forget()
        assert instances.running() == []
    finally:
        running.kill()
        running.wait()


def test_an_account_without_a_home_finds_no_instance_and_keeps_the_defaults(monkeypatch):
    """A pod's random uid has no home: mlhub models must still work with MLHUB_URL's default."""

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("MLHUB_URL", raising=False)
    monkeypatch.setattr(instances.Path, "home", staticmethod(no_home))
    assert instances.registry_dir() is None and instances.running() == []
    assert PublisherClient(token="t").url == "http://127.0.0.1:8000/"
