"""The publisher's REST API over a real tornado server, with a fake hub and a fake deployer.

``FakeHubAuth`` maps tokens to hub user models (what ``HubOAuth.get_user`` returns);
``FakeDeployer`` records what it was asked and refuses bundles marked corrupt. The real hub,
proxy and serving processes are exercised by tests/component/test_publisher_*.py.
"""

import asyncio
import io
import json
import os

import pytest
from support.publisher_api import Api

from mlhub import bundle
from mlhub.deployers.base import ModelRef
from mlhub.errors import BadRequest
from mlhub.publisher.credentials import hash_key


@pytest.fixture
async def api(tmp_path):
    async with Api.running(tmp_path) as api:
        yield api


async def test_health_and_openapi_need_no_token(api):
    status, body = await api.call("GET", "api/health", token=None)
    assert status == 200 and body["status"] == "ok" and body["max_upload_bytes"] == 20_000
    status, spec = await api.call("GET", "api/openapi.json", token=None)
    assert status == 200 and spec["openapi"].startswith("3.")
    assert spec["servers"] == [{"url": "/services/mlhub-publisher"}]


async def test_no_token_is_401_and_missing_scope_is_403(api):
    resp = await api.call("GET", "api/models", token=None, raw=True)
    assert resp.code == 401 and resp.headers["WWW-Authenticate"].startswith("token")
    body = json.loads(resp.body)
    assert body["code"] == "unauthorized" and "hub/token" in body["error"]
    status, body = await api.call("GET", "api/models", token="wrong")
    assert status == 401
    status, body = await api.call("GET", "api/models", token="narrow-token")
    assert status == 403 and "custom:mlhub:models" in body["error"]


async def test_publish_deploys_and_records_every_step(api):
    status, body = await api.publish("iris", query="?workers=2")
    assert status == 202, body
    version = body["version"]
    assert version.startswith("sha256:") and body["model"]["status"] == "deploying"
    await api.settle()
    status, events = await api.call(
        "GET", f"api/models/alice/iris/events?since={body['event_id'] - 1}"
    )
    steps = [e["step"] for e in events["events"]]
    assert steps == ["received", "unpacked", "starting", "ready", "switched", "drained", "done"]
    assert {e["version"] for e in events["events"]} == {version}
    status, model = await api.call("GET", "api/models/alice/iris")
    assert model["status"] == "ready" and model["current_version"] == version
    assert model["replicas"] == 2
    assert model["predict_url"] == "http://hub.test/models/alice/iris/v1/predict"
    assert api.deployer.access[api.manager.ref(api.store.find_model("alice", "iris"))] == {
        "users": ["alice"],
        "groups": [],
        "key_hashes": [],
    }
    # the same bundle again is the same, live version: nothing to do
    status, again = await api.publish("iris")
    assert status == 200 and again["version"] == version
    assert [c for c in api.deployer.calls if c[0] == "deploy"] == [
        ("deploy", "alice/iris", version, 2)
    ]


async def test_only_the_owner_or_an_admin_publishes(api):
    status, body = await api.publish("iris", token="bob-token")
    assert status == 403 and body["code"] == "forbidden"
    assert api.store.find_model("alice", "iris") is None
    status, body = await api.publish("iris", token="admin-token")
    assert status == 202
    await api.settle()
    for method, path, payload in [
        ("GET", "api/models/alice/iris", None),
        ("GET", "api/models/alice/iris/events", None),
        ("POST", "api/models/alice/iris/rollback", {}),
        ("POST", "api/models/alice/iris/scale", {"replicas": 2}),
        ("GET", "api/models/alice/iris/logs", None),
        ("POST", "api/models/alice/iris/keys", {}),
        ("DELETE", "api/models/alice/iris", None),
    ]:
        status, body = await api.call(method, path, "bob-token", payload)
        assert status == 403, (method, path, body)


async def test_invalid_name_is_400(api):
    status, body = await api.publish("Not_A_Name")
    assert status == 400 and body["code"] == "invalid_name" and "DNS label" in body["error"]


async def test_upload_over_the_limit_is_413_naming_the_limit(api):
    payload = os.urandom(40_000)  # does not compress: well over 20 kB packed
    status, body = await api.publish("big", payload=payload)
    assert status == 413 and body["code"] == "payload_too_large"
    assert "20000 bytes" in body["error"] and body["detail"]["limit"] == 20_000
    assert list((api.tmp / "data" / "artifacts" / "tmp").iterdir()) == []


async def test_wrong_content_type_is_415(api):
    status, body = await api.call(
        "POST", "api/models/alice/iris/versions", body=b"{}", headers={"Content-Type": "text/json"}
    )
    assert status == 415 and "application/gzip" in body["error"]


async def test_corrupt_bundle_is_400_and_the_live_version_stays(api):
    _, good = await api.publish("iris")
    await api.settle()
    status, body = await api.publish("iris", payload=b"corrupt pickle")
    assert status == 400 and body["code"] == "invalid_bundle"
    assert "UnpicklingError" in body["error"]
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["current_version"] == good["version"] and len(model["versions"]) == 1
    _, events = await api.call("GET", "api/models/alice/iris/events")
    assert events["events"][-1]["step"] == "failed" and events["events"][-1]["level"] == "error"
    status, body = await api.call(
        "POST",
        "api/models/alice/iris/versions",
        body=b"not a tarball",
        headers={"Content-Type": "application/gzip"},
    )
    assert status == 400 and "tar.gz" in body["error"]


async def test_rollback_scale_and_their_limits(api):
    _, v1 = await api.publish("iris", payload=b"one")
    await api.settle()
    _, v2 = await api.publish("iris", payload=b"two")
    await api.settle()
    status, body = await api.call("POST", "api/models/alice/iris/rollback", body={})
    assert status == 202 and body["version"] == v1["version"]
    await api.settle()
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["current_version"] == v1["version"]
    status, body = await api.call(
        "POST", "api/models/alice/iris/rollback", body={"version": "sha256:nope"}
    )
    assert status == 404 and "has no version" in body["error"]

    status, body = await api.call("POST", "api/models/alice/iris/scale", body={"replicas": 3})
    assert status == 202
    await api.settle()
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["replicas"] == 3 and api.deployer.live[
        api.manager.ref(api.store.find_model("alice", "iris"))
    ] == (v1["version"], 3)
    for bad in (0, 5, "2", None):
        status, body = await api.call("POST", "api/models/alice/iris/scale", body={"replicas": bad})
        assert status == 400, bad
    assert "limit of 4" in body["error"] or "positive integer" in body["error"]


async def test_a_scale_the_backend_cannot_serve_is_refused_and_not_recorded(api):
    """The deployer's ``check_replicas`` (e.g. an R model without nginx in embedded mode) runs
    before the publisher records the new count, so it never reports replicas that do not
    serve. The fake's refusal stands in for the backend's reason."""
    await api.publish("iris")
    await api.settle()

    def refuse(manifest, replicas):
        if replicas > 1:
            raise BadRequest(f"{manifest['runtime']} cannot serve {replicas} here")

    api.deployer.check_replicas = refuse
    status, body = await api.call("POST", "api/models/alice/iris/scale", body={"replicas": 3})
    assert status == 400 and body["error"] == "python cannot serve 3 here"
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["replicas"] == 1
    _, events = await api.call("GET", "api/models/alice/iris/events")
    assert "scale to 3" not in json.dumps(events)


async def test_keys_update_the_access_list(api):
    await api.publish("iris")
    await api.settle()
    ref = api.manager.ref(api.store.find_model("alice", "iris"))
    status, key = await api.call("POST", "api/models/alice/iris/keys", body={"description": "job"})
    assert status == 201 and key["key"].startswith("mlhk_")
    assert api.deployer.access[ref]["key_hashes"] == [hash_key(key["key"])]
    _, listed = await api.call("GET", "api/models/alice/iris/keys")
    assert listed["keys"] == [{"id": key["id"], "description": "job", "created": key["created"]}]
    status, _ = await api.call("DELETE", f"api/models/alice/iris/keys/{key['id']}")
    assert status == 204 and api.deployer.access[ref]["key_hashes"] == []
    status, body = await api.call("DELETE", f"api/models/alice/iris/keys/{key['id']}")
    assert status == 404


async def test_list_models(api):
    await api.publish("iris")
    await api.publish("churn", token="bob-token", owner="bob")
    await api.settle()
    _, mine = await api.call("GET", "api/models")
    assert [m["name"] for m in mine["models"]] == ["iris"]
    status, _ = await api.call("GET", "api/models?user=bob")
    assert status == 403
    _, everyone = await api.call("GET", "api/models", token="admin-token")
    assert [(m["owner"], m["name"]) for m in everyone["models"]] == [
        ("alice", "iris"),
        ("bob", "churn"),
    ]
    _, bobs = await api.call("GET", "api/models?user=bob", token="admin-token")
    assert [m["name"] for m in bobs["models"]] == ["churn"]
    assert [v["published_by"] for v in bobs["models"][0]["versions"]] == ["bob"]
    _, me = await api.call("GET", "api/user", token="admin-token")
    assert me == {"name": "root", "kind": "user", "admin": True}


async def test_delete_then_404(api):
    await api.publish("iris")
    await api.settle()
    status, _ = await api.call("DELETE", "api/models/alice/iris")
    assert status == 204 and ("delete", "alice/iris") in api.deployer.calls
    status, body = await api.call("GET", "api/models/alice/iris")
    assert status == 404 and body["code"] == "not_found"
    assert not (api.tmp / "data" / "models" / "alice" / "iris").exists()
    assert list((api.tmp / "data" / "artifacts").glob("sha256/*/*")) == []


async def test_logs_are_text(api):
    await api.publish("iris")
    await api.settle()
    resp = await api.call("GET", "api/models/alice/iris/logs?tail=3", raw=True)
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.body.decode() == "line 0\nline 1\nline 2\n"


async def test_unknown_paths_and_the_models_fallback_answer_json(api):
    status, body = await api.call("GET", "api/nothing")
    assert status == 404 and body["code"] == "not_found"
    status, body = await api.call("POST", "/models/alice/iris/v1/predict", token=None, body={})
    assert status == 404 and "no model alice/iris" in body["error"]
    api.store.create_model("alice", "iris", 1)
    status, body = await api.call("GET", "/models/alice/iris/readyz", token=None)
    assert status == 503 and body["code"] == "not_ready"


async def test_sharing_lets_others_read_and_call_but_not_change(api):
    await api.publish("iris")
    await api.settle()
    ref = api.manager.ref(api.store.find_model("alice", "iris"))
    status, model = await api.call(
        "PUT", "api/models/alice/iris/sharing", body={"users": ["bob", "alice"], "groups": ["ds"]}
    )
    assert status == 200
    assert model["shared_with"] == ["bob"] and model["shared_groups"] == ["ds"]
    assert api.deployer.access[ref] == {
        "users": ["alice", "bob"],
        "groups": ["ds"],
        "key_hashes": [],
    }
    status, _ = await api.call("GET", "api/models/alice/iris", token="bob-token")
    assert status == 200
    status, _ = await api.call("POST", "api/models/alice/iris/scale", "bob-token", {"replicas": 2})
    assert status == 403
    status, _ = await api.call("PUT", "api/models/alice/iris/sharing", "bob-token", {"users": []})
    assert status == 403
    status, body = await api.call("PUT", "api/models/alice/iris/sharing", body={"users": "bob"})
    assert status == 400 and "users must be a list" in body["error"]
    # a body that names neither list, or no body at all, changes nothing
    for empty in ({}, b"", {"user": ["bob"]}):
        status, body = await api.call("PUT", "api/models/alice/iris/sharing", body=empty)
        assert status == 400 and "users" in body["error"], empty
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["shared_with"] == ["bob"] and model["shared_groups"] == ["ds"]
    # a list left out stays as it is
    status, model = await api.call("PUT", "api/models/alice/iris/sharing", body={"groups": []})
    assert model["shared_with"] == ["bob"] and model["shared_groups"] == []
    status, model = await api.call("PUT", "api/models/alice/iris/sharing", body={"users": []})
    assert model["shared_with"] == [] and api.deployer.access[ref]["users"] == ["alice"]


async def test_bundle_download_for_the_owner_and_the_models_own_token_only(api):
    status, body = await api.publish("iris", payload=b"weights v1")
    await api.settle()
    version = body["version"]
    path = f"api/models/alice/iris/versions/{version}/bundle"
    token = api.deployer.bundle_token(api.manager.ref(api.store.find_model("alice", "iris")))
    assert token.startswith("mlhb_")
    for who in ("alice-token", token):
        resp = await api.call("GET", path, token=who, raw=True)
        assert resp.code == 200 and resp.headers["Content-Type"] == "application/gzip"
        unpacked = api.tmp / f"unpacked-{who[:5]}"
        bundle.unpack(io.BytesIO(resp.body), unpacked)
        assert bundle.bundle_digest(unpacked) == version
    # another user, another model's token, a forged token, an unknown version
    assert (await api.call("GET", path, token="bob-token"))[0] == 403
    await api.publish("other", payload=b"other")
    await api.settle()
    other = api.deployer.bundle_token(api.manager.ref(api.store.find_model("alice", "other")))
    assert (await api.call("GET", path, token=other))[0] == 401
    assert (await api.call("GET", path, token="mlhb_" + "0" * 64))[0] == 401
    status, body = await api.call("GET", "api/models/alice/iris/versions/sha256:00/bundle")
    assert status == 404 and "no version" in body["error"]


async def test_batching_is_a_publish_option_kept_with_the_model(api):
    ref = ModelRef("alice", "forest")
    status, body = await api.publish("forest", query="?batching=on&batch_max_size=16")
    assert status == 202, body
    await api.settle()
    assert body["model"]["batching"] == {"max_size": 16, "max_wait_ms": 2}
    assert api.deployer.serving[ref].env() == {
        "MLHUB_BATCHING": "on",
        "MLHUB_BATCH_MAX_SIZE": "16",
        "MLHUB_BATCH_MAX_WAIT_MS": "2",
    }
    # a later version that does not mention it keeps it
    status, body = await api.publish("forest", payload=b"v2")
    await api.settle()
    assert status == 202 and body["model"]["batching"] == {"max_size": 16, "max_wait_ms": 2}
    # the live version again with another setting is restarted with it, not "already live"
    status, body = await api.publish("forest", payload=b"v2", query="?batching=off")
    await api.settle()
    assert status == 202 and body["model"]["batching"] is None
    assert api.deployer.serving[ref].env() == {}
    deploys = [c for c in api.deployer.calls if c[0] == "deploy" and c[1] == "alice/forest"]
    assert len(deploys) == 3


@pytest.mark.parametrize(
    "query, field",
    [
        ("?batching=maybe", "batching"),
        ("?batch_max_size=0", "batching.max_size"),
        ("?batching=on&batch_max_size=100000", "batching.max_size"),
        ("?batch_max_wait_ms=-1", "batching.max_wait_ms"),
        ("?batch_max_size=many", "batch_max_size"),
    ],
)
async def test_bad_batching_is_400_and_changes_nothing(api, query, field):
    status, body = await api.publish("forest", query=query)
    assert status == 400 and body["detail"]["field"] == field, body
    status, _ = await api.call("GET", "api/models/alice/forest")
    assert status == 404


async def test_batching_survives_a_publisher_restart(api, tmp_path):
    await api.publish("forest", query="?batching=on&batch_max_wait_ms=5")
    await api.settle()
    async with Api.running(tmp_path) as restarted:  # the same data directory and database
        env = restarted.deployer.serving[ModelRef("alice", "forest")].env()
        assert env["MLHUB_BATCH_MAX_WAIT_MS"] == "5"
        status, model = await restarted.call("GET", "api/models/alice/forest")
        assert model["batching"] == {"max_size": 64, "max_wait_ms": 5}


async def test_resources_are_a_publish_option_kept_with_the_model(api):
    ref = ModelRef("alice", "forest")
    status, body = await api.publish("forest", query="?cpu=500m&memory_limit=1Gi")
    assert status == 202, body
    await api.settle()
    wanted = {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    assert body["model"]["resources"] == wanted
    assert api.deployer.serving[ref].resources == wanted
    # a later version that does not mention them keeps them
    status, body = await api.publish("forest", payload=b"v2", query="?batching=on")
    await api.settle()
    assert status == 202 and body["model"]["resources"] == wanted
    # the live version again with other resources is restarted with them
    status, body = await api.publish("forest", payload=b"v2", query="?memory=2Gi")
    await api.settle()
    assert status == 202 and body["model"]["resources"] == {"requests": {"memory": "2Gi"}}
    assert body["model"]["batching"] == {"max_size": 64, "max_wait_ms": 2}
    deploys = [c for c in api.deployer.calls if c[0] == "deploy" and c[1] == "alice/forest"]
    assert len(deploys) == 3


@pytest.mark.parametrize(
    "query, field, bad",
    [
        ("?memory=2%20GB", "resources.memory", "'2 GB'"),
        ("?cpu=abc", "resources.cpu", "'abc'"),
        ("?cpu_limit=-1", "resources.cpu_limit", "'-1'"),
        ("?cpu=2&cpu_limit=1", "resources.cpu", "above its limit"),
    ],
)
async def test_bad_resources_are_400_naming_the_value_and_change_nothing(api, query, field, bad):
    status, body = await api.publish("forest", query=query)
    assert status == 400 and body["detail"]["field"] == field and bad in body["error"], body
    status, _ = await api.call("GET", "api/models/alice/forest")
    assert status == 404


async def test_resources_survive_a_publisher_restart(api, tmp_path):
    await api.publish("forest", query="?cpu=250m&memory=512Mi")
    await api.settle()
    async with Api.running(tmp_path) as restarted:  # the same data directory and database
        wanted = {"requests": {"cpu": "250m", "memory": "512Mi"}}
        assert restarted.deployer.serving[ModelRef("alice", "forest")].resources == wanted
        status, model = await restarted.call("GET", "api/models/alice/forest")
        assert model["resources"] == wanted


async def test_a_scale_to_the_count_serving_already_changes_nothing(api):
    await api.publish("iris")
    await api.settle()
    deploys = len(api.deployer.calls)
    status, body = await api.call("POST", "api/models/alice/iris/scale", body={"replicas": 1})
    assert status == 200 and body["event_id"] is None and body["model"]["replicas"] == 1
    await api.settle()
    assert len(api.deployer.calls) == deploys  # no restart
    _, events = await api.call("GET", "api/models/alice/iris/events")
    assert "scale to" not in json.dumps(events)
    # no body at all: a 400 showing what to send
    status, body = await api.call("POST", "api/models/alice/iris/scale", body=b"")
    assert status == 400 and '{"replicas": 2}' in body["error"]


async def test_replicas_bound_is_in_the_openapi_document(api):
    _, spec = await api.call("GET", "api/openapi.json", token=None)
    scale = spec["paths"]["/api/models/{user}/{name}/scale"]["post"]
    replicas = scale["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert replicas["replicas"] == {"type": "integer", "minimum": 1, "maximum": 4}
    assert "200" in scale["responses"] and "202" in scale["responses"]


async def test_keys_per_model_are_bounded_and_a_bodyless_mint_is_refused(api):
    api.manager.max_keys = 3
    await api.publish("iris")
    await api.settle()
    status, body = await api.call("POST", "api/models/alice/iris/keys", body=b"")
    assert status == 400 and "description" in body["error"]
    ids = []
    for _ in range(3):
        status, key = await api.call("POST", "api/models/alice/iris/keys", body={})
        assert status == 201
        ids.append(key["id"])
    status, body = await api.call("POST", "api/models/alice/iris/keys", body={})
    assert status == 409 and body["code"] == "conflict"
    assert "max_keys_per_model" in body["error"] and body["detail"] == {"limit": 3}
    _, listed = await api.call("GET", "api/models/alice/iris/keys")
    assert len(listed["keys"]) == 3
    await api.call("DELETE", f"api/models/alice/iris/keys/{ids[0]}")
    status, _ = await api.call("POST", "api/models/alice/iris/keys", body={})
    assert status == 201


@pytest.mark.parametrize(
    "line", ["", "format: 2", "format: '1'", "format: true", "format: [1]", "format: null"]
)
async def test_a_manifest_with_a_wrong_format_is_400_naming_the_field(api, line, tmp_path):
    path = api.bundle_dir("iris", b"weights")
    manifest = (path / "mlhub.yaml").read_text().replace("format: 1\n", line + "\n" if line else "")
    (path / "mlhub.yaml").write_text(manifest)
    status, body = await api.call(
        "POST",
        "api/models/alice/iris/versions",
        body=bundle.pack(path),
        headers={"Content-Type": "application/gzip"},
    )
    assert status == 400, body
    assert body["code"] == "invalid_bundle" and "'format'" in body["error"]
    assert "(one of 1)" in body["error"]


async def test_history_says_who_changed_what_and_which_version_served_when(api):
    """An audit: every publish, rollback, scale and access change with its actor, oldest first,
    and one served interval per version that went live (the newest open)."""
    _, v1 = await api.publish("iris", payload=b"one")
    await api.settle()
    _, v2 = await api.publish("iris", payload=b"two")
    await api.settle()
    await api.call("POST", "api/models/alice/iris/rollback", body={})
    await api.settle()
    await api.call("POST", "api/models/alice/iris/scale", body={"replicas": 2})
    await api.settle()
    _, key = await api.call("POST", "api/models/alice/iris/keys", body={"description": "job"})
    await api.call("DELETE", f"api/models/alice/iris/keys/{key['id']}")
    await api.call("PUT", "api/models/alice/iris/sharing", body={"users": ["bob"]})

    status, history = await api.call("GET", "api/models/alice/iris/history", token="bob-token")
    assert status == 200  # bob may read it now that it is shared with him
    changes = [(c["step"], c["actor"], c["version"]) for c in history["changes"]]
    assert changes == [
        ("received", "alice", v1["version"]),
        ("received", "alice", v2["version"]),
        ("requested", "alice", v1["version"]),  # the rollback
        ("requested", "alice", v1["version"]),  # the scale
        ("key_created", "alice", None),
        ("key_revoked", "alice", None),
        ("shared", "alice", None),
    ]
    assert "rollback to" in history["changes"][2]["message"]
    assert f"API key {key['id']} (job) created by alice" == history["changes"][4]["message"]
    served = [(s["version"], s["until"] is None) for s in history["served"]]
    assert served == [(v1["version"], False), (v2["version"], False), (v1["version"], True)]
    assert history["served"][0]["until"] == history["served"][1]["since"]
    status, _ = await api.call("GET", "api/models/alice/iris/history", token="narrow-token")
    assert status == 403


async def test_the_inference_log_is_a_publish_option_and_a_setting_of_the_live_version(api):
    """Publish with it (kept by later versions), change it on the live version (a restart with
    the new setting, recorded with who asked), and its bad values (400, nothing changes)."""
    ref = ModelRef("alice", "watched")
    status, body = await api.publish("watched", query="?inference_log=0.25")
    await api.settle()
    assert status == 202 and body["model"]["inference_log"] == 0.25
    assert api.deployer.serving[ref].env() == {"MLHUB_INFERENCE_LOG": "0.25"}
    await api.publish("watched", payload=b"v2")
    await api.settle()
    assert api.deployer.serving[ref].inference_log == 0.25

    status, body = await api.call("PATCH", "api/models/alice/watched", body={"inference_log": 1})
    assert status == 202 and body["model"]["inference_log"] == 1.0
    await api.settle()
    assert api.deployer.serving[ref].env() == {"MLHUB_INFERENCE_LOG": "1"}
    _, history = await api.call("GET", "api/models/alice/watched/history")
    asked = [c["message"] for c in history["changes"] if c["actor"] == "alice"]
    assert "inference log keep 100% of the requests, requested by alice" in asked
    status, body = await api.call("PATCH", "api/models/alice/watched", body={"inference_log": 1})
    assert status == 200 and body["event_id"] is None  # nothing to do
    status, _ = await api.call("PATCH", "api/models/alice/watched", body={"inference_log": False})
    await api.settle()
    assert status == 202 and api.deployer.serving[ref].env() == {}

    for body in ({"inference_log": 2}, {"inference_log": "lots"}, {"replicas": 2}, {}):
        status, answer = await api.call("PATCH", "api/models/alice/watched", body=body)
        assert status == 400, (body, answer)
    status, answer = await api.publish("watched", payload=b"v3", query="?inference_log=-1")
    assert status == 400 and answer["detail"]["field"] == "inference_log"
    _, model = await api.call("GET", "api/models/alice/watched")
    assert model["inference_log"] is None
    status, _ = await api.call(
        "PATCH", "api/models/alice/watched", body={"inference_log": 1}, token="bob-token"
    )
    assert status in (403, 404)


async def test_a_new_model_gets_the_default_inference_log(api):
    api.manager.inference_log_default = 0.1
    _, body = await api.publish("fresh")
    assert body["model"]["inference_log"] == 0.1
    _, body = await api.publish("quiet", query="?inference_log=off")
    assert body["model"]["inference_log"] is None


async def test_one_models_log_is_held_to_its_rows_a_minute(api):
    """The log token's POST: rows up to the model's share of a minute, then 429 saying which
    setting holds it; another model is not held by it."""
    await api.publish("chatty", query="?inference_log=on")
    await api.settle()
    api.manager.inference_log_max_rows_per_minute = 3
    ref = api.manager.ref(api.store.find_model("alice", "chatty"))
    _, model = await api.call("GET", "api/models/alice/chatty")
    batch = {
        "version": model["current_version"],
        "requests": [
            {"time": 1.0, "status": 200, "ms": 1, "inputs": [[1], [2]], "outputs": [0, 0]}
        ],
    }
    headers = {"Authorization": f"token {api.deployer.log_token(ref)}"}
    status, body = await api.call(
        "POST", "api/models/alice/chatty/inference-log", token=None, body=batch, headers=headers
    )
    assert status == 201 and body == {"rows": 2}
    status, body = await api.call(
        "POST", "api/models/alice/chatty/inference-log", token=None, body=batch, headers=headers
    )
    assert status == 429 and "inference_log_max_rows_per_minute" in body["error"]
    # the bundle token, a hub token or another model's log token write nothing
    for token in (api.deployer.bundle_token(ref), "alice-token"):
        status, _ = await api.call(
            "POST",
            "api/models/alice/chatty/inference-log",
            token=None,
            body=batch,
            headers={"Authorization": f"token {token}"},
        )
        assert status == 401


async def test_an_alias_is_a_unit_of_its_own_that_shares_the_models_access(api):
    _, v1 = await api.publish("iris", payload=b"one")
    await api.settle()
    status, v2 = await api.publish("iris", payload=b"two", query="?alias=staging")
    assert status == 202
    await api.settle()
    deploys = [c for c in api.deployer.calls if c[0] == "deploy"]
    assert deploys == [
        ("deploy", "alice/iris", v1["version"], 1),
        ("deploy", "alice/iris@staging", v2["version"], 1),
    ]
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["current_version"] == v1["version"]
    assert [(a["name"], a["version"], a["url"]) for a in model["aliases"]] == [
        ("production", v1["version"], "http://hub.test/models/alice/iris/"),
        ("staging", v2["version"], "http://hub.test/models/alice/iris@staging/"),
    ]
    # who may call it reaches every unit
    await api.call("PUT", "api/models/alice/iris/sharing", body={"users": ["bob"]})
    units = {ref.unit: access["users"] for ref, access in api.deployer.access.items()}
    assert units == {"alice/iris": ["alice", "bob"], "alice/iris@staging": ["alice", "bob"]}
    # promoting staging is the default alias's move, to staging's version
    status, moved = await api.call(
        "PUT", "api/models/alice/iris/aliases/production", body={"version": "staging"}
    )
    assert status == 202 and moved["version"] == v2["version"]
    await api.settle()
    status, alias = await api.call("GET", "api/models/alice/iris/aliases/production")
    assert status == 200 and alias["version"] == v2["version"]
    # the same move again changes nothing
    status, same = await api.call(
        "PUT", "api/models/alice/iris/aliases/production", body={"version": v2["version"]}
    )
    assert status == 200 and same["event_id"] is None
    status, _ = await api.call("DELETE", "api/models/alice/iris")
    assert status == 204
    deletes = [c for c in api.deployer.calls if c[0] == "delete"]
    assert deletes == [("delete", "alice/iris@staging"), ("delete", "alice/iris")]


async def test_an_alias_needs_a_production_version_and_a_valid_name(api):
    status, body = await api.publish("fresh", query="?alias=staging")
    assert status == 400 and "publish its first version without an alias" in body["error"]
    status, _ = await api.call("GET", "api/models/alice/fresh")
    assert status == 404  # refused before anything was kept
    _, v1 = await api.publish("iris")
    await api.settle()
    for bad in ("Staging", "-x", "x-", "a" * 33, "sta_ging"):
        status, body = await api.call(
            "PUT", f"api/models/alice/iris/aliases/{bad}", body={"version": v1["version"]}
        )
        assert status == 400 and body["detail"] == {"field": "alias"}, (bad, body)
    status, body = await api.call("PUT", "api/models/alice/iris/aliases/qa", body={})
    assert status == 400 and body["detail"] == {"field": "version"}
    status, body = await api.call("DELETE", "api/models/alice/iris/aliases/production")
    assert status == 400 and "default alias" in body["error"]


async def test_a_version_is_named_by_its_id_a_start_of_it_or_an_alias(api):
    _, v1 = await api.publish("iris", payload=b"one")
    await api.settle()
    _, v2 = await api.publish("iris", payload=b"two")
    await api.settle()
    model = api.store.find_model("alice", "iris")
    digest = v1["version"]
    assert api.manager.resolve_version(model, digest[:15]).id == digest
    assert api.manager.resolve_version(model, digest[7:20]).id == digest
    assert api.manager.resolve_version(model, "previous").id == digest
    assert api.manager.resolve_version(model, "production").id == v2["version"]
    status, body = await api.call(
        "PUT", "api/models/alice/iris/aliases/qa", body={"version": "sha256:0"}
    )
    assert status == 404
    assert "versions: sha256:" in body["error"] and "aliases: production" in body["error"]


async def test_aliases_per_model_are_bounded(api):
    _, v1 = await api.publish("iris")
    await api.settle()
    api.manager.max_aliases = 2
    for name in ("a", "b"):
        status, _ = await api.call(
            "PUT", f"api/models/alice/iris/aliases/{name}", body={"version": v1["version"]}
        )
        assert status == 202
    status, body = await api.call(
        "PUT", "api/models/alice/iris/aliases/c", body={"version": v1["version"]}
    )
    assert status == 409 and "max_aliases_per_model" in body["error"]
    # moving one that exists is no new alias
    await api.settle()
    status, _ = await api.call("PUT", "api/models/alice/iris/aliases/a", body={"version": "b"})
    assert status == 200


async def test_a_restarted_publisher_hands_every_alias_to_its_deployer(api, tmp_path):
    _, v1 = await api.publish("iris", payload=b"one")
    await api.settle()
    await api.publish("iris", payload=b"two", query="?alias=staging")
    await api.settle()
    async with Api.running(tmp_path) as again:
        assert ("adopt", 2) in again.deployer.calls
        units = {ref.unit for ref in again.deployer.serving}
        assert units == {"alice/iris", "alice/iris@staging"}


async def test_an_unknown_alias_url_names_the_aliases_there_are(api):
    await api.publish("iris")
    await api.settle()
    status, body = await api.call("GET", "/models/alice/iris@nope/v1/metadata")
    assert status == 404 and "no alias 'nope' (its aliases: production)" in body["error"]


async def test_a_canary_starts_as_its_own_unit_then_splits_and_ends_with_its_unit(api):
    await api.publish("iris", payload=b"one")
    await api.settle()
    await api.publish("iris", payload=b"two", query="?alias=staging")
    await api.settle()
    _, v2 = await api.call("GET", "api/models/alice/iris/aliases/staging")
    status, started = await api.call(
        "PUT", "api/models/alice/iris/canary", body={"version": "staging", "percent": 20}
    )
    assert status == 202 and started["version"] == v2["version"]
    await api.settle()
    assert api.deployer.calls[-2:] == [
        ("deploy", "alice/iris@canary", v2["version"], 1),
        ("split", "alice/iris", 20.0),
    ]
    status, canary = await api.call("GET", "api/models/alice/iris/canary", token="bob-token")
    assert status == 403  # not shared with bob
    status, canary = await api.call("GET", "api/models/alice/iris/canary")
    assert status == 200 and (canary["version"], canary["percent"]) == (v2["version"], 20.0)
    assert canary["url"] == "http://hub.test/models/alice/iris@canary/"
    assert canary["stats"]["canary"]["requests"] == 0
    # the same version again: only the share changes, no processes start
    status, changed = await api.call(
        "PUT", "api/models/alice/iris/canary", body={"version": v2["version"], "percent": 35}
    )
    assert status == 200 and changed["event_id"] is None
    assert api.deployer.calls[-1] == ("split", "alice/iris", 35.0)
    status, _ = await api.call("POST", "api/models/alice/iris/canary/promote")
    assert status == 202
    await api.settle()
    assert api.deployer.calls[-3:] == [
        ("deploy", "alice/iris", v2["version"], 1),
        ("unsplit", "alice/iris"),
        ("delete", "alice/iris@canary"),
    ]
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["current_version"] == v2["version"] and model["canary"] is None
    assert [a["name"] for a in model["aliases"]] == ["production", "staging"]
    status, body = await api.call("DELETE", "api/models/alice/iris/canary")
    assert status == 404 and "no canary" in body["error"]
    # a canary of what production serves is no canary
    status, body = await api.call(
        "PUT", "api/models/alice/iris/canary", body={"version": "staging", "percent": 20}
    )
    assert status == 400 and "the version production serves" in body["error"]


async def test_a_restarted_publisher_splits_a_running_canary_again(api, tmp_path):
    await api.publish("iris", payload=b"one")
    await api.settle()
    _, v2 = await api.publish("iris", payload=b"two", query="?alias=staging")
    await api.settle()
    await api.call("PUT", "api/models/alice/iris/canary", body={"version": "staging", "percent": 5})
    await api.settle()
    async with Api.running(tmp_path) as again:
        assert ("split", "alice/iris", 5.0) in again.deployer.calls
        assert {ref.unit for ref in again.deployer.serving} == {
            "alice/iris",
            "alice/iris@staging",
            "alice/iris@canary",
        }


async def test_the_canary_check_aborts_a_failing_canary_saying_why(api):
    await api.publish("iris", payload=b"one")
    await api.settle()
    await api.publish("iris", payload=b"two", query="?alias=staging")
    await api.settle()
    await api.call(
        "PUT", "api/models/alice/iris/canary", body={"version": "staging", "percent": 50}
    )
    await api.settle()

    def failing(model):  # what the front would count of a canary refusing every request
        bad = {"requests": 40, "errors": 40, "error_rate": 1.0, "p50_ms": 1.0, "p95_ms": 1.0}
        good = {"requests": 40, "errors": 0, "error_rate": 0.0, "p50_ms": 1.0, "p95_ms": 1.0}
        return {"stable": good, "canary": bad}

    api.deployer.front.stats = failing
    api.manager.canary_check.interval = 0.01
    watch = asyncio.ensure_future(api.manager.watch_canaries())
    try:
        for _ in range(200):
            if api.store.find_model("alice", "iris").canary_percent is None:
                break
            await asyncio.sleep(0.01)
    finally:
        watch.cancel()
    _, history = await api.call("GET", "api/models/alice/iris/history")
    (ended,) = [c for c in history["changes"] if c["step"] == "alias_deleted"]
    assert ended["actor"] is None and ended["alias"] == "canary"
    assert ended["message"].startswith("canary aborted by mlhub: its error rate was 100%")
    assert ("delete", "alice/iris@canary") in api.deployer.calls


async def test_a_shadow_raises_productions_sample_and_gets_its_share_of_the_requests(api):
    """Production samples the shadow's share (its processes restarted with it), the shadow's
    own processes sample nothing; of what production sends, the inference log keeps its own
    share and the shadow gets its share of the answered requests, never the alias's or the
    refused ones; stopping it puts production's sample back."""
    await api.publish("iris", payload=b"one", query="?inference_log=0.25")
    await api.settle()
    await api.publish("iris", payload=b"two", query="?alias=staging")
    await api.settle()
    offered = []
    api.manager.shadower.offer = offered.append  # the queue itself: tests/unit/test_shadow.py
    status, started = await api.call(
        "PUT", "api/models/alice/iris/shadow", body={"version": "staging", "percent": 100}
    )
    assert status == 202
    await api.settle()
    ref = api.manager.ref(api.store.find_model("alice", "iris"))
    samples = {unit.unit: s.inference_log for unit, s in api.deployer.serving.items()}
    assert samples["alice/iris@shadow"] is None and samples["alice/iris"] == 1.0
    assert samples["alice/iris@staging"] == 0.25  # only production's requests are shadowed
    _, model = await api.call("GET", "api/models/alice/iris")
    assert model["shadow"] == {"version": started["version"], "percent": 100.0}
    assert model["inference_log"] == 0.25  # the owner's setting is unchanged
    # the shadow key is in the access list while the shadow runs
    shadow_hash = hash_key(api.manager.bundle_tokens.shadow_key(ref))
    assert shadow_hash in api.deployer.access[ref]["key_hashes"]

    answered = {"time": 1.0, "status": 200, "ms": 1, "inputs": [[1]], "outputs": [0]}
    refused = {"time": 1.0, "status": 400, "ms": 1, "inputs": [[1]], "error": "no"}
    batch = {"version": model["current_version"], "requests": [answered] * 400 + [refused]}
    headers = {"Authorization": f"token {api.deployer.log_token(ref)}"}
    status, body = await api.call(
        "POST", "api/models/alice/iris/inference-log", token=None, body=batch, headers=headers
    )
    assert status == 201 and 50 <= body["rows"] <= 150  # a quarter of 401, kept
    assert len(offered) == 400  # every answered request, none refused
    assert {job.shadow_version for job in offered} == {started["version"]}
    status, _ = await api.call(
        "POST",
        "api/models/alice/iris/inference-log?alias=staging",
        token=None,
        body=batch,
        headers=headers,
    )
    assert status == 201 and len(offered) == 400  # the alias's requests are not shadowed

    status, _ = await api.call("DELETE", "api/models/alice/iris/shadow")
    assert status == 204
    await api.settle()
    assert api.deployer.serving[ref].inference_log == 0.25
    assert shadow_hash not in api.deployer.access[ref]["key_hashes"]
    assert ("delete", "alice/iris@shadow") in api.deployer.calls


async def test_a_new_share_of_a_running_shadow_restarts_production_only(api):
    await api.publish("iris", payload=b"one", query="?inference_log=0.25")
    await api.settle()
    await api.publish("iris", payload=b"two", query="?alias=staging")
    await api.settle()
    await api.call(
        "PUT", "api/models/alice/iris/shadow", body={"version": "staging", "percent": 100}
    )
    await api.settle()
    before = len(api.deployer.calls)
    status, _ = await api.call(
        "PUT", "api/models/alice/iris/shadow", body={"version": "staging", "percent": 50}
    )
    assert status == 202
    await api.settle()
    deploys = [c[1] for c in api.deployer.calls[before:] if c[0] == "deploy"]
    assert deploys == ["alice/iris"]  # its sample goes to 50%; the shadow runs on as it was
    ref = api.manager.ref(api.store.find_model("alice", "iris"))
    assert api.deployer.serving[ref].inference_log == 0.5
    _, history = await api.call("GET", "api/models/alice/iris/history")
    assert "now at 50%" in history["changes"][-1]["message"]
