"""Every command finds the instance it means: two real ``mlhub up`` side by side on one machine
(only their public ports given: the internal ones follow), ``mlhub users`` and ``mlhub models``
run from another folder with no ``--data-dir`` or ``MLHUB_URL``, and ``mlhub login`` instead of
the ``/hub/token`` page."""

import json
import os
import subprocess

import pytest
from support.embedded_hub import MLHUB, EmbeddedHub, free_port

pytestmark = [pytest.mark.component, pytest.mark.slow]


class PortOnlyHub(EmbeddedHub):
    """A hub given only its public port, as a user starts a second one (``--port``); it
    records itself in ``runtime``, the registry a user's commands read."""

    def __init__(self, dir, runtime, prefix):
        super().__init__(dir)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        self.publisher_url = f"{self.url}services/mlhub-publisher/"
        self.port, self.hub_port, self.proxy_api_port, self.publisher_port = (
            port,
            port + 81,
            port + 1,
            port + 90,
        )
        # as root, each instance's users get system accounts of their own (README)
        self.config_file.write_text(
            f"c.MlhubSettings.port = {port}\nc.MlhubSettings.system_user_prefix = {prefix!r}\n"
        )
        self.runtime = runtime

    def command(self, *args):
        cmd = [MLHUB, *args, "--data-dir", str(self.data_dir), "--config", str(self.config_file)]
        return ["env", f"XDG_RUNTIME_DIR={self.runtime}", *cmd]


def user_command(args, cwd, runtime, home, stdin=None):
    """``mlhub ARGS`` as a user types it: in another folder, no --data-dir, no MLHUB_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLHUB_", "JUPYTERHUB_"))}
    env.update(XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(home))
    return subprocess.run(
        [MLHUB, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    shared = tmp_path_factory.mktemp("run")
    hubs = [
        PortOnlyHub(tmp_path_factory.mktemp(name), shared, prefix)
        for name, prefix in (("first", "mlhuba-"), ("second", "mlhubb-"))
    ]
    try:
        for hub in hubs:
            hub.start()
        yield hubs, shared
        for hub in hubs:
            hub.stop()
    finally:
        for hub in hubs:
            hub.kill()


def test_two_instances_run_side_by_side_and_commands_find_theirs(two, tmp_path):
    (first, second), shared = two
    for hub in (first, second):
        recorded = json.loads((hub.data_dir / "instance.json").read_text())
        assert recorded["url"] == hub.url and recorded["hub_port"] == hub.port + 81
        assert hub.publisher_up()

    # Both run for this account: a command must be told which, and says how.
    both = user_command(["users", "add", "ada"], tmp_path, shared, tmp_path)
    assert both.returncode == 1 and "several mlhub instances run here" in both.stderr
    assert first.url in both.stderr and second.url in both.stderr
    assert "--data-dir" in both.stderr
    assert not (tmp_path / "mlhub-data").exists()  # never a new data folder

    # With one registered (the second's record copied away), it is found from any folder.
    alone = tmp_path / "alone"
    (alone / "mlhub" / "instances").mkdir(parents=True)
    for path in (shared / "mlhub" / "instances").glob("*.json"):
        if json.loads(path.read_text())["url"] == first.url:
            (alone / "mlhub" / "instances" / path.name).write_text(path.read_text())
    added = user_command(["users", "add", "ada"], tmp_path, alone, tmp_path)
    assert added.returncode == 0, added.stderr
    password = added.stdout.split("password: ")[1].strip()

    # mlhub login: a token without the /hub/token page, kept for mlhub models.
    no_token = user_command(["models", "list"], tmp_path, alone, tmp_path)
    assert no_token.returncode == 1 and "mlhub login" in no_token.stderr
    login = user_command(
        ["login", "--user", "ada", "--password-stdin"], tmp_path, alone, tmp_path, password
    )
    assert login.returncode == 0, login.stderr
    assert f"logged in to {first.url} as ada" in login.stdout
    tokens = tmp_path / "mlhub" / "tokens.json"
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"
    listed = user_command(["models", "list"], tmp_path, alone, tmp_path)
    assert listed.returncode == 0, listed.stderr
    wrong = user_command(
        ["login", "--user", "ada", "--password-stdin"], tmp_path, alone, tmp_path, "nope\n"
    )
    assert wrong.returncode == 1 and "wrong name or password" in wrong.stderr


def test_no_instance_is_said_not_guessed(tmp_path):
    empty = tmp_path / "run"
    result = user_command(["users", "add", "ada"], tmp_path, empty, tmp_path)
    assert result.returncode == 1
    assert "there is no mlhub data folder here" in result.stderr
    assert "no 'mlhub up' runs for this account" in result.stderr
    assert not (tmp_path / "mlhub-data").exists()
