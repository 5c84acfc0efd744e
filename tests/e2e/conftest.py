"""Fixtures for the browser layer: a real ``mlhub up`` (the Chromium page is in tests/conftest.py,
shared with the cluster layer)."""

import pytest
from support.embedded_hub import EmbeddedHub


class Platform(EmbeddedHub):
    def add_user(self, name, *groups):
        return name, super().add_user(name, *groups)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    hub = Platform(tmp_path_factory.mktemp("e2e"))
    hub.start()
    yield hub
    try:
        hub.stop()
    finally:
        hub.kill()
