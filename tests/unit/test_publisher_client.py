"""PublisherClient and ``mlhub models``: against the real API (fake hub and deployer, as in
test_publisher_api), served from a thread because the client is synchronous."""

import argparse
import asyncio
import io
import json
import os
import threading

import pytest
from support.publisher_api import MANIFEST, PREFIX, Api

from mlhub.bundle import save_bundle
from mlhub.cli_models import StepPrinter, add_models_parser, run_models
from mlhub.errors import (
    DeployError,
    InvalidBundle,
    InvalidName,
    PayloadTooLarge,
    PublisherUnreachable,
    Unauthorized,
)
from mlhub.publisher.client import PublisherClient


@pytest.fixture
def live_api(tmp_path):
    box, ready = {}, threading.Event()

    async def serve():
        async with Api.running(tmp_path) as api:
            box["api"], box["loop"], box["stop"] = api, asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    ready.wait()
    yield box["api"]
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join()


def client_for(api, token="alice-token"):
    return PublisherClient(
        url="http://hub.test", token=token, publisher_url=api.base + PREFIX, poll_interval=0.05
    )


def write_bundle(path, name="iris", payload=b"weights"):
    (path / "model").mkdir(parents=True, exist_ok=True)
    (path / "mlhub.yaml").write_text(MANIFEST.format(name=name))
    (path / "model" / "m.pkl").write_bytes(payload)
    return path


def test_no_token_says_where_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no stored mlhub login
    monkeypatch.delenv("MLHUB_TOKEN", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    client = PublisherClient(url="http://mlhub.example:8000")
    with pytest.raises(Unauthorized) as info:
        client.list()
    assert info.value.message == (
        "no token for http://mlhub.example:8000/: run `mlhub login` (or create one at "
        "http://mlhub.example:8000/hub/token and set MLHUB_TOKEN, or pass --token)"
    )


def test_environment_defaults(monkeypatch):
    monkeypatch.setenv("MLHUB_URL", "http://mlhub.example:9000/")
    monkeypatch.delenv("MLHUB_PUBLISHER_URL", raising=False)
    monkeypatch.delenv("MLHUB_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "from-the-kernel")
    client = PublisherClient()
    assert client.publisher_url == "http://mlhub.example:9000/services/mlhub-publisher/"
    assert client.token == "from-the-kernel"


def test_unreachable_publisher_names_the_url():
    client = PublisherClient(url="http://127.0.0.1:1", token="t")
    with pytest.raises(
        PublisherUnreachable,
        match=r"cannot reach the mlhub publisher at http://127\.0\.0\.1:1/services/mlhub-publisher/",
    ):
        client.health()


def test_publish_wait_and_manage(live_api, tmp_path):
    client = client_for(live_api)
    seen = []
    model = client.publish(
        write_bundle(tmp_path / "b1"), workers=2, progress=lambda *a: seen.append(a)
    )
    assert model["status"] == "ready" and model["replicas"] == 2
    uploads = [s for s in seen if s[0] == "upload"]
    assert uploads and uploads[-1][2] == 1.0
    steps = [s[0] for s in seen if s[0] != "upload"]
    assert steps == ["received", "unpacked", "starting", "ready", "switched", "drained", "done"]
    assert [s[2] for s in seen if s[0] == "done"] == [1.0]

    v1 = model["current_version"]
    client.publish(write_bundle(tmp_path / "b2", payload=b"v2"), "iris")
    assert client.get("iris")["current_version"] != v1
    assert client.rollback("iris")["current_version"] == v1
    assert client.scale("alice/iris", 3)["replicas"] == 3
    key = client.create_key("iris", "batch")
    assert [k["id"] for k in client.list_keys("iris")] == [key["id"]]
    client.delete_key("iris", key["id"])
    assert client.logs("iris", tail=2) == "line 0\nline 1\n"
    assert [m["name"] for m in client.list()] == ["iris"]
    client.delete("iris")
    assert client.list() == []


def test_typed_errors_come_back_typed(live_api, tmp_path):
    client = client_for(live_api)
    with pytest.raises(InvalidName, match="DNS label"):
        client.publish(write_bundle(tmp_path / "b"), "Bad_Name")
    with pytest.raises(InvalidBundle, match="UnpicklingError"):
        client.publish(write_bundle(tmp_path / "c", payload=b"corrupt"), "iris")
    with pytest.raises(Unauthorized):
        client_for(live_api, token="nobody").list()


def test_oversized_bundles_are_refused_before_the_upload(live_api, tmp_path):
    client = client_for(live_api)
    with pytest.raises(PayloadTooLarge, match="above the publisher's upload limit of 20000"):
        client.publish(write_bundle(tmp_path / "b", payload=os.urandom(40_000)), "big")
    assert client.list() == []


def test_a_failed_deploy_raises_deploy_error(live_api, tmp_path):
    async def broken(model, version, bundle_dir, *, replicas, progress, serving=None):
        progress("starting", "starting")
        raise DeployError("the serving process exited with code 1 before it was ready")

    live_api.deployer.deploy = broken
    with pytest.raises(DeployError, match="exited with code 1"):
        client_for(live_api).publish(write_bundle(tmp_path / "b"))


def test_mlflow_model_directories_are_converted(live_api, tmp_path):
    import numpy as np
    from sklearn.dummy import DummyRegressor

    model = DummyRegressor().fit(np.zeros((2, 2)), [1.0, 2.0])
    save_bundle(model, tmp_path / "saved", name="x")
    mlflow = tmp_path / "mlflow-model"
    mlflow.mkdir()
    (mlflow / "model.pkl").write_bytes((tmp_path / "saved" / "model" / "model.pkl").read_bytes())
    (mlflow / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n"
        "    serialization_format: cloudpickle\n"
    )
    live_api.deployer.check = _accept
    result = client_for(live_api).publish(mlflow, "from-mlflow")
    assert result["name"] == "from-mlflow" and result["versions"][0]["flavor"] == "sklearn"


async def _accept(manifest, bundle_dir):
    return None


def parse(*argv):
    parser = argparse.ArgumentParser(prog="mlhub")
    add_models_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli(live_api, tmp_path, capsys):
    client = client_for(live_api)
    out = io.StringIO()
    args = parse("models", "publish", str(write_bundle(tmp_path / "b")), "--name", "iris")
    assert args.func is run_models
    assert run_models(args, client, out) == 0
    assert out.getvalue().startswith("alice/iris: ready at http://hub.test/models/alice/iris/")
    assert "switched" in capsys.readouterr().err

    out = io.StringIO()
    assert run_models(parse("models", "list"), client, out) == 0
    header, row = out.getvalue().splitlines()
    assert header.split() == ["MODEL", "STATUS", "VERSION", "REPLICAS", "URL"]
    assert row.split()[:2] == ["alice/iris", "ready"]

    out = io.StringIO()
    assert run_models(parse("models", "show", "iris", "--json"), client, out) == 0
    assert json.loads(out.getvalue())["owner"] == "alice"

    out = io.StringIO()
    assert run_models(parse("models", "keys", "create", "iris"), client, out) == 0
    assert out.getvalue().startswith("mlhk_")

    out = io.StringIO()
    assert run_models(parse("models", "events", "iris"), client, out) == 0
    assert "done" in out.getvalue()

    assert run_models(parse("models", "scale", "iris", "--replicas", "9"), client, out) == 1
    assert "above the limit of 4" in capsys.readouterr().err

    assert run_models(parse("models", "delete", "iris"), client, out) == 1  # no tty, no --yes
    assert "Refusing without --yes" in capsys.readouterr().err
    assert run_models(parse("models", "delete", "iris", "--yes"), client, out) == 0


def test_step_printer():
    stream = io.StringIO()
    printer = StepPrinter(stream, width=10)
    printer("upload", "0.5 of 1.0 MB", 0.5)
    printer("received", "received 1 bytes", None)
    assert stream.getvalue() == (
        "\r  upload    [#####.....] 0.5 of 1.0 MB\n  received  received 1 bytes\n"
    )


def test_cli_publish_resources_and_show_them(live_api, tmp_path, capsys):
    client = client_for(live_api)
    out = io.StringIO()
    bundle = str(write_bundle(tmp_path / "b"))
    publish = ("models", "publish", bundle, "--name", "iris")
    args = parse(*publish, "--cpu", "500m", "--memory-limit", "1Gi")
    assert run_models(args, client, out) == 0
    out = io.StringIO()
    assert run_models(parse("models", "show", "iris"), client, out) == 0
    assert "resources: requests cpu=500m; limits memory=1Gi" in out.getvalue()
    # a bad quantity: one line naming it, the model keeps its resources
    assert run_models(parse(*publish, "--memory", "2 GB"), client, out) == 1
    err = capsys.readouterr().err
    assert "memory must be a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi, got '2 GB'" in err
    assert client.get("iris")["resources"] == {
        "requests": {"cpu": "500m"},
        "limits": {"memory": "1Gi"},
    }
