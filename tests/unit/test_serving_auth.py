"""Who may call a model: API key hashes, hub users and groups, the owner; caching and reloads.

The hub is a *fake* here: ``FakeHub`` answers like ``GET /hub/api/user`` would (a user model,
``None`` for a token the hub rejects, or ``HubUnavailable``) and counts how often it was asked.
The component test drives the real HTTP path against a stand-in hub server.
"""

import hashlib
import json
import os

import pytest

from mlhub.errors import Forbidden, Unauthorized
from mlhub.serving.auth import (
    AccessList,
    Authenticator,
    HubUnavailable,
    HubUsers,
    bearer_token,
    token_hash,
)

KEY = "mlhk_secret-key"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeHub:
    """Stands in for JupyterHub's ``/user`` endpoint: token -> user model."""

    def __init__(self, users=None):
        self.users = users or {}
        self.calls = 0
        self.down = False

    def __call__(self, api_url, token, timeout):
        self.calls += 1
        if self.down:
            raise HubUnavailable("JupyterHub could not be reached to check the token")
        return self.users.get(token)


def write_access(path, users=(), groups=(), keys=()):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(
            {
                "users": list(users),
                "groups": list(groups),
                "key_hashes": [hashlib.sha256(k.encode()).hexdigest() for k in keys],
            },
            fh,
        )
    os.replace(tmp, path)  # atomic, as the publisher writes it


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def hub(clock):
    return FakeHub(
        {
            "tok-alice": {"kind": "user", "name": "alice", "groups": []},
            "tok-bob": {"kind": "user", "name": "bob", "groups": ["analysts"]},
            "tok-carol": {"kind": "user", "name": "carol", "groups": ["sales"]},
            "tok-svc": {"kind": "service", "name": "bob"},
        }
    )


@pytest.fixture
def setup(tmp_path, clock, hub):
    path = tmp_path / "access.json"
    write_access(path, users=["dave"], groups=["analysts"], keys=[KEY])
    access = AccessList(str(path), clock=clock)
    users = HubUsers("http://hub.invalid/hub/api", ask=hub, clock=clock)
    return Authenticator(access, users, owner="alice"), path


def test_bearer_token_forms():
    assert bearer_token("token abc") == "abc"
    assert bearer_token("Bearer  abc ") == "abc"
    assert bearer_token(None, "abc") == "abc"
    with pytest.raises(Unauthorized, match="needs a token"):
        bearer_token(None)
    with pytest.raises(Unauthorized, match="scheme 'Basic' is not supported"):
        bearer_token("Basic dXNlcjpwYXNz")


def test_api_key_is_accepted_by_its_hash_without_asking_the_hub(setup, hub):
    auth, _ = setup
    assert auth.check(f"token {KEY}") == f"key:{token_hash(KEY)[:12]}"
    assert auth.check(None, api_key=KEY).startswith("key:")
    assert hub.calls == 0


def test_unknown_api_key_is_401_and_never_sent_to_the_hub(setup, hub):
    auth, _ = setup
    with pytest.raises(Unauthorized, match="API key is not valid for this model"):
        auth.check("token mlhk_other")
    assert hub.calls == 0


@pytest.mark.parametrize("token, who", [("tok-alice", "alice"), ("tok-bob", "bob")])
def test_owner_and_group_members_are_allowed(setup, token, who):
    auth, _ = setup
    assert auth.check(f"Bearer {token}") == f"user:{who}"


def test_valid_hub_user_outside_the_list_is_403(setup):
    auth, _ = setup
    with pytest.raises(Forbidden) as err:
        auth.check("token tok-carol")
    assert err.value.status == 403 and err.value.detail == {"user": "carol"}


def test_a_hub_service_does_not_pass_as_the_user_of_the_same_name(setup):
    auth, _ = setup
    with pytest.raises(Forbidden, match="'service:bob'"):
        auth.check("token tok-svc")


def test_token_the_hub_rejects_is_401(setup):
    auth, _ = setup
    with pytest.raises(Unauthorized, match="neither an API key"):
        auth.check("token nonsense")


def test_hub_answers_are_cached_by_token_hash(setup, hub, clock):
    auth, _ = setup
    for _ in range(3):
        auth.check("token tok-bob")
    assert hub.calls == 1
    clock.now += 61  # positive answers live 60 s
    auth.check("token tok-bob")
    assert hub.calls == 2


def test_rejections_are_cached_briefly(setup, hub, clock):
    auth, _ = setup
    for _ in range(2):
        with pytest.raises(Unauthorized):
            auth.check("token later-valid")
    assert hub.calls == 1
    hub.users["later-valid"] = {"name": "dave", "groups": []}
    clock.now += 6  # negative answers live 5 s
    assert auth.check("token later-valid") == "user:dave"


def test_hub_down_is_503_and_not_cached(setup, hub):
    auth, _ = setup
    hub.down = True
    with pytest.raises(HubUnavailable) as err:
        auth.check("token tok-bob")
    assert err.value.status == 503
    hub.down = False
    assert auth.check("token tok-bob") == "user:bob"


def test_a_new_key_works_at_once_and_other_changes_within_a_second(setup, clock):
    """A key the publisher just minted works on every worker at once (an unknown key looks at
    the file before it is refused: the page shows the key, the caller pastes it); everything
    else is re-read at most once a second, so good requests never stat the file."""
    auth, path = setup
    with pytest.raises(Unauthorized):
        auth.check("token mlhk_new")
    write_access(path, users=["dave"], groups=[], keys=["mlhk_new"])
    assert auth.check("token tok-bob") == "user:bob"  # the group's removal: not yet seen...
    assert auth.check(f"token {KEY}").startswith("key:")  # ...nor KEY's revocation
    clock.now += 1.1
    with pytest.raises(Forbidden):  # within a second they are
        auth.check("token tok-bob")
    with pytest.raises(Unauthorized):
        auth.check(f"token {KEY}")
    write_access(path, users=["dave"], groups=[], keys=["mlhk_newer"])
    assert auth.check("token mlhk_newer").startswith("key:")  # a new key: no wait at all


def test_broken_access_file_keeps_the_last_good_list(setup, clock):
    auth, path = setup
    path.write_text("{not json")
    clock.now += 2
    assert auth.check(f"token {KEY}").startswith("key:")


def test_missing_access_file_allows_only_the_owner(tmp_path, clock, hub):
    access = AccessList(str(tmp_path / "absent.json"), clock=clock)
    auth = Authenticator(access, HubUsers("http://hub", ask=hub, clock=clock), owner="alice")
    assert auth.check("token tok-alice") == "user:alice"
    with pytest.raises(Forbidden):
        auth.check("token tok-bob")


def test_without_a_hub_url_only_api_keys_work(tmp_path, clock):
    path = tmp_path / "access.json"
    write_access(path, keys=[KEY])
    auth = Authenticator(AccessList(str(path), clock=clock), None)
    assert auth.check(f"token {KEY}").startswith("key:")
    with pytest.raises(Unauthorized, match="JUPYTERHUB_API_URL is not set"):
        auth.check("token some-hub-token")
