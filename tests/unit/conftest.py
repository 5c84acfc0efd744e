"""Fixtures of the unit tests shared by several modules."""

from types import SimpleNamespace

import pytest
from kubernetes_asyncio.config import kube_config
from support.kube_spawner import UNREACHABLE_KUBECONFIG


@pytest.fixture
def spawner_for(monkeypatch, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    # kubernetes_asyncio reads $KUBECONFIG once, at import: point its default there instead
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    from traitlets.config import Config

    from mlhub.kube_mode import kubespawner_defaults
    from mlhub.kube_spawner import ProfileKubeSpawner

    config = Config()
    for trait, value in kubespawner_defaults("http://hub/services/p/", "http://hub/").items():
        setattr(config.KubeSpawner, trait, value)

    def make(name="ada", groups=(), admin=False, options=None):
        user = SimpleNamespace(
            name=name,
            id=7,
            url=f"/user/{name}/",
            admin=admin,
            groups=[SimpleNamespace(name=g) for g in groups],
        )
        spawner = ProfileKubeSpawner(config=config, user=user, _mock=True)
        spawner.user_options = options or {}
        return spawner

    return make
