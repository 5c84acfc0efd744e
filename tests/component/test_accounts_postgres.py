"""Login accounts in PostgreSQL (``MlhubSettings.accounts_db``), as the Kubernetes chart keeps
them when the hub's database is PostgreSQL: a real server from Debian's package, reached over
TCP with a password, through ``mlhub users`` as an operator runs it and through the store the
authenticator uses. A wrong password or host is one clear line naming what to check, without
the password."""

import os
import subprocess

import pytest
from support.batchtest import Postgres
from support.embedded_hub import MLHUB

from mlhub.accounts import AccountStore
from mlhub.errors import Conflict, MlhubError

pytestmark = pytest.mark.component

PASSWORD = "pg-secret-4711"


@pytest.fixture(scope="module")
def server():
    pg = Postgres(password=PASSWORD)
    yield pg
    pg.stop()


def users(server, tmp_path, *args, password=PASSWORD, url=None):
    env = {
        **os.environ,
        "MLHUB_MODE": "kubernetes",
        "MLHUB_DATA_DIR": str(tmp_path / "no-volume"),  # as the hub pod without a PVC
        "MLHUB_ACCOUNTS_DB": url or server.url.replace("postgresql://", "postgresql+psycopg://"),
        "PGPASSWORD": password,
    }
    return subprocess.run(
        [MLHUB, "users", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_mlhub_users_keeps_accounts_in_postgresql(server, tmp_path):
    added = users(server, tmp_path, "add", "ada", "--group", "analysts")
    assert added.returncode == 0, added.stderr
    assert users(server, tmp_path, "list").stdout.count("ada") == 1
    # in the database, not in a file of the data directory
    assert server.psql('SELECT name, "groups" FROM mlhub_accounts') == ['ada|["analysts"]']
    assert not (tmp_path / "no-volume").exists()

    again = users(server, tmp_path, "add", "ada")
    assert again.returncode == 1 and "already exists" in again.stderr

    os.environ["PGPASSWORD"] = PASSWORD
    try:
        store = AccountStore(server.url)
        password = added.stdout.split("password: ")[1].split()[0]
        assert store.authenticate("ada", password).groups == ("analysts",)
        assert store.authenticate("ada", "wrong-password") is None
        with pytest.raises(Conflict):
            store.add("ada", "another-password")
        store.delete("ada")
        assert store.list() == []
    finally:
        del os.environ["PGPASSWORD"]


def test_a_wrong_password_or_host_says_what_to_check(server, tmp_path):
    refused = users(server, tmp_path, "list", password="not-it")
    assert refused.returncode == 1
    assert f"cannot open the accounts database {server.host}/postgres" in refused.stderr
    assert "PGPASSWORD" in refused.stderr and "not-it" not in refused.stderr
    nowhere = users(server, tmp_path, "list", url="postgresql://u:hunter2@127.0.0.1:1/db")
    assert nowhere.returncode == 1
    assert "cannot open the accounts database 127.0.0.1/db" in nowhere.stderr
    assert "hunter2" not in nowhere.stderr
    with pytest.raises(MlhubError):
        AccountStore("postgresql://u@127.0.0.1:1/db").list()
