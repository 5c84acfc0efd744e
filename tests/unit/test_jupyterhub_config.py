"""The JupyterHub config file, loaded as JupyterHub loads it, with settings from a temp data dir."""

import os
import stat
import sys
from pathlib import Path

import pytest
from traitlets.config import PyFileConfigLoader

import mlhub
from mlhub.authenticator import MlhubAuthenticator
from mlhub.profiles import ProfileError

CONFIG = Path(mlhub.__file__).parent / "jupyterhub_config.py"


def load(monkeypatch, tmp_path, config_text=None, **env):
    monkeypatch.setenv("MLHUB_DATA_DIR", str(tmp_path / "data"))
    if config_text is not None:
        config_file = tmp_path / "mlhub_config.py"
        config_file.write_text(config_text)
        monkeypatch.setenv("MLHUB_CONFIG_FILE", str(config_file))
    else:
        monkeypatch.delenv("MLHUB_CONFIG_FILE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "data").mkdir(exist_ok=True)
    return PyFileConfigLoader(CONFIG.name, str(CONFIG.parent)).load_config()


def test_embedded_defaults(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path)
    data = tmp_path / "data"
    assert (c.JupyterHub.ip, c.JupyterHub.port) == ("127.0.0.1", 8000)
    assert (c.JupyterHub.hub_ip, c.JupyterHub.hub_port) == ("127.0.0.1", 8081)
    assert c.JupyterHub.db_url == f"sqlite:///{data}/jupyterhub.sqlite"
    assert c.JupyterHub.cookie_secret_file == str(data / "jupyterhub_cookie_secret")
    modules = Path(sys.prefix, "share", "mlhub", "proxy", "node_modules")  # make install's
    assert c.ConfigurableHTTPProxy.command == [
        "env",
        "MLHUB_PROXY_HEADERS_TIMEOUT_MS=20000",  # MlhubSettings.proxy_headers_timeout
        "MLHUB_PROXY_REQUEST_TIMEOUT_MS=300000",  # MlhubSettings.proxy_request_timeout
        "MLHUB_PROXY_TIMEOUT_CHECK_MS=5000",
        str(modules / ".bin" / "node"),
        "--require",
        str(Path(mlhub.__file__).with_name("proxy_timeouts.js")),
        str(modules / "configurable-http-proxy" / "bin" / "configurable-http-proxy"),
        "--proxy-timeout=900000",  # MlhubSettings.proxy_timeout, in ms
    ]
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8001"
    token_file = data / "proxy_token"
    assert c.ConfigurableHTTPProxy.auth_token == token_file.read_text().strip()
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert c.JupyterHub.authenticator_class is MlhubAuthenticator
    assert c.Authenticator.allow_all is True
    assert c.JupyterHub.spawner_class == "mlhub.spawner.ProfileLocalSpawner"
    [publisher] = c.JupyterHub.services
    assert publisher["name"] == "mlhub-publisher"
    assert publisher["url"] == "http://127.0.0.1:8090"
    assert publisher["command"] == [sys.executable, "-m", "mlhub.publisher"]
    assert publisher["oauth_no_confirm"] is True
    assert publisher["environment"] == {
        "MLHUB_DATA_DIR": str(data),
        "CONFIGPROXY_AUTH_TOKEN": c.ConfigurableHTTPProxy.auth_token,
        "MLHUB_PROXY_API_URL": "http://127.0.0.1:8001",
        "MLHUB_PUBLIC_URL": "http://127.0.0.1:8000/",
    }


def test_scopes_and_roles(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path)
    assert set(c.JupyterHub.custom_scopes) == {"custom:mlhub:models", "custom:mlhub:admin"}
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert roles["user"]["scopes"] == ["self", "access:services", "custom:mlhub:models"]
    assert {
        "users:activity!user",
        "access:servers!server",
        "access:services!service=mlhub-publisher",
        "custom:mlhub:models",
    } == set(roles["server"]["scopes"])
    assert roles["mlhub-admin"] == {
        "name": "mlhub-admin",
        "scopes": ["custom:mlhub:admin"],
        "groups": ["mlhub-admins"],
    }
    assert roles["mlhub-publisher"]["services"] == ["mlhub-publisher"]


def test_mlhub_config_file_sets_ports_and_overrides_jupyterhub(monkeypatch, tmp_path):
    c = load(
        monkeypatch,
        tmp_path,
        "c.MlhubSettings.port = 9000\n"
        "c.MlhubSettings.publisher_port = 9090\n"
        "c.JupyterHub.authenticator_class = 'ldapauthenticator.LDAPAuthenticator'\n"
        "c.Spawner.start_timeout = 300\n",
    )
    assert c.JupyterHub.port == 9000
    assert c.JupyterHub.services[0]["url"] == "http://127.0.0.1:9090"
    assert c.JupyterHub.services[0]["environment"]["MLHUB_CONFIG_FILE"] == str(
        tmp_path / "mlhub_config.py"
    )
    assert c.JupyterHub.authenticator_class == "ldapauthenticator.LDAPAuthenticator"
    assert c.Spawner.start_timeout == 300


def test_kubernetes_mode_spawns_profile_pods_with_workspaces(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, MLHUB_MODE="kubernetes")
    assert c.JupyterHub.spawner_class == "mlhub.kube_spawner.ProfileKubeSpawner"
    assert c.KubeSpawner.pvc_name_template == "mlhub-workspace-{username}"
    assert c.KubeSpawner.storage_pvc_ensure is True
    assert (c.KubeSpawner.uid, c.KubeSpawner.fs_gid) == (1000, 100)
    assert c.KubeSpawner.events_enabled is True
    assert (c.KubeSpawner.start_timeout, c.KubeSpawner.http_timeout) == (300, 120)
    # pods call the publisher directly, at the internal address (not through the proxy)
    assert c.KubeSpawner.environment == {
        "MLHUB_PUBLISHER_URL": "http://127.0.0.1:8090/services/mlhub-publisher/",
        "MLHUB_PUBLIC_URL": "http://127.0.0.1:8000/",
    }
    c = load(monkeypatch, tmp_path, "c.MlhubSettings.internal_ip = '172.17.0.1'\n")
    assert c.JupyterHub.hub_ip == "172.17.0.1"
    assert c.KubeSpawner.environment["MLHUB_PUBLISHER_URL"] == (
        "http://172.17.0.1:8090/services/mlhub-publisher/"
    )


def test_kubernetes_mode_culls_idle_servers_but_cannot_reach_the_publisher(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, MLHUB_MODE="kubernetes")
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"mlhub-publisher", "idle-culler"}
    assert services["idle-culler"]["command"] == [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        "--timeout=3600",
        "--cull-every=360",
        "--concurrency=5",
    ]
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    culler = roles["idle-culler"]
    assert culler == {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
    # the only roles naming the publisher's scopes or service are users', servers' and its own
    for role in roles.values():
        if any("mlhub" in scope for scope in role["scopes"]):
            assert role["name"] in {"user", "server", "mlhub-admin", "mlhub-publisher"}


def test_culling_is_a_setting_and_off_in_embedded_mode(monkeypatch, tmp_path):
    c = load(monkeypatch, tmp_path, "c.IdleCuller.timeout = 0\n", MLHUB_MODE="kubernetes")
    assert [s["name"] for s in c.JupyterHub.services] == ["mlhub-publisher"]
    c = load(monkeypatch, tmp_path, "c.IdleCuller.timeout = 600\n", MLHUB_MODE="kubernetes")
    assert "--timeout=600" in c.JupyterHub.services[1]["command"]
    assert "--cull-every=60" in c.JupyterHub.services[1]["command"]
    monkeypatch.delenv("MLHUB_MODE")
    c = load(monkeypatch, tmp_path)
    assert [s["name"] for s in c.JupyterHub.services] == ["mlhub-publisher"]
    assert "idle-culler" not in {role["name"] for role in c.JupyterHub.load_roles}


def test_broken_profile_stops_the_hub(monkeypatch, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "bad.yaml").write_text("slug: bad\n")
    with pytest.raises(ProfileError, match="bad.yaml: \\$: 'display_name' is a required"):
        load(monkeypatch, tmp_path, MLHUB_PROFILES_DIR=str(profiles))
