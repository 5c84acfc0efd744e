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
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlhub.bundle import save_bundle, validate_name
from mlhub.errors import InvalidBundle, MlhubError, NotFound
from mlhub.extension.namespace import find_models, is_model
from mlhub.extension.progress import PublisherProgress, TextProgress
from mlhub.extension.settings import MlhubExtension
from mlhub.publisher.client import PublisherClient
from mlhub.snippets import all_snippets
from mlhub.steps import DEFAULT_ALIAS

__all__ = [
    "PublishResult",
    "api_key",
    "bundle_model",
    "connect",
    "find_models",
    "publish",
    "publish_panel",
]

KEY_DESCRIPTION = "minted by mlhub.publish"
POLL_INTERVAL = 0.5  # seconds between polls of the publisher's events while waiting


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
    # [(label, language, code)]: curl, Python and R (mlhub.snippets.all_snippets), and the same
    # reading the key from MLHUB_API_KEY when this publish minted one (what a notebook keeps)
    snippets: list = field(default_factory=list, repr=False)
    keyless_snippets: list = field(default_factory=list, repr=False)

    @property
    def curl(self):
        return self._snippet("bash")

    @property
    def python(self):
        return self._snippet("python")

    def _snippet(self, language):
        return next((code for _, lang, code in self.snippets if lang == language), "")

    def summary_html(self):
        """Endpoint, version, predict URL and the key (or how to mint one), as HTML."""
        esc = html.escape
        key = (
            f"<b>API key (shown once, store it now):</b> <code>{esc(self.api_key)}</code>"
            if self.api_key
            else f"Mint an API key with <code>mlhub.api_key({esc(repr(self.name))})</code>"
        )
        return (
            f"<b>{esc(self.name)}</b> is {esc(self.status)} at "
            f'<a href="{esc(self.url)}" target="_blank">{esc(self.url)}</a> '
            f"(version <code>{esc(self.version[:19])}</code>)<br>"
            f"Predict: <code>{esc(self.predict_url)}</code><br>{key}"
        )

    def snippets_html(self):
        """The snippets, each under its label with a copy button, as selectable blocks."""
        blocks = []
        for label, language, code in self.snippets:
            css = "mlhub-curl" if language == "bash" else f"mlhub-{language}"
            blocks.append(
                f'<div class="mlhub-snippet"><b>{html.escape(label)}</b> '
                f'<button class="mlhub-copy" title="Copy the {html.escape(label)} snippet" '
                'onclick="navigator.clipboard.writeText('
                "this.parentElement.querySelector('pre').innerText)\">Copy</button>"
                f'<pre class="{css}">{html.escape(code)}</pre></div>'
            )
        return "".join(blocks)

    def saved_html(self):
        """What the notebook keeps of this publish when it is saved: the endpoint and snippets
        that read the key from ``MLHUB_API_KEY``; never the key itself (a notebook travels)."""
        esc = html.escape
        kept = replace(self, api_key=None, snippets=self.keyless_snippets or self.snippets)
        minted = (
            "<br><i>A new API key was shown in the panel; it is not saved in the notebook.</i>"
            if self.api_key
            else ""
        )
        return (
            f'<div class="mlhub-published"><p>Published <b>{esc(self.name)}</b>: '
            f"{kept.summary_html()}{minted}</p>{kept.snippets_html()}</div>"
        )

    def _repr_html_(self):
        return f"<p>{self.summary_html()}</p>{self.snippets_html()}"


# ---------------------------------------------------------------- the publisher


def connect():
    """A ``PublisherClient`` for this kernel, from the environment the hub gives it."""
    settings = MlhubExtension().require()
    return PublisherClient(
        url=settings.public_url or None,
        token=settings.api_token,
        publisher_url=settings.publisher_url,
        timeout=settings.request_timeout,
        poll_interval=POLL_INTERVAL,
    )


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


def bundle_model(
    model,
    path,
    name,
    example=None,
    *,
    description="",
    serialization="cloudpickle",
    validate=None,
    tolerance=None,
):
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
        validate=validate,
        **_tolerance(tolerance),
    )


def _tolerance(tolerance):
    """``tolerance``: a relative tolerance, or ``{"rtol": ..., "atol": ...}``; None: defaults."""
    if tolerance is None:
        return {}
    if isinstance(tolerance, dict):
        unknown = set(tolerance) - {"rtol", "atol"}
        if unknown:
            raise InvalidBundle(
                f"tolerance takes rtol and atol, not {sorted(unknown)}", {"field": "tolerance"}
            )
        return dict(tolerance)
    return {"rtol": tolerance}


# ---------------------------------------------------------------- the notebook API


def _sleep_after(sleep_after):
    """``publish(sleep_after=)`` for ``PublisherClient.publish``: ``"default"`` is the hub's
    (None there), None says nothing (the model keeps its setting)."""
    if sleep_after is None:
        return {}
    return {"sleep_after": None if sleep_after == "default" else sleep_after}


def publish(
    model,
    name,
    example=None,
    *,
    validate=None,
    tolerance=None,
    description="",
    serialization="cloudpickle",
    workers=None,
    batching=None,
    resources=None,
    inference_log=None,
    sleep_after=None,
    alias=None,
    wait=True,
    timeout=600.0,
    progress=None,
    publisher=None,
):
    """Publish ``model`` as ``name`` and return a ``PublishResult`` with endpoint and snippets.

    ``example`` (a few rows of input: DataFrame, array, rows or records) records the input
    signature and is run through the model first. Before the new version takes any traffic,
    its serving process must answer the example's rows, and up to 1,000 rows of ``validate``
    (rows of the same inputs, e.g. ``X_test``), as this model does here: within ``tolerance``
    (relative, default 1e-6; or ``{"rtol": ..., "atol": ...}``) for numbers, exactly for
    classes. Otherwise the publish is refused, showing the rows that differ and the library
    versions that differ from this kernel's, and the version before keeps serving.
    ``workers`` asks for that many serving
    processes. ``batching=True`` micro-batches concurrent requests into one model call (for
    models that vectorise, e.g. forests), ``{"max_size": 64, "max_wait_ms": 2}`` tunes it,
    ``False`` turns it off; it is kept for later versions (``None``: keep the model's).
    ``resources={"cpu": "500m", "memory": "1Gi", "cpu_limit": "2", "memory_limit": "2Gi"}``
    (any of them, Kubernetes quantities) sizes each serving pod on Kubernetes; kept for later
    versions, the hub's defaults fill in the rest. Embedded mode holds each replica to the
    limits (a process killed for memory fails the publish saying so) and ignores the
    requests. ``inference_log=True`` keeps every request's inputs, outputs, latency and status
    (``0.1``: a tenth of the requests; ``False``: off; ``None``: the model's setting, for a
    new model the hub's default), read back with ``mlhub.inference_log(name)`` and compared
    with the published data by ``mlhub.drift(name)``. An idle model sleeps (its processes are
    released after the hub's idle time; its next request wakes it): ``sleep_after=0`` keeps it
    running, ``sleep_after=600`` releases it after 10 minutes without a request,
    ``"default"`` is the hub's idle time again (``None``: the model's setting).
    ``alias="staging"`` publishes the version at ``.../<name>@staging/`` only (its own
    serving processes), leaving the plain URL's ``production`` version serving;
    ``mlhub.set_alias(name, "production", "staging")`` promotes it later. With ``wait=False``
    this returns once the publisher has the bundle. ``progress`` gets ``(step, fraction,
    message)``; by default a text bar is printed. ``publisher`` is a ``PublisherClient``; by
    default ``connect()`` makes one from the kernel's environment.
    """
    validate_name(name)
    report = progress or TextProgress()
    publisher = publisher or connect()
    with tempfile.TemporaryDirectory(prefix="mlhub-publish-") as tmp:
        report("bundle", 0.0, "checking the model")
        bundle_dir = Path(tmp, "bundle")
        manifest = bundle_model(
            model,
            bundle_dir,
            name,
            example,
            description=description,
            serialization=serialization,
            validate=validate,
            tolerance=tolerance,
        )
        pins = len(manifest["requirements"])
        report("bundle", 1.0, f"{manifest['flavor']} bundle with {pins} pinned requirements")
        first = _never_published(publisher, name)
        report("upload", 0.0, "uploading")
        steps = PublisherProgress(report)
        answer = publisher.publish(
            bundle_dir,
            name,
            workers=workers,
            batching=batching,
            resources=resources,
            inference_log=inference_log,
            alias=alias,
            wait=wait,
            timeout=timeout,
            progress=steps,
            **_sleep_after(sleep_after),
        )
    if wait:
        info, version = answer, _alias_of(answer, alias)["version"]
        if not steps.finished:  # the publisher already served this very version
            report("ready", 1.0, "this version is already live")
    else:
        info, version = answer["model"], answer["version"]
    key = publisher.create_key(name, KEY_DESCRIPTION)["key"] if first else None
    url = _alias_of(info, alias)["url"]
    predict_url = url + "v1/predict"
    signature = manifest.get("signature")
    return PublishResult(
        name=name,
        owner=info["owner"],
        version=version,
        status=info["status"],
        url=url,
        predict_url=predict_url,
        api_key=key,
        snippets=all_snippets(predict_url, name, manifest["example"], key, signature),
        keyless_snippets=all_snippets(predict_url, name, manifest["example"], None, signature)
        if key
        else [],
    )


def _alias_of(model, alias):
    """The ``Model``'s alias ``alias`` (None: production, the plain URL's)."""
    wanted = alias or DEFAULT_ALIAS
    for found in model.get("aliases") or []:
        if found["name"] == wanted:
            return found
    if alias not in (None, DEFAULT_ALIAS):
        raise MlhubError(f"the publisher did not make the alias {alias!r}: update mlhub there")
    # a publisher from before aliases: its one URL is production's
    return {"name": DEFAULT_ALIAS, "version": model.get("current_version"), "url": model["url"]}


def aliases(name, *, publisher=None):
    """Your model ``name``'s aliases: ``[{"name", "version", "since", "url"}, ...]``,
    ``production`` (the plain URL's) first."""
    validate_name(name)
    return (publisher or connect()).aliases(name)


def set_alias(name, alias, version, *, wait=True, timeout=600.0, publisher=None):
    """Point ``alias`` of your model ``name`` at ``version``: a version id (or its first 8+
    hex digits), ``"previous"``, or another alias whose version it takes
    (``set_alias("iris", "production", "staging")`` promotes staging). The alias's processes
    switch only once the version is ready, with no failed request; a new alias is made, with
    its URL ``.../<name>@<alias>/``. Returns the alias once it serves (with ``wait``)."""
    validate_name(name)
    publisher = publisher or connect()
    publisher.set_alias(name, alias, version, wait=wait, timeout=timeout)
    return next(a for a in publisher.aliases(name) if a["name"] == alias)


def canary(
    name,
    version=None,
    percent=None,
    *,
    promote=False,
    abort=False,
    wait=True,
    timeout=600.0,
    publisher=None,
):
    """Your model ``name``'s canary. ``canary("iris", "staging", 20)`` sends 20% of
    production's requests, chosen per request, to the version ``staging`` serves (or an id),
    in processes of its own; a canary doing worse than production (more server errors, much
    slower) is aborted by itself. ``canary("iris")`` says how it compares with production:
    ``{"version", "percent", "since", "url", "stats": {"stable": {...}, "canary": {...}}}``.
    ``promote=True`` makes its version production's; ``abort=True`` ends it. Returns the
    canary's status (None once promoted or aborted)."""
    validate_name(name)
    publisher = publisher or connect()
    if promote and abort:
        raise ValueError("promote or abort, not both")
    if promote:
        publisher.promote_canary(name, wait=wait, timeout=timeout)
        return None
    if abort:
        publisher.abort_canary(name)
        return None
    if version is not None or percent is not None:
        if version is None or percent is None:
            raise ValueError("a canary needs both a version and a percent")
        publisher.start_canary(name, version, percent, wait=wait, timeout=timeout)
    return publisher.canary(name)


def shadow(
    name, version=None, percent=None, *, stop=False, wait=True, timeout=600.0, publisher=None
):
    """Your model ``name``'s shadow. ``shadow("iris", "staging", 10)`` sends 10% of
    production's requests to the version ``staging`` serves as well, in processes of its own,
    off the callers' path: its answers are kept beside production's, never returned;
    ``mlhub.compare("iris")`` reads them as a DataFrame. ``stop=True`` ends it. Returns the
    shadow's status (None once stopped)."""
    validate_name(name)
    publisher = publisher or connect()
    if stop:
        publisher.stop_shadow(name)
        return None
    if version is None or percent is None:
        raise ValueError("a shadow needs both a version and a percent (or stop=True)")
    publisher.start_shadow(name, version, percent, wait=wait, timeout=timeout)
    status = publisher.shadow(name, limit=1)
    status.pop("rows")
    return status


def _never_published(publisher, name):
    try:
        publisher.get(name)
    except NotFound:
        return True
    return False


def api_key(name, description="minted by mlhub.api_key", *, publisher=None):
    """Mint an API key for your model ``name`` and return it; it is shown only this once."""
    validate_name(name)
    return (publisher or connect()).create_key(name, description)["key"]


def publish_panel(namespace=None, example=None):
    """Show the "Publish model" panel (``mlhub.extension.widget``; imported only when used)."""
    from mlhub.extension.widget import publish_panel as panel

    return panel(namespace, example)
