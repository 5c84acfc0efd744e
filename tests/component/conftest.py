"""Shared fixtures for component tests: real JupyterHub, proxy and publisher processes.

``hub_factory(**options)`` starts a JupyterHub 6 on free 127.0.0.1 ports with the PyPI
configurable-http-proxy and the mlhub publisher as a managed service, the custom scopes and
roles of docs/internals.md, and a ``test-admin`` service whose token creates users and tokens.
It uses the ``dummy`` authenticator: acceptable here only, where tests log in by token.

Options: ``publisher_config`` (lines of traitlets config for the publisher, e.g.
``"c.LocalDeployer.drain_seconds = 1"``), ``hub_config`` (extra lines for the hub's config).
Every hub started is stopped at the end of the session, together with any model process its
publisher left running.
"""

import pytest
from hubtest import Hub


@pytest.fixture(scope="session")
def hub_factory(tmp_path_factory):
    """``hub_factory(publisher_config="", hub_config="")`` -> a started ``Hub``."""
    hubs = []

    def start(**options):
        hub = Hub(tmp_path_factory.mktemp("hub"), **options)
        hubs.append(hub)
        try:
            return hub.start()
        except BaseException:
            hub.stop()
            hub.kill_leftovers()
            raise

    yield start
    for hub in hubs:
        hub.stop()
        hub.kill_leftovers()
