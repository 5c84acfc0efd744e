"""Login accounts: hashed passwords, wrong ones refused, groups and admin handed to JupyterHub."""

import os
import stat
from types import SimpleNamespace

import pytest

from mlhub.accounts import (
    ADMIN_GROUP,
    AccountStore,
    hash_password,
    verify_password,
    write_secret_file,
)
from mlhub.authenticator import MlhubAuthenticator
from mlhub.errors import BadRequest, Conflict, InvalidName, NotFound


@pytest.fixture
def store(tmp_path):
    return AccountStore(tmp_path / "accounts.sqlite")


def test_password_hash_round_trip():
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert hash_password("correct horse") != encoded  # salted


@pytest.mark.parametrize("encoded", ["", "plain", "md5$1$2$3$4$5", "scrypt$1$2$3"])
def test_malformed_hashes_never_match(encoded):
    assert not verify_password("anything", encoded)


def test_add_and_authenticate(store):
    account = store.add("alice", "s3cret-pass", groups=["r-users", "data", "r-users"])
    assert (account.name, account.admin, account.groups) == ("alice", False, ("data", "r-users"))
    assert store.authenticate("alice", "s3cret-pass") == account
    assert store.authenticate("alice", "wrong-pass") is None
    assert store.authenticate("nobody", "s3cret-pass") is None


def test_file_is_private_and_holds_no_plaintext(store):
    store.add("alice", "plaintext-password-123")
    mode = stat.S_IMODE(os.stat(store.location).st_mode)
    assert mode == 0o600
    with open(store.location, "rb") as f:
        assert b"plaintext-password-123" not in f.read()


def test_duplicate_and_invalid_input(store):
    store.add("alice", "s3cret-pass")
    with pytest.raises(Conflict, match="already exists"):
        store.add("alice", "other-pass")
    with pytest.raises(InvalidName):
        store.add("Alice Smith", "s3cret-pass")
    with pytest.raises(InvalidName):
        store.add("../etc", "s3cret-pass")
    with pytest.raises(InvalidName):
        store.add("bob", "s3cret-pass", groups=["bad group"])
    with pytest.raises(BadRequest, match="at least 8"):
        store.add("bob", "short")


def test_change_password_admin_groups_and_delete(store):
    store.add("alice", "first-pass")
    store.set_password("alice", "second-pass")
    assert store.authenticate("alice", "first-pass") is None
    assert store.authenticate("alice", "second-pass")
    store.set_admin("alice", True)
    store.set_groups("alice", ["r-users"])
    assert store.get("alice").admin and store.get("alice").groups == ("r-users",)
    assert [a.name for a in store.list()] == ["alice"]
    store.delete("alice")
    assert store.get("alice") is None
    for change in (
        lambda: store.delete("alice"),
        lambda: store.set_password("alice", "third-pass"),
        lambda: store.set_groups("alice", []),
    ):
        with pytest.raises(NotFound):
            change()


def test_ensure_admin_creates_once(store):
    password = store.ensure_admin("admin")
    assert password and store.get("admin").admin
    assert store.authenticate("admin", password)
    assert store.ensure_admin("admin") is None


def test_secret_file_mode(tmp_path):
    path = tmp_path / "secret"
    write_secret_file(path, "x")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.fixture
def authenticator(store):
    return MlhubAuthenticator(accounts_file=store.location)


def test_authenticator_settings(authenticator):
    assert authenticator.manage_groups
    assert authenticator.refresh_pre_spawn
    assert authenticator.auth_refresh_age == 60


async def test_authenticator_login(store, authenticator):
    store.add("alice", "s3cret-pass", groups=["r-users"])
    store.add("root", "s3cret-pass", admin=True)
    login = authenticator.authenticate
    assert await login(None, {"username": "alice", "password": "s3cret-pass"}) == {
        "name": "alice",
        "admin": False,
        "groups": ["r-users"],
    }
    assert await login(None, {"username": "alice", "password": "wrong"}) is None
    assert await login(None, {"username": "ghost", "password": "s3cret-pass"}) is None
    admin = await login(None, {"username": "root", "password": "s3cret-pass"})
    assert admin == {"name": "root", "admin": True, "groups": [ADMIN_GROUP]}


async def test_authenticator_refresh_follows_the_account(store, authenticator):
    store.add("alice", "s3cret-pass")
    user = SimpleNamespace(name="alice")
    assert await authenticator.refresh_user(user) == {
        "name": "alice",
        "admin": False,
        "groups": [],
    }
    store.set_groups("alice", ["r-users"])
    assert (await authenticator.refresh_user(user))["groups"] == ["r-users"]
    store.delete("alice")
    assert await authenticator.refresh_user(user) is False
