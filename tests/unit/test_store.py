"""The publisher store: tables, versions, events, deployments and keys over SQLite."""

import sqlite3

import pytest

from mlhub.errors import NotFound
from mlhub.publisher.store import Store, utcnow


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'mlhub.sqlite'}")
    yield s
    s.close()


def test_tables_are_created_idempotently_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'mlhub.sqlite'}"
    first = Store(url)
    first.create_model("alice", "iris", 1)
    first.close()
    second = Store(url)  # existing tables and rows are kept
    assert [m.key for m in second.list_models()] == ["alice/iris"]
    second.close()
    with sqlite3.connect(tmp_path / "mlhub.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"models", "versions", "deployments", "events", "api_keys"} <= tables


def test_models_by_owner(store):
    store.create_model("bob", "churn", 2)
    store.create_model("alice", "iris", 1)
    store.create_model("alice", "churn", 1)
    assert [m.key for m in store.list_models()] == ["alice/churn", "alice/iris", "bob/churn"]
    assert [m.key for m in store.list_models("bob")] == ["bob/churn"]
    assert store.find_model("carol", "iris") is None
    with pytest.raises(NotFound, match="no model carol/iris"):
        store.get_model("carol", "iris")


def test_same_digest_is_one_version(store):
    model = store.create_model("alice", "iris", 1)
    a = store.add_version(model, "sha256:aa", 10, {"flavor": "sklearn"}, "/a.tar.gz")
    b = store.add_version(model, "sha256:aa", 10, {"flavor": "sklearn"}, "/a.tar.gz")
    assert a is b and len(model.versions) == 1
    store.add_version(model, "sha256:bb", 20, {}, "/b.tar.gz")
    assert [v.id for v in model.versions] == ["sha256:aa", "sha256:bb"]
    assert store.referenced_artifacts() == {"/a.tar.gz", "/b.tar.gz"}


def test_previous_version_is_the_last_live_one_before_the_current(store):
    model = store.create_model("alice", "iris", 1)
    for digest in ("sha256:v1", "sha256:v2", "sha256:v3"):
        store.add_version(model, digest, 1, {}, f"/{digest}")
    assert store.previous_version(model) is None
    for digest in ("sha256:v1", "sha256:v3", "sha256:v2"):  # went live in this order
        model.version(digest).live_since = utcnow()
        model.current_version = digest
    store.commit()
    assert store.previous_version(model).id == "sha256:v3"


def test_events_since(store):
    model = store.create_model("alice", "iris", 1)
    other = store.create_model("bob", "iris", 1)
    first = store.add_event(model, "received", "got it", version="sha256:v1")
    store.add_event(other, "received", "not alice's")
    second = store.add_event(model, "failed", "broken", version="sha256:v1", level="error")
    assert [e.id for e in store.events(model)] == [first.id, second.id]
    assert [e.to_dict()["step"] for e in store.events(model, since=first.id)] == ["failed"]
    assert store.last_event(model).id == second.id
    assert second.to_dict()["time"].endswith("Z")


def test_deployments_mirror_the_deployer(store):
    model = store.create_model("alice", "iris", 1)
    store.set_deployments(
        model, [{"version": "sha256:v1", "state": "live", "pid": 42, "port": 9000, "workers": 2}]
    )
    store.set_deployments(model, [{"version": "sha256:v2", "pid": 43, "port": 9001, "workers": 3}])
    assert [(d.version, d.pid, d.workers) for d in model.deployments] == [("sha256:v2", 43, 3)]


def test_keys(store):
    model = store.create_model("alice", "iris", 1)
    key = store.add_key(model, "k1", "ab" * 32, "batch job")
    assert key.to_dict()["description"] == "batch job" and "key_sha256" not in key.to_dict()
    with pytest.raises(NotFound, match="no API key 'nope'"):
        store.delete_key(model, "nope")
    store.delete_key(model, "k1")
    assert model.api_keys == []


def test_deleting_a_model_deletes_its_rows(store, tmp_path):
    model = store.create_model("alice", "iris", 1)
    store.add_version(model, "sha256:v1", 1, {}, "/v1")
    store.add_event(model, "received")
    store.add_key(model, "k1", "cd" * 32, "")
    store.set_deployments(model, [{"version": "sha256:v1", "pid": 1, "port": 1, "workers": 1}])
    store.delete_model(model)
    with sqlite3.connect(tmp_path / "mlhub.sqlite") as db:
        for table in ("models", "versions", "deployments", "events", "api_keys"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_a_database_from_before_per_model_resources_gets_the_column(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    store = Store(url)
    store.create_model("alice", "iris", 1)
    store.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # as an older mlhub made it
        db.execute("ALTER TABLE models DROP COLUMN resources")
    store = Store(url)
    model = store.find_model("alice", "iris")
    assert model.resources is None
    model.resources = {"requests": {"cpu": "500m"}}
    store.commit()
    store.close()
    store = Store(url)
    assert store.find_model("alice", "iris").resources == {"requests": {"cpu": "500m"}}
    store.close()
