"""Authorization decisions: pure functions of the hub's user model for the token."""

import pytest

from mlhub.errors import Forbidden
from mlhub.publisher.auth import MANAGE, READ, Caller, authorize, require_api_scope, visible_owner


def caller(name="alice", scopes=("custom:mlhub:models",), admin=False, kind="user"):
    return Caller.from_hub_model({"name": name, "kind": kind, "admin": admin, "scopes": scopes})


def test_owner_may_read_and_manage():
    authorize(caller(), READ, "alice")
    authorize(caller(), MANAGE, "alice")


def test_others_may_not_and_are_told_why():
    with pytest.raises(Forbidden, match="'bob' may not change models of 'alice'"):
        authorize(caller("bob"), MANAGE, "alice")
    with pytest.raises(Forbidden, match="may not read"):
        authorize(caller("bob"), READ, "alice")


def test_shared_users_may_read_but_not_manage():
    authorize(caller("bob"), READ, "alice", shared_with=["bob"])
    with pytest.raises(Forbidden):
        authorize(caller("bob"), MANAGE, "alice", shared_with=["bob"])


@pytest.mark.parametrize(
    "who",
    [
        caller("root", scopes=["custom:mlhub:admin"]),
        caller("root", scopes=["admin:users", "custom:mlhub:models"], admin=True),
        caller("cron", scopes=["custom:mlhub:admin"], kind="service"),
    ],
)
def test_admins_manage_everything(who):
    assert who.is_admin
    authorize(who, MANAGE, "alice")
    assert visible_owner(who, None) is None  # everyone's


def test_a_hub_admins_narrow_token_is_not_admin():
    narrow = caller("root", scopes=["custom:mlhub:models"], admin=True)
    assert not narrow.is_admin
    with pytest.raises(Forbidden):
        authorize(narrow, MANAGE, "alice")


def test_a_token_without_the_scope_is_refused_even_for_its_own_models():
    with pytest.raises(Forbidden, match="lacks the scope 'custom:mlhub:models'"):
        require_api_scope(caller(scopes=["read:users:name!user=alice"]))
    with pytest.raises(Forbidden):
        authorize(caller(scopes=["access:services"]), READ, "alice")


def test_filtered_scope_is_not_the_scope():
    # custom scopes carry no filters in our roles: a filtered one must not pass as the full one
    with pytest.raises(Forbidden):
        require_api_scope(caller(scopes=["custom:mlhub:models!user=bob"]))


def test_services_do_not_own_user_namespaces():
    with pytest.raises(Forbidden):
        authorize(caller("alice", kind="service"), MANAGE, "alice")


def test_list_scope():
    assert visible_owner(caller(), None) == "alice"
    assert visible_owner(caller(), "alice") == "alice"
    with pytest.raises(Forbidden, match=r"\?user= is for admins"):
        visible_owner(caller(), "bob")


def test_group_members_may_read_shared_models():
    member = Caller.from_hub_model(
        {"name": "carol", "groups": ["ds"], "scopes": ["custom:mlhub:models"]}
    )
    authorize(member, READ, "alice", shared_groups=["ds"])
    with pytest.raises(Forbidden):
        authorize(member, READ, "alice", shared_groups=["other"])
    with pytest.raises(Forbidden):
        authorize(member, MANAGE, "alice", shared_groups=["ds"])
