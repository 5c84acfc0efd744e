"""The serving app in process (Flask's test client) over a bundle saved from a real model: the
unit tests of the serving runtime's routes and of the clients that speak to it."""

import hashlib
import json

from werkzeug.test import Client

from mlhub.bundle import infer_signature
from mlhub.serving.app import create_app
from mlhub.serving.auth import AccessList, Authenticator
from mlhub.serving.metrics import Metrics
from mlhub.serving.model import ServedModel
from mlhub.serving.settings import Settings

KEY = "mlhk_unit-test-key"


AUTH = {"Authorization": f"token {KEY}"}


def served_model(model, example, name="iris"):
    signature, rows = infer_signature(example)
    manifest = {
        "name": name,
        "runtime": "python",
        "flavor": "sklearn",
        "signature": signature,
        "example": rows,
        "requirements": ["scikit-learn"],
        "model_class": type(model).__name__,
    }
    return ServedModel("/bundles/x", manifest=manifest, model=model, version="sha256:abc")


class ServerClient(Client):
    """werkzeug's test client, reading each answer whole and closing it as a WSGI server does
    (the inference log records a request from its answer's ``close()``)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def make_client(served, tmp_path, request_log=None, inference_log=None, **overrides):
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"key_hashes": [hashlib.sha256(KEY.encode()).hexdigest()]}))
    settings = Settings(
        bundle="/bundles/x", access_file=str(access), owner="alice", max_body_bytes=4096
    )
    settings = Settings(**{**settings.__dict__, **overrides})
    metrics = Metrics()
    app = create_app(
        settings,
        served,
        metrics=metrics,
        authenticator=Authenticator(AccessList(settings.access_file), None, owner="alice"),
        request_log=request_log,
        inference_log=inference_log,
    )
    return ServerClient(app), metrics
