"""``mlhub.publish``: from a model object in a kernel to a live, authenticated endpoint.

A publish is four steps, each reported to ``progress(step, fraction, message)``:

* ``bundle``: check the name, the model and the example, then ``save_bundle`` into a temporary
  directory (the example is run through the model, so a broken model fails here, not later);
* ``upload``: the bundle as ``tar.gz`` to the publisher, with byte progress;
* ``start`` and ``ready``: the publisher's deployment events, polled until ``done`` or ``failed``.

Everything the kernel needs comes from the environment the hub gives it (``settings``). The
result carries the endpoint, the version and copy-paste snippets; on a model's first publish a
key is minted for them and shown once.
"""

import html
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from mlhub.bundle import pack, save_bundle, validate_name
from mlhub.errors import DeployError, InvalidBundle, NotFound, NotReady
from mlhub.extension.errors import from_reply, unreachable
from mlhub.extension.namespace import find_models, is_model
from mlhub.extension.progress import EVENT_STEPS, TextProgress
from mlhub.extension.settings import MlhubExtension
from mlhub.extension.snippets import curl_snippet, python_snippet

__all__ = [
    "Publisher",
    "PublishResult",
    "api_key",
    "bundle_model",
    "find_models",
    "publish",
    "publish_panel",
]

KEY_DESCRIPTION = "minted by mlhub.publish"


@dataclass
class PublishResult:
    """What a publish produced. ``api_key`` is set only when this publish minted one."""

    name: str
    owner: str
    version: str
    status: str
    url: str
    predict_url: str
    api_key: str | None = field(default=None, repr=False)
    curl: str = field(default="", repr=False)
    python: str = field(default="", repr=False)

    def _repr_html_(self):
        esc = html.escape
        key_note = (
            f"<p><b>API key (shown once, store it now):</b> <code>{esc(self.api_key)}</code></p>"
            if self.api_key
            else ""
        )
        return (
            f"<p><b>{esc(self.name)}</b> {esc(self.status)} at "
            f'<a href="{esc(self.url)}" target="_blank">{esc(self.url)}</a> '
            f"(version <code>{esc(self.version[:19])}</code>)</p>{key_note}"
            f"<pre>{esc(self.curl)}</pre><pre>{esc(self.python)}</pre>"
        )


# ---------------------------------------------------------------- the publisher's REST API


class _Counting:
    """A file reader that reports bytes sent; ``len`` lets requests send a Content-Length."""

    def __init__(self, fh, total, report):
        self._fh, self._total, self._report = fh, total, report
        self._sent = self._reported = 0

    def __len__(self):
        return self._total

    def read(self, size=-1):
        chunk = self._fh.read(size)
        self._sent += len(chunk)
        if self._sent - self._reported >= self._total / 100 or self._sent == self._total:
            self._reported = self._sent
            self._report(self._sent, self._total)
        return chunk


class Publisher:
    """The publisher calls a notebook makes, with the kernel's hub token (docs/internals.md)."""

    poll_interval = 0.25  # first wait between event polls; doubles up to max_poll_interval
    max_poll_interval = 2.0

    def __init__(self, settings=None, session=None):
        self.settings = (settings or MlhubExtension()).require()
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"token {self.settings.api_token}"

    def _call(self, method, *parts, timeout=None, **kwargs):
        url = self.settings.api_url(*parts)
        try:
            reply = self.session.request(
                method, url, timeout=timeout or self.settings.request_timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise unreachable(self.settings.publisher_url, exc) from exc
        if reply.status_code >= 400:
            raise from_reply(url, reply.status_code, reply.content)
        return reply

    def _model_call(self, method, name, *parts, **kwargs):
        return self._call(method, "models", self.settings.user, name, *parts, **kwargs)

    def model(self, name):
        """The publisher's ``Model`` for ``name``, or None if it was never published."""
        try:
            return self._model_call("GET", name).json()
        except NotFound:
            return None

    def upload(self, name, archive, *, workers=None, progress=None):
        """Send a bundle ``tar.gz`` (a path); the reply has ``model``, ``version``, ``event_id``.

        ``progress(sent, total)`` is called as bytes go out. ``live`` in the reply says the
        publisher already serves this exact version (HTTP 200 instead of 202).
        """
        total = Path(archive).stat().st_size
        with open(archive, "rb") as fh:
            body = _Counting(fh, total, progress or (lambda sent, total: None))
            reply = self._model_call(
                "POST",
                name,
                "versions",
                data=body,
                params={"workers": workers} if workers else None,
                headers={"Content-Type": "application/gzip"},
                timeout=self.settings.upload_timeout,
            )
        answer = reply.json()
        answer["live"] = reply.status_code == 200
        return answer

    def events(self, name, since=0):
        """The model's events after ``since`` (an event id)."""
        return self._model_call("GET", name, "events", params={"since": since}).json()["events"]

    def wait(self, name, version, since=0, *, timeout=600.0, progress=None):
        """Poll events until ``version`` is ``done``; raise ``DeployError`` if it ``failed``."""
        report = progress or (lambda step, fraction, message: None)
        deadline = time.monotonic() + timeout
        interval, seen = self.poll_interval, set()
        while True:
            for event in self.events(name, since):
                if event["id"] in seen or event.get("version") != version:
                    continue
                seen.add(event["id"])
                since = max(since, event["id"])
                if event["step"] == "failed":
                    raise DeployError(
                        f"publishing {name!r} failed: {event.get('message') or 'no reason given'}"
                        f"; see the logs with mlhub models logs {name}",
                        {"name": name, "version": version, "event": event},
                    )
                if event["step"] in EVENT_STEPS:
                    step, fraction = EVENT_STEPS[event["step"]]
                    report(step, fraction, event.get("message") or event["step"])
                if event["step"] == "done":
                    return
            if time.monotonic() > deadline:
                raise NotReady(
                    f"{name!r} version {version[:19]} was not ready within {timeout:.0f} s; it "
                    "may still be starting: publish again with a longer timeout= to keep "
                    "watching, or check its events and logs",
                    {"name": name, "version": version, "timeout": timeout},
                )
            time.sleep(interval)
            interval = min(interval * 2, self.max_poll_interval)

    def mint_key(self, name, description=""):
        """A new API key for ``name``: ``{"id", "key", ...}``; the key is only shown now."""
        return self._model_call("POST", name, "keys", json={"description": description}).json()


# ---------------------------------------------------------------- the bundle step


def _check_fitted(model):
    if type(model).__module__.split(".")[0] != "sklearn":
        return
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise InvalidBundle(
            f"{type(model).__name__} is not fitted: call .fit(X, y) before publishing it",
            {"field": "model"},
        ) from exc


def _check_columns(model, example):
    """Name the column mismatch instead of relaying the model's own error, when we can."""
    columns = getattr(example, "columns", None)
    trained = getattr(model, "feature_names_in_", None)
    if columns is not None and trained is not None:
        got, want = [str(c) for c in columns], [str(c) for c in trained]
        missing = [c for c in want if c not in got]
        extra = [c for c in got if c not in want]
        if missing or extra:
            raise InvalidBundle(
                f"the example's columns do not match the columns the model was trained on: "
                f"missing {missing}, unexpected {extra}; pass an example with the training "
                "columns (for instance a few rows of X_test)",
                {"field": "example", "missing": missing, "unexpected": extra},
            )
        if got != want:
            raise InvalidBundle(
                f"the example has the training columns in another order: {got}; the model "
                f"expects {want} (use example[{want}])",
                {"field": "example", "expected": want, "got": got},
            )
        return
    count = getattr(model, "n_features_in_", None)
    shape = getattr(example, "shape", None)
    if count is not None and shape is not None and len(shape) == 2 and shape[1] != count:
        raise InvalidBundle(
            f"the example has {shape[1]} columns but the model was trained on {count}; "
            "pass an example shaped like the training input",
            {"field": "example", "expected": count, "got": shape[1]},
        )


def bundle_model(model, path, name, example=None, *, description="", serialization="cloudpickle"):
    """Check ``model`` and write its bundle at ``path``; return the manifest.

    ``save_bundle`` records the example's signature and the installed requirements; the
    checks before it turn the usual mistakes into messages that say what to change.
    """
    validate_name(name)
    if not is_model(model):
        raise InvalidBundle(
            f"a {type(model).__name__} is not a model: publish a fitted estimator, a pipeline "
            "or any object with a predict() method",
            {"field": "model", "type": type(model).__name__},
        )
    _check_fitted(model)
    if example is not None:
        _check_columns(model, example)
    return save_bundle(
        model,
        path,
        name=name,
        example=example,
        serialization=serialization,
        description=description,
    )


# ---------------------------------------------------------------- the notebook API


def publish(
    model,
    name,
    example=None,
    *,
    description="",
    serialization="cloudpickle",
    workers=None,
    wait=True,
    timeout=600.0,
    progress=None,
    publisher=None,
):
    """Publish ``model`` as ``name`` and return a ``PublishResult`` with endpoint and snippets.

    ``example`` (a few rows of input: DataFrame, array, rows or records) records the input
    signature and is run through the model first. ``workers`` asks for that many serving
    processes. With ``wait=False`` this returns once the publisher has the bundle. ``progress``
    gets ``(step, fraction, message)``; by default a text bar is printed. ``publisher`` is a
    ``Publisher``; by default one is made from the kernel's environment.
    """
    validate_name(name)
    report = progress or TextProgress()
    publisher = publisher or Publisher()
    with tempfile.TemporaryDirectory(prefix="mlhub-publish-") as tmp:
        report("bundle", 0.0, "checking the model")
        manifest = bundle_model(
            model,
            Path(tmp, "bundle"),
            name,
            example,
            description=description,
            serialization=serialization,
        )
        archive = Path(tmp, "bundle.tar.gz")
        with open(archive, "wb") as fh:
            pack(Path(tmp, "bundle"), fh)
        report("bundle", 1.0, f"{manifest['flavor']} bundle, {len(manifest['requirements'])} reqs")
        first = publisher.model(name) is None
        report("upload", 0.0, "uploading")
        reply = publisher.upload(
            name,
            archive,
            workers=workers,
            progress=lambda sent, total: report(
                "upload", sent / total, f"{sent / 1e6:.1f} of {total / 1e6:.1f} MB"
            ),
        )
    version = reply["version"]
    key = publisher.mint_key(name, KEY_DESCRIPTION)["key"] if first else None
    model_info = reply["model"]
    if reply["live"]:
        report("ready", 1.0, "this version is already live")
    elif wait:
        report("start", 0.0, "deploying")
        publisher.wait(
            name, version, max(reply.get("event_id", 1) - 1, 0), timeout=timeout, progress=report
        )
        model_info = publisher.model(name) or model_info
    predict_url = model_info["predict_url"]
    return PublishResult(
        name=name,
        owner=model_info.get("owner", publisher.settings.user),
        version=version,
        status=model_info.get("status", "deploying"),
        url=model_info["url"],
        predict_url=predict_url,
        api_key=key,
        curl=curl_snippet(predict_url, name, manifest["example"], key),
        python=python_snippet(predict_url, name, manifest["example"], key),
    )


def api_key(name, description="minted by mlhub.api_key", *, publisher=None):
    """Mint an API key for your model ``name`` and return it; it is shown only this once."""
    validate_name(name)
    return (publisher or Publisher()).mint_key(name, description)["key"]


def publish_panel(namespace=None, example=None):
    """Show the "Publish model" panel (``mlhub.extension.widget``; imported only when used)."""
    from mlhub.extension.widget import publish_panel as panel

    return panel(namespace, example)
