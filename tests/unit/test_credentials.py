"""API keys and bundle tokens (``mlhub.publisher.credentials``): what is stored of a key, and a
bundle token that a restarted publisher accepts and that opens one model only."""

from types import SimpleNamespace

from mlhub.deployers.base import ModelRef
from mlhub.publisher.credentials import BundleTokens, access_list, hash_key, new_key


def test_a_new_key_is_shown_once_and_stored_as_its_hash():
    key, stored = new_key()
    assert key.startswith("mlhk_") and len(key) > 40
    assert stored == hash_key(key) and key not in stored
    assert new_key()[0] != key


def test_a_bundle_token_survives_a_restart_and_opens_its_own_model_only():
    secret = b"s" * 32
    before, after = BundleTokens(secret), BundleTokens(secret)  # the same publisher, restarted
    token = before.token(ModelRef("alice", "iris"))
    assert token.startswith("mlhb_")
    assert after.valid("alice", "iris", token)
    assert not after.valid("alice", "other", token)
    assert not after.valid("bob", "iris", token)
    assert not BundleTokens(b"t" * 32).valid("alice", "iris", token)  # another publisher


def test_the_access_list_names_owner_shares_and_key_hashes():
    model = SimpleNamespace(
        owner="alice",
        shared_with=["bob"],
        shared_groups=["team"],
        api_keys=[SimpleNamespace(key_sha256="ab")],
    )
    assert access_list(model) == {
        "users": ["alice", "bob"],
        "groups": ["team"],
        "key_hashes": ["ab"],
    }
