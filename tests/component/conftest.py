"""The hub the publisher and batch tests share: one real ``mlhub up`` per test module.

It runs the real hub/mlhub/jupyterhub_config.py, with the publisher settings below written to the
mlhub config file, and the accounts ``alice`` and ``bob`` made with ``mlhub users add``: their
passwords are in ``hub.passwords``, a token of each (made through the hub's REST API after
logging in through the login form) in ``hub.alice`` and ``hub.bob``, alice's publisher client
in ``hub.client`` (``embedded_hub.running_hub``). At module end the hub is stopped with
Ctrl-C, then anything left is killed. test_hub_embedded.py and
test_serving_uwsgi.py define a ``hub`` of their own.

The serving tests (test_serving_uwsgi.py, test_serving_contract.py) run no hub: they share
``hub_stand_in`` (hubstandin.py) and an ``access_file`` in their module's ``work`` folder.
"""

import pytest
from support.batchtest import Postgres, Redis
from support.embedded_hub import PUBLISHER_CONFIG, running_hub
from support.hubstandin import KEY, HubStandIn, write_access


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hub"), PUBLISHER_CONFIG, ("alice", "bob")) as hub:
        yield hub


# Debian PostgreSQL and Redis servers of the batch tests, one per test module.


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_server():
    server = Redis()
    yield server
    server.stop()


# The serving tests' stand-ins: a hub answering for hubstandin.PEOPLE, and the publisher's
# access file sharing the model with bob's group ("analysts") and the API key KEY.


@pytest.fixture(scope="module")
def hub_stand_in():
    with HubStandIn() as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def access_file(work):
    path = work / "access.json"
    write_access(path, groups=["analysts"], keys=[KEY])
    return path
