"""mlhub settings: defaults, the config file, MLHUB_* variables on top."""

import pytest

from mlhub.errors import MlhubError
from mlhub.profiles import PROFILES_DIR
from mlhub.settings import MlhubSettings, load_settings


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.data_dir == str(tmp_path / "mlhub-data")
    assert (s.mode, s.ip, s.port, s.hub_port) == ("embedded", "127.0.0.1", 8000, 8081)
    assert (s.proxy_api_port, s.publisher_port) == (8001, 8090)
    assert s.public_url == "http://127.0.0.1:8000/"
    assert s.publisher_url == "http://127.0.0.1:8000/services/mlhub-publisher/"
    assert s.proxy_api_url == "http://127.0.0.1:8001"
    assert s.profiles_dir == str(PROFILES_DIR)
    assert s.admin_user == "admin"
    assert s.config_file == ""
    assert s.path("workspaces", "alice") == str(tmp_path / "mlhub-data" / "workspaces" / "alice")


def test_every_setting_is_documented():
    for name, trait in MlhubSettings.class_traits(config=True).items():
        assert "Default" in trait.help, name


def test_config_file_then_environment(tmp_path):
    config = tmp_path / "mlhub_config.py"
    config.write_text(
        "c.MlhubSettings.port = 9000\n"
        "c.MlhubSettings.hub_port = 9081\n"
        "c.MlhubSettings.data_dir = '/srv/mlhub'\n"
        "c.JupyterHub.authenticator_class = 'ldapauthenticator.LDAPAuthenticator'\n"
    )
    env = {"MLHUB_CONFIG_FILE": str(config), "MLHUB_PORT": "9100", "MLHUB_MODE": "kubernetes"}
    s = load_settings(env)
    assert s.config_file == str(config)
    assert s.port == 9100  # environment wins over the file
    assert s.hub_port == 9081
    assert s.data_dir == "/srv/mlhub"
    assert s.mode == "kubernetes"
    assert s.public_url == "http://127.0.0.1:9100/"


def test_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({"MLHUB_DATA_DIR": "state"}).data_dir == str(tmp_path / "state")


def test_public_url(tmp_path):
    assert load_settings({"MLHUB_IP": "0.0.0.0"}).public_url == "http://127.0.0.1:8000/"
    s = load_settings({"MLHUB_PUBLIC_URL": "https://mlhub.example.org"})
    assert s.public_url == "https://mlhub.example.org/"
    assert s.publisher_url == "https://mlhub.example.org/services/mlhub-publisher/"


def test_bad_values_are_refused(tmp_path):
    with pytest.raises(Exception, match="mode"):
        load_settings({"MLHUB_MODE": "cloud"})
    with pytest.raises(MlhubError, match="mlhub config file not found"):
        load_settings({"MLHUB_CONFIG_FILE": str(tmp_path / "missing.py")})
    broken = tmp_path / "broken.py"
    broken.write_text("c.MlhubSettings.port = \n")
    with pytest.raises(
        MlhubError, match=f"cannot read the mlhub config file {broken}: SyntaxError"
    ):
        load_settings({"MLHUB_CONFIG_FILE": str(broken)})


def test_a_variable_that_does_not_fit_is_named_and_service_links_are_not_settings():
    with pytest.raises(MlhubError, match="MLHUB_PORT='eight' is not a valid MlhubSettings.port"):
        load_settings({"MLHUB_PORT": "eight"})
    # what Kubernetes puts in every pod of a namespace holding the Service mlhub-publisher
    settings = load_settings({"MLHUB_PUBLISHER_PORT": "tcp://10.96.65.5:8090"})
    assert settings.publisher_port == 8090


def test_user_mode_and_workspaces(tmp_path):
    s = load_settings({"MLHUB_DATA_DIR": str(tmp_path), "MLHUB_USER_MODE": "single"})
    assert not s.multi_user and s.system_users() is None
    assert s.workspace("alice") == str(tmp_path / "workspaces" / "alice")
    assert s.workspace("ada@example.org").startswith(str(tmp_path / "workspaces" / "ada@"))
    kube = load_settings({"MLHUB_MODE": "kubernetes", "MLHUB_USER_MODE": "multi"})
    assert not kube.multi_user  # pods isolate users there: no system accounts
    with pytest.raises(Exception, match="system_user_prefix"):
        load_settings({"MLHUB_SYSTEM_USER_PREFIX": "Bad_"})


def test_internal_ports_follow_the_public_one_so_two_instances_fit():
    s = load_settings({"MLHUB_PORT": "9000"})
    assert (s.hub_port, s.proxy_api_port, s.publisher_port) == (9081, 9001, 9090)
    assert s.proxy_api_url == "http://127.0.0.1:9001"
    s = load_settings({"MLHUB_PORT": "9000", "MLHUB_HUB_PORT": "7000"})
    assert (s.hub_port, s.proxy_api_port) == (7000, 9001)  # one set explicitly stays
