"""The JupyterHub values the chart passes to the official chart mirror
hub/mlhub/jupyterhub_config.py in kubernetes mode: the same spawner and its settings, scopes,
roles, publisher service and culling. The config file is loaded as JupyterHub loads it; the
values as Helm reads them."""

from pathlib import Path

import pytest
import yaml
from support.helmtool import CHART
from traitlets.config import PyFileConfigLoader

import mlhub
from mlhub.kube_mode import CULLER_SCOPES, IdleCuller, kubespawner_defaults

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
JUPYTERHUB = VALUES["jupyterhub"]
HUB = JUPYTERHUB["hub"]
PUBLISHER_URL = "http://mlhub-publisher:8090/services/mlhub-publisher/"


@pytest.fixture
def kube_config(monkeypatch, tmp_path):
    """hub/mlhub/jupyterhub_config.py as the hub loads it in kubernetes mode."""
    monkeypatch.delenv("MLHUB_CONFIG_FILE", raising=False)
    monkeypatch.setenv("MLHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLHUB_MODE", "kubernetes")
    config = Path(mlhub.__file__).parent / "jupyterhub_config.py"
    return PyFileConfigLoader(config.name, str(config.parent)).load_config()


def normalised(role):
    """A role with its lists sorted (order means nothing in a role) and without its name."""
    return {k: sorted(v) if isinstance(v, list) else v for k, v in role.items() if k != "name"}


def test_spawner_and_its_settings(kube_config):
    assert HUB["config"]["JupyterHub"]["spawner_class"] == kube_config.JupyterHub.spawner_class
    assert HUB["config"]["KubeSpawner"] == kubespawner_defaults(PUBLISHER_URL, None) | {
        "environment": {"MLHUB_PUBLISHER_URL": PUBLISHER_URL}
    }
    # the public URL is the one setting only known at install time: the hub reads it from
    # the chart's ConfigMap and the chart's extraConfig hands it to user pods
    assert HUB["extraEnv"]["MLHUB_PUBLIC_URL"]["valueFrom"]["configMapKeyRef"] == {
        "name": "mlhub-settings",
        "key": "public-url",
    }
    assert 'c.KubeSpawner.environment["MLHUB_PUBLIC_URL"]' in HUB["extraConfig"]["mlhub"]
    assert HUB["extraEnv"]["MLHUB_MODE"] == "kubernetes"


def test_extra_config_is_python_that_sets_the_public_url_and_profiles(monkeypatch, tmp_path):
    from traitlets.config import Config

    monkeypatch.setenv("MLHUB_PUBLIC_URL", "https://mlhub.example.org/")
    c = Config()
    c.KubeSpawner.environment = {"MLHUB_PUBLISHER_URL": PUBLISHER_URL}
    exec(HUB["extraConfig"]["mlhub"], {"c": c})
    assert c.KubeSpawner.environment == {
        "MLHUB_PUBLISHER_URL": PUBLISHER_URL,
        "MLHUB_PUBLIC_URL": "https://mlhub.example.org/",
    }
    # no profiles given in the chart (no files mounted): the hub image's own are used
    assert "profiles_dir" not in c.ProfileKubeSpawner


@pytest.mark.parametrize(
    "given, used",
    [
        # the official chart's documented form, and SQLAlchemy's default driver: psycopg2
        ("postgresql+psycopg2://hub@db:5432/hub", "postgresql+psycopg://hub@db:5432/hub"),
        ("postgresql://hub@db/hub", "postgresql+psycopg://hub@db/hub"),
        ("postgres://hub@db/hub", "postgresql+psycopg://hub@db/hub"),
        ("postgresql+psycopg://hub@db/hub", "postgresql+psycopg://hub@db/hub"),
        ("sqlite:///jupyterhub.sqlite", "sqlite:///jupyterhub.sqlite"),
        ("mysql+pymysql://hub@db/hub", "mysql+pymysql://hub@db/hub"),
    ],
)
def test_extra_config_gives_postgresql_urls_the_hub_images_driver(monkeypatch, given, used):
    from traitlets.config import Config

    monkeypatch.setenv("MLHUB_PUBLIC_URL", "https://mlhub.example.org/")
    c = Config()
    c.KubeSpawner.environment = {}
    c.JupyterHub.db_url = given
    exec(HUB["extraConfig"]["mlhub"], {"c": c})
    assert c.JupyterHub.db_url == used


def test_login_scopes_and_roles(kube_config):
    assert HUB["config"]["JupyterHub"]["authenticator_class"] == (
        "mlhub.authenticator.MlhubAuthenticator"
    )
    assert HUB["config"]["Authenticator"] == {"allow_all": True}
    assert HUB["config"]["JupyterHub"]["custom_scopes"] == kube_config.JupyterHub.custom_scopes
    embedded = {role["name"]: normalised(role) for role in kube_config.JupyterHub.load_roles}
    # the JupyterHub chart brings its own culler and its role (see test_culling)
    embedded.pop("idle-culler")
    chart = {name: normalised({"name": name, **role}) for name, role in HUB["loadRoles"].items()}
    assert chart == embedded


def test_publisher_service(kube_config):
    [embedded] = [s for s in kube_config.JupyterHub.services if s["name"] == "mlhub-publisher"]
    chart = HUB["services"]["mlhub-publisher"]
    for key in ("oauth_no_confirm", "oauth_client_allowed_scopes"):
        assert chart[key] == embedded[key]
    # not started by the hub: a Deployment of this chart behind its Service
    assert "command" not in chart
    assert chart["url"] == "http://mlhub-publisher:8090"


def test_culling(kube_config):
    culler = IdleCuller()
    [service] = [s for s in kube_config.JupyterHub.services if s["name"] == "idle-culler"]
    assert JUPYTERHUB["cull"] == {
        "enabled": True,
        "users": False,
        "removeNamedServers": False,
        "timeout": culler.timeout,
        "every": culler.every,
        "concurrency": culler.concurrency,
    }
    assert f"--timeout={culler.timeout}" in service["command"]
    # the JupyterHub chart's culler role has these same scopes as long as cull.users is off
    assert CULLER_SCOPES == ("list:users", "read:users:activity", "read:servers", "delete:servers")
