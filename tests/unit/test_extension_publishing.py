"""Publishing from a notebook against a stand-in publisher: ``mlhub.publish``, the panel, and
the server extension's ``/mlhub/api`` routes.

``StandInPublisher`` stands in for the mlhub publisher: a real tornado server on 127.0.0.1, in
its own thread, that speaks the publisher REST contract of docs/internals.md (the calls the
notebook side makes) and really unpacks each uploaded bundle. Its behaviour is switched per test
(a failing deployment, a rejected upload, a stalled one), like jupyterhub's ``BadSpawner``. The
real publisher is exercised by the end-to-end tests.

The server-extension tests use pytest-jupyter's ``jp_fetch``. Its fixtures are taken into this
module only: registering pytest-jupyter as a plugin would also install its event-loop hooks
for every async test of the run. The tests here are synchronous and drive its loop directly.
"""

import asyncio
import gzip
import html
import io
import itertools
import json
import re
import socket
import tarfile
import tempfile
import threading

import numpy as np
import pandas as pd
import pytest
from pytest_jupyter import jupyter_server as _jupyter_server_fixtures
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tornado import httpserver, netutil, web

from mlhub import errors
from mlhub.bundle import bundle_digest, pack, save_bundle, unpack
from mlhub.errors import PublisherUnreachable
from mlhub.extension import client
from mlhub.extension.errors import NotConfigured
from mlhub.extension.progress import STEPS
from mlhub.extension.widget import NO_EXAMPLE, NO_VALIDATION, publish_panel

globals().update(
    (name, obj)
    for name, obj in vars(_jupyter_server_fixtures).items()
    if isinstance(obj, type(_jupyter_server_fixtures.jp_fetch))
)

USER = "alice"
TOKEN = "hub-token-of-alice"
PUBLIC = "http://hub.example/"
PREFIX = "/services/mlhub-publisher"


# ------------------------------------------------------------------ the stand-in publisher


class StandInPublisher:
    """Stands in for the publisher (see the module docstring). Switches, set by tests:

    ``fail_with``: the deployment ends in a ``failed`` event with this message;
    ``reject``: ``(status, body)`` answered to every upload (a JSON dict, or text);
    ``stall``: the deployment never gets past ``starting``;
    ``live``: every upload is a version that is already live (HTTP 200, no events).
    """

    def __init__(self):
        self.models, self.keys, self.events, self.uploads = {}, {}, [], []
        self.queries = []  # the query arguments of each upload
        self.pending = {}  # model name -> batches of events released one batch per poll
        self.seen_auth = []
        self.fail_with = self.reject = None
        self.stall = self.live = False
        self.max_upload_bytes = 100_000_000  # what its health check reports
        self._ids = itertools.count(1)

    # --- contract objects

    def model_view(self, name):
        model = self.models[name]
        url = f"{PUBLIC}models/{USER}/{name}/"
        return {**model, "owner": USER, "name": name, "url": url, "predict_url": url + "v1/predict"}

    def event(self, name, version, step, message="", level="info"):
        ev = {"id": next(self._ids), "time": "2026-01-01T00:00:00Z", "version": version}
        self.events.append((name, {**ev, "step": step, "level": level, "message": message}))
        return ev["id"]

    def receive(self, name, body):
        """A bundle upload: unpack it like the publisher does, then plan its events."""
        if self.reject is not None:
            return self.reject
        with tempfile.TemporaryDirectory() as tmp:
            try:
                manifest = unpack(io.BytesIO(body), tmp)
            except errors.InvalidBundle as exc:
                return 400, exc.to_dict()
            version = bundle_digest(tmp)
        self.uploads.append(manifest)
        model = self.models.setdefault(name, {"status": "deploying", "versions": []})
        if self.live:
            model.update(status="ready", current_version=version)
            return 200, {"model": self.model_view(name), "version": version}
        model["versions"].append({"id": version, "flavor": manifest["flavor"]})
        model["status"] = "deploying"
        first = self.event(name, version, "received", "bundle received")
        end = [("failed", self.fail_with)] if self.fail_with else []
        end = end or [(s, s) for s in ("ready", "switched", "drained", "done")]
        self.pending[name] = [
            [("unpacked", "unpacked"), ("starting", "starting 1 worker")],
            [] if self.stall else end,
        ]
        return 202, {"model": self.model_view(name), "version": version, "event_id": first}

    def poll(self, name, since):
        batches = self.pending.get(name)
        if batches:
            version = self.models[name]["versions"][-1]["id"]
            for step, message in batches.pop(0):
                self.event(name, version, step, message, "error" if step == "failed" else "info")
                if step == "done":
                    self.models[name].update(status="ready", current_version=version)
                elif step == "failed":
                    self.models[name]["status"] = "failed"
        return [e for n, e in self.events if n == name and e["id"] > since]

    # --- the HTTP server

    def app(self):
        standin = self

        class Handler(web.RequestHandler):
            def prepare(self):
                auth = self.request.headers.get("Authorization", "")
                standin.seen_auth.append(auth)
                if not self.request.path.endswith("/health") and auth != f"token {TOKEN}":
                    self.reply(401, errors.Unauthorized("no valid token").to_dict())

            def reply(self, status, body):
                self.set_status(status)
                if isinstance(body, dict):
                    self.set_header("Content-Type", "application/json")
                    body = json.dumps(body)
                self.finish(body)

            def known(self, name):
                if name not in standin.models:
                    self.reply(404, errors.NotFound(f"no model {USER}/{name}").to_dict())
                    return False
                return True

        class Health(Handler):
            def get(self):
                health = {"max_upload_bytes": standin.max_upload_bytes}
                self.reply(200, {"status": "ok", "version": "stand-in", **health})

        class WhoAmI(Handler):
            def get(self):
                self.reply(200, {"name": USER, "kind": "user", "admin": False})

        class Models(Handler):
            def get(self):
                self.reply(200, {"models": [standin.model_view(n) for n in standin.models]})

        class Model(Handler):
            def get(self, user, name):
                if self.known(name):
                    self.reply(200, standin.model_view(name))

            def delete(self, user, name):
                if self.known(name):
                    del standin.models[name]
                    self.set_status(204)
                    self.finish()

        class Versions(Handler):
            def post(self, user, name):
                if self.request.headers.get("Content-Type") != "application/gzip":
                    return self.reply(415, {"error": "send application/gzip", "code": "x"})
                standin.queries.append(
                    {k: self.get_query_argument(k) for k in self.request.arguments}
                )
                self.reply(*standin.receive(name, self.request.body))

        class Events(Handler):
            def get(self, user, name):
                if self.known(name):
                    since = int(self.get_query_argument("since", "0"))
                    self.reply(200, {"events": standin.poll(name, since)})

        class Logs(Handler):
            def get(self, user, name):
                self.set_header("Content-Type", "text/plain; charset=utf-8")
                self.finish(f"last {self.get_query_argument('tail')} lines of {name}\n")

        class Keys(Handler):
            def get(self, user, name):
                keys = standin.keys.get(name, [])
                self.reply(200, {"keys": [{"id": k["id"], "description": ""} for k in keys]})

            def post(self, user, name):
                if self.known(name):
                    key = {"id": f"k{len(standin.keys.get(name, []))}", "key": "mlhk_" + "s" * 32}
                    key["description"] = json.loads(self.request.body)["description"]
                    standin.keys.setdefault(name, []).append(key)
                    self.reply(201, key)

        class Key(Handler):
            def delete(self, user, name, key_id):
                standin.keys[name] = [k for k in standin.keys.get(name, []) if k["id"] != key_id]
                self.set_status(204)
                self.finish()

        model = PREFIX + r"/api/models/(?P<user>[^/]+)/(?P<name>[^/]+)"
        return web.Application(
            [
                (PREFIX + r"/api/health", Health),
                (PREFIX + r"/api/user", WhoAmI),
                (PREFIX + r"/api/models", Models),
                (model, Model),
                (model + "/versions", Versions),
                (model + "/events", Events),
                (model + "/logs", Logs),
                (model + "/keys", Keys),
                (model + r"/keys/(?P<key_id>[^/]+)", Key),
            ]
        )

    def __enter__(self):
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}{PREFIX}/"
        self.loop = asyncio.new_event_loop()

        async def serve():
            httpserver.HTTPServer(self.app()).add_sockets(sockets)

        self.loop.run_until_complete(serve())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def standin(monkeypatch):
    """The stand-in publisher, and the environment the hub gives a kernel pointing at it."""
    with StandInPublisher() as publisher:
        monkeypatch.setenv("MLHUB_PUBLISHER_URL", publisher.url)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
        monkeypatch.setenv("JUPYTERHUB_USER", USER)
        monkeypatch.setenv("MLHUB_PUBLIC_URL", PUBLIC)
        monkeypatch.setattr(client, "POLL_INTERVAL", 0.01)
        yield publisher


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{PREFIX}/"


@pytest.fixture(scope="module")
def trained():
    X, y = make_classification(80, n_features=3, n_informative=2, n_redundant=0, random_state=0)
    X = pd.DataFrame(X, columns=["temp", "pressure", "speed"])
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X


class Recorder:
    """A progress callback that remembers what it was told."""

    def __init__(self):
        self.calls = []

    def __call__(self, step, fraction, message):
        self.calls.append((step, fraction, message))

    @property
    def steps(self):
        return [step for step, _, _ in self.calls]


def in_order(steps):
    """The distinct steps in the order they first appeared."""
    return list(dict.fromkeys(steps))


# ------------------------------------------------------------------ mlhub.publish from code


def test_publish_goes_through_each_step_and_returns_endpoint_key_and_snippets(standin, trained):
    model, X = trained
    progress = Recorder()
    result = client.publish(model, "defect-lr", X.head(3), progress=progress)

    assert in_order(progress.steps) == list(STEPS)
    assert progress.calls[-1][:2] == ("ready", 1.0)
    upload = [f for s, f, _ in progress.calls if s == "upload"]
    assert upload == sorted(upload) and upload[-1] == 1.0

    (manifest,) = standin.uploads
    assert manifest["name"] == "defect-lr" and manifest["flavor"] == "sklearn"
    assert [c["name"] for c in manifest["signature"]["inputs"]] == ["temp", "pressure", "speed"]
    assert any(r.startswith("scikit-learn==") for r in manifest["requirements"])

    url = f"{PUBLIC}models/{USER}/defect-lr/"
    assert (result.url, result.predict_url) == (url, url + "v1/predict")
    assert result.status == "ready" and result.owner == USER
    assert result.version == standin.models["defect-lr"]["current_version"]
    assert result.version.startswith("sha256:")
    assert result.api_key == "mlhk_" + "s" * 32  # the first publish mints a key...
    assert standin.keys["defect-lr"][0]["description"] == client.KEY_DESCRIPTION
    assert result.api_key in result.curl and result.predict_url in result.curl
    assert result.api_key in result.python and json.dumps(manifest["example"][0]) in result.curl
    assert result.api_key in result._repr_html_()
    assert set(standin.seen_auth) == {f"token {TOKEN}"}


def test_publish_sends_resources_as_publish_options(standin, trained):
    model, X = trained
    resources = {"cpu": "500m", "memory_limit": "1Gi"}
    client.publish(model, "defect-lr", X.head(2), resources=resources, progress=Recorder())
    assert standin.queries == [{"cpu": "500m", "memory_limit": "1Gi"}]
    with pytest.raises(errors.MlhubError, match="resources is a dict of cpu, memory"):
        client.publish(model, "defect-lr", X.head(2), resources={"gpu": 1}, progress=Recorder())


def test_publishing_again_mints_no_key_and_says_how_to(standin, trained):
    model, X = trained
    client.publish(model, "defect-lr", X.head(2), progress=Recorder())
    again = client.publish(model, "defect-lr", X.head(3), progress=Recorder())
    assert again.api_key is None and len(standin.keys["defect-lr"]) == 1
    assert "mlhub.api_key('defect-lr')" in again.curl and "MLHUB_API_KEY" in again.python
    assert len(standin.models["defect-lr"]["versions"]) == 2


def test_publish_without_waiting_returns_once_uploaded(standin, trained):
    model, X = trained
    progress = Recorder()
    result = client.publish(model, "defect-lr", X.head(2), wait=False, progress=progress)
    assert result.status == "deploying"
    assert in_order(progress.steps) == ["bundle", "upload"]
    assert not any(n == "defect-lr" and e["step"] == "done" for n, e in standin.events)


def test_publishing_a_version_that_is_already_live_ends_at_once(standin, trained):
    standin.live = True
    progress = Recorder()
    result = client.publish(trained[0], "defect-lr", trained[1].head(2), progress=progress)
    assert result.status == "ready" and result.version.startswith("sha256:")
    assert progress.calls[-1] == ("ready", 1.0, "this version is already live")
    assert standin.events == []


def test_text_progress_bar_by_default(standin, trained, capsys):
    model, X = trained
    client.publish(model, "defect-lr", X.head(2))
    out = capsys.readouterr().out
    assert out.count("\r") >= 6 and out.rstrip().endswith("done")
    assert "[########################] ready" in out


def test_a_failed_deployment_raises_with_the_publishers_reason(standin, trained):
    standin.fail_with = "uWSGI exited: ModuleNotFoundError: No module named 'foo'"
    progress = Recorder()
    with pytest.raises(errors.DeployError) as err:
        client.publish(*trained[:1], "defect-lr", trained[1].head(2), progress=progress)
    assert err.value.message == standin.fail_with
    assert err.value.detail["event"]["step"] == "failed"
    assert "ready" not in progress.steps


def test_a_stalled_deployment_times_out_clearly(standin, trained):
    standin.stall = True
    model, X = trained
    with pytest.raises(errors.NotReady, match="is not live after 0.2 s"):
        client.publish(model, "defect-lr", X.head(2), timeout=0.2, progress=Recorder())


@pytest.mark.parametrize(
    "status, cls",
    [(413, errors.PayloadTooLarge), (403, errors.Forbidden), (409, errors.Conflict)],
)
def test_publisher_4xx_becomes_the_typed_error_with_its_message(standin, trained, status, cls):
    body = {"error": f"refused with {status}: do this instead", "code": cls.error, "detail": {}}
    standin.reject = (status, body)
    with pytest.raises(cls) as err:
        client.publish(trained[0], "defect-lr", trained[1].head(2), progress=Recorder())
    assert err.value.message == body["error"] and err.value.status == status


def test_unknown_error_code_keeps_status_and_code(standin, trained):
    standin.reject = (422, {"error": "quota exceeded: delete a model", "code": "quota"})
    with pytest.raises(errors.MlhubError) as err:
        client.publish(trained[0], "defect-lr", trained[1].head(2), progress=Recorder())
    assert (err.value.status, err.value.error) == (422, "quota")
    assert err.value.to_dict()["error"] == "quota exceeded: delete a model"


def test_a_proxy_error_page_means_the_publisher_is_unreachable(standin, trained):
    standin.reject = (503, "<html>Service Unavailable</html>")
    with pytest.raises(PublisherUnreachable, match="unreachable.*HTTP 503"):
        client.publish(trained[0], "defect-lr", trained[1].head(2), progress=Recorder())


def test_a_wrong_token_is_unauthorized(standin, trained, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "stale")
    with pytest.raises(errors.Unauthorized):
        client.publish(trained[0], "defect-lr", trained[1].head(2), progress=Recorder())


def test_outside_mlhub_the_error_says_what_is_missing(monkeypatch, trained):
    for var in ("MLHUB_PUBLISHER_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", USER)
    with pytest.raises(NotConfigured) as err:
        client.publish(trained[0], "defect-lr", trained[1].head(2), progress=Recorder())
    assert err.value.message.startswith(
        "not running inside mlhub: MLHUB_PUBLISHER_URL, JUPYTERHUB_API_TOKEN are not set;"
    )
    assert err.value.detail == {"missing": ["MLHUB_PUBLISHER_URL", "JUPYTERHUB_API_TOKEN"]}


def test_an_unreachable_publisher_names_its_url(monkeypatch, trained):
    url = closed_port_url()
    monkeypatch.setenv("MLHUB_PUBLISHER_URL", url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    monkeypatch.setenv("JUPYTERHUB_USER", USER)
    with pytest.raises(PublisherUnreachable) as err:
        client.publish(trained[0], "defect-lr", trained[1].head(2), progress=Recorder())
    assert url in err.value.message and err.value.status == 502


def test_bad_input_fails_before_anything_is_uploaded(standin, trained):
    model, X = trained
    with pytest.raises(errors.InvalidName):
        client.publish(model, "Defect_LR", X.head(2), progress=Recorder())
    with pytest.raises(errors.InvalidBundle, match="is not a model"):
        client.publish(X, "defect-lr", progress=Recorder())
    with pytest.raises(errors.InvalidBundle, match=r"missing \['speed'\]"):
        client.publish(model, "defect-lr", X.head(2).drop(columns="speed"), progress=Recorder())
    assert standin.uploads == [] and standin.seen_auth == []


def test_api_key_mints_a_key_for_a_published_model(standin, trained):
    import mlhub

    client.publish(trained[0], "defect-lr", trained[1].head(2), progress=Recorder())
    assert mlhub.api_key("defect-lr", "for the batch job") == "mlhk_" + "s" * 32
    assert standin.keys["defect-lr"][-1]["description"] == "for the batch job"
    with pytest.raises(errors.NotFound):
        client.api_key("never-published")


# ------------------------------------------------------------------ the panel


CLASSES = {
    "model_select": "mlhub-model-select",
    "refresh_button": "mlhub-refresh",
    "name_text": "mlhub-model-name",
    "name_message": "mlhub-name-message",
    "example_select": "mlhub-example-select",
    "validate_select": "mlhub-validate-select",
    "publish_button": "mlhub-publish-button",
    "progress": "mlhub-progress",
    "status": "mlhub-status",
    "endpoint": "mlhub-endpoint",
    "snippets": "mlhub-snippets",
    "error": "mlhub-error",
}


def status_steps(panel):
    """Record the step names the panel's status line shows while a publish runs."""
    seen = []
    panel.status.observe(lambda change: seen.append(change["new"]), names="value")
    return seen


def test_panel_offers_models_names_and_examples(standin, trained):
    model, X = trained
    notebook = {"defect_model": model, "X_test": X.head(5), "y": np.zeros(5), "text": "hi"}
    panel = publish_panel(notebook)
    assert "mlhub-publish-panel" in panel._dom_classes
    for attr, css in CLASSES.items():
        assert css in getattr(panel, attr)._dom_classes
    assert panel.model_select.options == ("defect_model",)
    assert panel.name_text.value == "defect-model"
    assert panel.example_select.options == (NO_EXAMPLE, "X_test")
    assert panel.example_select.value == "X_test"  # its columns are the training columns
    assert f"{PUBLIC}models/{USER}/defect-model/" in panel.name_message.value
    assert not panel.publish_button.disabled


def test_panel_checks_with_a_held_out_table_it_finds(standin, trained):
    """A table named like held-out rows, with the model's columns, is offered and chosen as the
    rows the served model must answer as this one does; the publish records them."""
    model, X = trained
    notebook = {"defect_model": model, "X_train": X.head(5), "X_test": X.head(20)}
    panel = publish_panel(notebook)
    assert panel.validate_select.options == (NO_VALIDATION, "X_train", "X_test")
    assert panel.validate_select.value == "X_test"
    panel.publish_button.click()
    panel.wait(30)
    assert standin.uploads[-1]["parity"]["rows"] == 5 + 20
    panel.validate_select.value = NO_VALIDATION
    panel.publish_button.click()
    panel.wait(30)
    assert standin.uploads[-1]["parity"]["rows"] == 5  # the example's rows only


def test_the_saved_notebook_keeps_the_endpoint_as_html_without_the_key(standin, trained):
    """A saved panel shows "Loading widget..." once no kernel runs it: publish_panel also
    writes the result into a plain HTML output (an IPython display handle) that the notebook
    keeps. The key shown once in the panel is not in it."""

    class Handle:
        """Stands in for IPython's DisplayHandle (no kernel in this unit test)."""

        def update(self, obj):
            self.html = obj.data

    model, X = trained
    panel = publish_panel({"defect_model": model, "X_test": X.head(5)})
    panel.record = Handle()
    panel.publish_button.click()
    panel.wait(30)
    saved = html.unescape(panel.record.html)
    url = f"{PUBLIC}models/{USER}/defect-model/"
    assert url in saved and "mlhk_" + "s" * 32 not in saved  # the stand-in's minted key
    assert "Bearer $MLHUB_API_KEY" in saved and "os.environ['MLHUB_API_KEY']" in saved
    assert "not saved in the notebook" in saved


def test_panel_click_publishes_with_progress_then_shows_endpoint_and_snippets(standin, trained):
    model, X = trained
    panel = publish_panel({"defect_model": model, "X_test": X.head(5)})
    seen = status_steps(panel)
    panel.publish_button.click()
    assert panel.publish_button.disabled  # while it runs
    panel.wait(30)

    steps = [s.split(">", 1)[1].split(":", 1)[0] for s in seen if ":" in s]
    assert in_order(steps) == list(STEPS)
    assert panel.progress.value == 1.0 and panel.progress.bar_style == "success"
    url = f"{PUBLIC}models/{USER}/defect-model/"
    assert url in panel.endpoint.value and "mlhk_" in panel.endpoint.value
    assert panel.endpoint.layout.display is None and panel.error.layout.display == "none"
    assert '<pre class="mlhub-curl">curl -sS -X POST ' + url + "v1/predict" in panel.snippets.value
    assert '<pre class="mlhub-python">import requests' in panel.snippets.value
    assert '<pre class="mlhub-r">library(curl)' in panel.snippets.value
    assert panel.snippets.value.count("mlhk_" + "s" * 32) == 3  # curl, Python and R
    labels = re.findall(r'<div class="mlhub-snippet"><b>(\w+)</b> <button', panel.snippets.value)
    assert labels == ["curl", "Python", "R"]  # each labelled, each with a copy button
    assert not panel.publish_button.disabled
    assert standin.uploads[0]["signature"]["kind"] == "dataframe"


def test_panel_shows_a_publish_error_in_red_and_can_retry(standin, trained):
    standin.fail_with = "the model did not load: ModuleNotFoundError: foo"
    panel = publish_panel({"defect_model": trained[0]})
    panel.publish_button.click()
    panel.wait(30)
    assert panel.error.layout.display is None and panel.endpoint.layout.display == "none"
    assert "ModuleNotFoundError: foo" in panel.error.value and "color:#b00020" in panel.error.value
    assert panel.progress.bar_style == "danger"
    assert not panel.publish_button.disabled

    standin.fail_with = None
    panel.publish_button.click()
    panel.wait(30)
    assert panel.error.layout.display == "none" and "defect-model" in panel.endpoint.value


def test_panel_reports_a_model_that_fails_on_the_example(standin, trained):
    model, X = trained
    notebook = {"defect_model": model, "wrong": X.head(3).rename(columns={"speed": "rpm"})}
    panel = publish_panel(notebook)
    panel.example_select.value = "wrong"
    panel.publish_button.click()
    panel.wait(30)
    assert "missing [&#x27;speed&#x27;], unexpected [&#x27;rpm&#x27;]" in panel.error.value
    assert standin.uploads == []


def test_panel_validates_the_name_as_you_type(standin, trained):
    panel = publish_panel({"m": trained[0]})
    panel.name_text.value = "My_Model"
    assert panel.publish_button.disabled and "DNS label" in panel.name_message.value
    panel.name_text.value = ""
    assert panel.publish_button.disabled and "type a name" in panel.name_message.value
    panel.name_text.value = "my-model"
    assert not panel.publish_button.disabled and "✓" in panel.name_message.value


def test_panel_without_models_says_so_until_refreshed(standin, trained):
    notebook = {"X": trained[1]}
    panel = publish_panel(notebook)
    assert panel.publish_button.disabled and "no models found" in panel.status.value
    notebook["clf"] = trained[0]
    panel.refresh_button.click()
    assert panel.model_select.value == "clf" and panel.name_text.value == "clf"
    assert "no models found" not in panel.status.value
    assert not panel.publish_button.disabled


def test_panel_uses_the_given_example_and_keeps_a_typed_name(standin, trained):
    model, X = trained
    notebook = {"a": model, "b": make_pipeline(LogisticRegression()).fit(X, X["temp"] > 0)}
    panel = publish_panel(notebook, example=X.head(2))
    assert panel.example_select.value == "(the example given)"
    panel.model_select.value = "b"
    assert panel.name_text.value == "b"  # follows the model while it is a suggestion
    panel.name_text.value = "mine"
    panel.model_select.value = "a"
    assert panel.name_text.value == "mine"  # a typed name stays


def test_mlhub_publish_panel_defaults_to_the_callers_namespace(trained):
    import mlhub

    globals()["notebook_model"] = trained[0]  # outside IPython: the calling module's globals
    try:
        panel = mlhub.publish_panel()
        assert "notebook_model" in panel.model_select.options
    finally:
        del globals()["notebook_model"]


# ------------------------------------------------------------------ the server extension


@pytest.fixture
def jp_server_config(standin):
    return {
        "ServerApp": {"jpserver_extensions": {"mlhub.extension": True}},
        "MlhubExtension": {
            "publisher_url": standin.url,
            "api_token": TOKEN,
            "user": USER,
            "public_url": PUBLIC,
        },
    }


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):
    """``jp_fetch`` run to completion; answers of any status are returned, not raised."""

    def fetch(*parts, **kwargs):
        return jp_asyncio_loop.run_until_complete(
            jp_fetch("mlhub", "api", *parts, raise_error=False, **kwargs)
        )

    return fetch


def upload(fetch, headers=None, **kwargs):
    """POST a bundle archive (``body`` or ``body_producer``) to the extension's
    ``models/defect-lr/versions``, as the panel does."""
    headers = {"Content-Type": "application/gzip", **(headers or {})}
    return fetch("models", "defect-lr", "versions", method="POST", headers=headers, **kwargs)


def bundle_bytes(model, X, tmp_path):
    save_bundle(model, tmp_path / "b", name="defect-lr", example=X.head(2))
    return pack(tmp_path / "b")


def tarfile_bytes():
    """A small tar.gz, for requests that must be refused before it matters what it holds."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("mlhub.yaml"), io.BytesIO(b""))
    return out.getvalue()


def test_status_says_who_and_whether_the_publisher_answers(fetch, standin):
    reply = fetch("status")
    assert reply.code == 200
    assert json.loads(reply.body) == {
        "user": USER,
        "publisher_url": standin.url,
        "public_url": PUBLIC,
        "models_url": f"{PUBLIC}models/{USER}/",
        "publisher": {
            "reachable": True,
            "status": "ok",
            "version": "stand-in",
            "max_upload_bytes": 100_000_000,
        },
    }


def test_status_reports_an_unreachable_publisher_without_failing(fetch, jp_serverapp):
    jp_serverapp.web_app.settings["mlhub"].settings.publisher_url = closed_port_url()
    body = json.loads(fetch("status").body)
    assert body["publisher"]["reachable"] is False
    assert body["publisher"]["code"] == "publisher_unreachable"


def test_upload_streams_through_and_the_publish_can_be_followed(fetch, standin, trained, tmp_path):
    model, X = trained
    body = bundle_bytes(model, X, tmp_path)
    reply = upload(fetch, body=body, params={"workers": "2"})
    assert reply.code == 202, reply.body
    answer = json.loads(reply.body)
    assert answer["version"] == bundle_digest(tmp_path / "b")
    assert standin.uploads[0]["name"] == "defect-lr"

    events = json.loads(fetch("models", "defect-lr", "events", params={"since": 0}).body)
    assert [e["step"] for e in events["events"]] == ["received", "unpacked", "starting"]
    model_reply = fetch("models", "defect-lr")
    assert model_reply.code == 200 and json.loads(model_reply.body)["name"] == "defect-lr"
    listing = json.loads(fetch("models").body)
    assert [m["name"] for m in listing["models"]] == ["defect-lr"]
    assert set(standin.seen_auth) == {f"token {TOKEN}"}  # the server's token, not the browser's


def test_upload_without_a_length_is_sent_chunked(fetch, standin, trained, tmp_path):
    model, X = trained
    body = bundle_bytes(model, X, tmp_path)

    async def produce(write):
        for i in range(0, len(body), 1000):
            await write(body[i : i + 1000])

    reply = upload(fetch, body_producer=produce)
    assert reply.code == 202, reply.body
    assert standin.uploads[0]["name"] == "defect-lr"


def test_publisher_errors_pass_through_with_status_and_body(fetch, standin, trained, tmp_path):
    missing = fetch("models", "nope")
    assert missing.code == 404
    assert json.loads(missing.body)["code"] == "not_found"

    broken = upload(fetch, body=gzip.compress(b"not a tar"))
    assert broken.code == 400 and json.loads(broken.body)["code"] == "invalid_bundle"

    standin.reject = (413, {"error": "bundle too large", "code": "payload_too_large"})
    reply = upload(fetch, body=bundle_bytes(*trained, tmp_path))
    assert reply.code == 413
    assert json.loads(reply.body) == {"error": "bundle too large", "code": "payload_too_large"}


def test_an_upload_over_the_publishers_limit_is_refused_here_before_forwarding(fetch, standin):
    standin.max_upload_bytes = 100
    reply = upload(fetch, body=b"x" * 1000)
    assert reply.code == 413
    body = json.loads(reply.body)
    assert body["code"] == "payload_too_large"
    assert "PublisherApp.max_upload_bytes" in body["error"]
    assert body["detail"] == {"limit": 100, "size": 1000}
    assert standin.uploads == []  # only its health check was asked


def test_keys_logs_and_delete_are_forwarded(fetch, standin, trained, tmp_path):
    upload(fetch, body=bundle_bytes(*trained, tmp_path))
    minted = fetch(
        "models", "defect-lr", "keys", method="POST", body=json.dumps({"description": "batch"})
    )
    assert minted.code == 201 and json.loads(minted.body)["key"].startswith("mlhk_")
    assert json.loads(fetch("models", "defect-lr", "keys").body)["keys"][0]["id"] == "k0"
    assert fetch("models", "defect-lr", "keys", "k0", method="DELETE").code == 204
    assert standin.keys["defect-lr"] == []

    logs = fetch("models", "defect-lr", "logs", params={"tail": "5"})
    assert logs.code == 200 and logs.headers["Content-Type"].startswith("text/plain")
    assert logs.body == b"last 5 lines of defect-lr\n"

    assert fetch("models", "defect-lr", method="DELETE").code == 204
    assert "defect-lr" not in standin.models


def test_invalid_names_and_methods_are_refused_here(fetch, standin):
    bad = fetch("models", "Bad_Name")
    assert bad.code == 400 and json.loads(bad.body)["code"] == "invalid_name"
    assert fetch("models", "defect-lr", "events", method="DELETE").code == 405
    assert standin.seen_auth == []


def test_unreachable_publisher_is_a_502_with_a_clear_message(fetch, jp_serverapp, tmp_path):
    url = closed_port_url()
    jp_serverapp.web_app.settings["mlhub"].settings.publisher_url = url
    reply = fetch("models", "defect-lr")
    assert reply.code == 502
    body = json.loads(reply.body)
    assert body["code"] == "publisher_unreachable" and url in body["error"]

    refused = upload(fetch, body=tarfile_bytes())
    assert refused.code == 502 and json.loads(refused.body)["code"] == "publisher_unreachable"


def test_not_configured_server_says_so(fetch, jp_serverapp):
    jp_serverapp.web_app.settings["mlhub"].settings.publisher_url = ""
    reply = fetch("models")
    assert reply.code == 503
    assert json.loads(reply.body)["error"].startswith("not running inside mlhub")


def test_routes_need_an_authenticated_user(fetch, standin):
    reply = fetch("models", headers={"Authorization": "token wrong"})
    assert reply.code == 403
    refused = upload(fetch, body=tarfile_bytes(), headers={"Authorization": "token wrong"})
    assert refused.code == 403
    assert standin.seen_auth == []
