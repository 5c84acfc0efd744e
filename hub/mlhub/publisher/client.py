"""A small client for the publisher's REST API (``requests`` only), used by ``mlhub models``.

Example::

    from mlhub.publisher.client import PublisherClient

    client = PublisherClient()                      # MLHUB_URL / MLHUB_TOKEN from the environment
    result = client.publish("./bundle", "iris")     # upload, then wait until live
    client.predict("iris", [[5.1, 3.5, 1.4, 0.2]])  # {"predictions": [...]}
    client.rollback("iris")                         # back to the previous version
    client.set_alias("iris", "staging", "sha256:...")  # /models/<you>/iris@staging/
    client.scale("iris", 3)
    key = client.create_key("iris", "batch job")["key"]

Models are named ``"user/name"`` or just ``"name"`` (the caller's own). Every failure is raised
as the ``mlhub.errors`` class the publisher named (``InvalidBundle``, ``Forbidden``,
``PayloadTooLarge``...), with the publisher's message; a failed deploy raises ``DeployError``.

Progress callbacks get ``(step, message, fraction)``: ``step`` is ``"upload"`` (``fraction`` is
the share of bytes sent) or one of the publisher's event steps (``received``, ``unpacked``,
``starting``, ``ready``, ``switched``, ``drained``, ``done``; ``fraction`` is how far along the
deploy is).
"""

import os
import tempfile
import time
import urllib.parse
from pathlib import Path

import requests

from mlhub import bundle, instances, logins
from mlhub.bundle import mlflow_models
from mlhub.errors import (
    DeployError,
    MlhubError,
    NotReady,
    PayloadTooLarge,
    PublisherUnreachable,
    Unauthorized,
    from_reply,
)
from mlhub.steps import CANARY, DEFAULT_ALIAS, DEPLOY_STEPS, SHADOW

SERVICE_PATH = "services/mlhub-publisher/"
DEFAULT_URL = "http://127.0.0.1:8000"
FIRST_POLL = 0.05  # seconds before the first repeated poll of events while waiting


class _Reading:
    """A file whose reads report progress (every 1%); ``len`` makes requests send a
    Content-Length, so the publisher can refuse an oversized upload before reading it."""

    def __init__(self, fh, total, report):
        self.fh, self.total, self.report = fh, total, report
        self.sent = self.reported = 0

    def __len__(self):
        return self.total

    def read(self, size=-1):
        chunk = self.fh.read(size)
        self.sent += len(chunk)
        if self.sent - self.reported >= self.total / 100 or self.sent == self.total:
            self.reported = self.sent
            fraction = self.sent / self.total if self.total else 1.0
            message = f"{self.sent / 1e6:.1f} of {self.total / 1e6:.1f} MB"
            if self.sent == self.total:  # the publisher answers once the model has started
                message += " sent; the publisher is starting the model"
            self.report("upload", message, fraction)
        return chunk


_UNSET = object()  # a setting configure() leaves as it is


def _quiet(step, message, fraction):
    pass


def batching_params(batching):
    """The publish query parameters for a ``batching`` argument (see ``publish``)."""
    if batching is None:
        return {}
    if isinstance(batching, bool):
        return {"batching": "on" if batching else "off"}
    if not isinstance(batching, dict):
        raise MlhubError(
            f"batching must be True, False or {{'max_size': ..., 'max_wait_ms': ...}}, "
            f"got {batching!r}"
        )
    names = {"max_size": "batch_max_size", "max_wait_ms": "batch_max_wait_ms"}
    unknown = set(batching) - set(names)
    if unknown:
        raise MlhubError(f"batching takes max_size and max_wait_ms, not {sorted(unknown)}")
    return {"batching": "on", **{names[k]: v for k, v in batching.items()}}


def resources_params(resources):
    """The publish query parameters for a ``resources`` argument (see ``publish``); the
    publisher checks the quantities."""
    if resources is None:
        return {}
    names = ("cpu", "memory", "cpu_limit", "memory_limit")
    if not isinstance(resources, dict) or set(resources) - set(names):
        raise MlhubError(f"resources is a dict of {', '.join(names)}, got {resources!r}")
    return {k: str(v) for k, v in resources.items()}


def hub_url():
    """The hub this account's commands mean when ``MLHUB_URL`` is not set: the one
    ``mlhub up`` it runs (``mlhub.instances``), else ``http://127.0.0.1:8000``."""
    one = instances.the_running_one("its URL", "set MLHUB_URL (or pass --url)")
    return one["url"] if one else DEFAULT_URL


class PublisherClient:
    """Calls the publisher as one hub user.

    ``url``: the hub's public URL (default ``$MLHUB_URL``, else ``hub_url()``); the
    publisher is at ``<url>/services/mlhub-publisher/`` unless ``publisher_url`` (default
    ``$MLHUB_PUBLISHER_URL``, set in notebooks) says otherwise. ``token``: a JupyterHub token
    with the ``custom:mlhub:models`` scope (default ``$MLHUB_TOKEN``, else
    ``$JUPYTERHUB_API_TOKEN``, else the one ``mlhub login`` stored for ``url``).
    ``poll_interval``: seconds between event polls while waiting.
    """

    def __init__(
        self, url=None, token=None, *, publisher_url=None, timeout=60.0, poll_interval=0.5
    ):
        self.url = (url or os.environ.get("MLHUB_URL") or hub_url()).rstrip("/") + "/"
        self.publisher_url = (
            publisher_url
            or os.environ.get("MLHUB_PUBLISHER_URL")
            or urllib.parse.urljoin(self.url, SERVICE_PATH)
        ).rstrip("/") + "/"
        self.token = (
            token
            or os.environ.get("MLHUB_TOKEN")
            or os.environ.get("JUPYTERHUB_API_TOKEN")
            or logins.stored_token(self.url)
        )
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.session = requests.Session()
        self._user = None

    # ------------------------------------------------------------ plumbing

    def _request(self, method, path, *, auth=True, timeout=None, **kwargs):
        """One call; the token goes with every request, ``auth`` says whether it is required."""
        url = urllib.parse.urljoin(self.publisher_url, path.lstrip("/"))
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        elif auth:
            raise Unauthorized(
                f"no token for {self.url}: run `mlhub login` (or create one at "
                f"{self.url}hub/token and set MLHUB_TOKEN, or pass --token)"
            )
        try:
            resp = self.session.request(
                method, url, headers=headers, timeout=timeout or self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise PublisherUnreachable(
                f"cannot reach the mlhub publisher at {self.publisher_url} ({exc}); is mlhub "
                "running (`mlhub up`), and does MLHUB_URL point at it?",
                {"url": url},
            ) from exc
        if resp.status_code >= 400:
            raise from_reply(url, resp.status_code, resp.content)
        return resp

    def _json(self, method, path, **kwargs):
        resp = self._request(method, path, **kwargs)
        return resp.json() if resp.content else None

    def whoami(self):
        """``{"name", "kind", "admin"}`` of the token's owner."""
        if self._user is None:
            self._user = self._json("GET", "api/user")
        return self._user

    def model_path(self, name, *parts):
        """``api/models/<user>/<name>/...`` for ``"user/name"`` or ``"name"`` (your own)."""
        user, _, short = name.rpartition("/")
        user = user or self.whoami()["name"]
        segments = [urllib.parse.quote(user, safe="@~"), short, *parts]
        return "api/models/" + "/".join(segments)

    # ------------------------------------------------------------ reading

    def health(self):
        return self._json("GET", "api/health", auth=False)

    def list(self, user=None):
        """Your models (admins: everyone's, or ``user``'s)."""
        params = {"user": user} if user else None
        return self._json("GET", "api/models", params=params)["models"]

    def get(self, name):
        """The ``Model``: status, current version, replicas, url, predict_url, versions."""
        return self._json("GET", self.model_path(name))

    def events(self, name, since=0):
        return self._json("GET", self.model_path(name, "events"), params={"since": since})["events"]

    def history(self, name):
        """``{"changes": [...], "served": [...]}``: who changed the model when, and which
        version served when (``GET .../history``)."""
        return self._json("GET", self.model_path(name, "history"))

    def inference_log(self, name, *, since=None, until=None, version=None, limit=None):
        """The rows the model's inference log kept (``GET .../inference-log``): a list of
        ``{"time", "version", "request", "row", "status", "latency_ms", "inputs", "outputs",
        "error"}``, oldest first. ``since``/``until``: ISO times or ages (``"1h"``, ``"7d"``)."""
        params = {"since": since, "until": until, "version": version, "limit": limit}
        params = {k: v for k, v in params.items() if v is not None}
        return self._json("GET", self.model_path(name, "inference-log"), params=params)["rows"]

    def configure(
        self,
        name,
        *,
        inference_log=_UNSET,
        sleep_after=_UNSET,
        wait=True,
        progress=None,
        timeout=600,
    ):
        """Change how the model is served: its inference log (``True``, ``False`` or a
        fraction of the requests: a rolling restart) and when it sleeps (``sleep_after``
        seconds without a request, 0 never, None the platform's default; no restart).
        Returns the ``Model`` (once a restart is done, with ``wait``)."""
        body = {}
        if inference_log is not _UNSET:
            body["inference_log"] = {True: 1.0, False: 0}.get(inference_log, inference_log)
        if sleep_after is not _UNSET:
            body["sleep_after"] = sleep_after
        answer = self._json("PATCH", self.model_path(name), json=body)
        if not wait:
            return answer["model"]
        return self._follow(name, answer, progress or _quiet, timeout)

    def drift(self, name, *, since=None, version=None, threshold=None):
        """The drift of the inputs logged since ``since`` (default a day) against the
        version's parity sample (``GET .../drift``, ``mlhub.drift``)."""
        params = {"since": since, "version": version, "threshold": threshold}
        params = {k: v for k, v in params.items() if v is not None}
        return self._json("GET", self.model_path(name, "drift"), params=params)

    def logs(self, name, tail=200, alias=None):
        """The last ``tail`` lines of the serving log (of ``alias``'s processes, if given)."""
        params = {"tail": tail, **({"alias": alias} if alias else {})}
        return self._request("GET", self.model_path(name, "logs"), params=params).text

    # ------------------------------------------------------------ publishing

    def publish(
        self,
        path,
        name=None,
        *,
        workers=None,
        batching=None,
        resources=None,
        inference_log=None,
        sleep_after=_UNSET,
        alias=None,
        progress=None,
        wait=True,
        timeout=600,
    ):
        """Publish a bundle directory, an MLflow model directory or a bundle ``.tar.gz``.

        ``name`` (``"name"`` or, for admins, ``"user/name"``) defaults to the bundle's own
        name. ``batching``: ``True`` (micro-batching with the serving runtime's defaults),
        ``False`` (off) or ``{"max_size": rows, "max_wait_ms": ms}``; ``None`` keeps the
        model's setting. ``resources``: ``{"cpu": "500m", "memory": "1Gi", "cpu_limit": "2",
        "memory_limit": "2Gi"}`` (any of them, Kubernetes quantities) per serving pod; given,
        they replace the model's, the deployer's defaults fill in the rest; ``None`` keeps the
        model's. ``inference_log``: ``True`` (log every request), a fraction of requests to
        log (``0.1``), ``False`` (off); ``None`` keeps the model's. ``sleep_after``: seconds
        without a request after which the model's processes are released until a request
        wakes it (0: never, ``None``: the platform's default; left out: the model's setting).
        ``alias``: the alias the
        version goes live at (default ``production``, the plain URL; ``"staging"`` serves it at
        ``.../<name>@staging/`` and leaves production as it is). Returns the final ``Model``
        (with ``wait``) or the publisher's answer ``{"model", "version", "event_id"}``.
        """
        progress = progress or _quiet
        owner, _, short = (name or "").rpartition("/")
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="mlhub-publish-") as tmp:
            if path.is_dir() and mlflow_models.is_mlflow_dir(path):
                if not short:
                    raise MlhubError("an MLflow model needs a name: pass name=")
                progress("convert", f"converting MLflow model {path.name}", None)
                converted = Path(tmp, "bundle")
                mlflow_models.from_mlflow(path, converted, short)
                path = converted
            if path.is_dir():
                short = short or bundle.load_manifest(path)["name"]
                archive = Path(tmp, "bundle.tar.gz")
                with open(archive, "wb") as fh:
                    bundle.pack(path, fh)
            else:
                archive = path
            if not short:
                raise MlhubError("name the model: pass name= (a .tar.gz does not say its name)")
            bundle.validate_name(short)
            name = f"{owner}/{short}" if owner else short
            answer = self.upload(
                archive,
                name,
                workers=workers,
                batching=batching,
                resources=resources,
                inference_log=inference_log,
                sleep_after=sleep_after,
                alias=alias,
                progress=progress,
            )
        if not wait or "event_id" not in answer:
            return answer["model"] if wait else answer
        return self._follow(name, answer, progress, timeout, alias)

    def upload(
        self,
        archive,
        name,
        *,
        workers=None,
        batching=None,
        resources=None,
        inference_log=None,
        sleep_after=_UNSET,
        alias=None,
        progress=None,
    ):
        """POST a bundle archive; the answer is ``{"model", "version", "event_id"}``."""
        total = os.path.getsize(archive)
        limit = self.health().get("max_upload_bytes")
        if limit and total > limit:
            # refused here: a proxy may drop an oversized body before the publisher can answer
            raise PayloadTooLarge(
                f"the bundle is {total} bytes, above the publisher's upload limit of {limit} "
                "bytes (PublisherApp.max_upload_bytes)",
                {"limit": limit, "size": total},
            )
        params = {"workers": workers} if workers else {}
        params.update(batching_params(batching))
        params.update(resources_params(resources))
        if inference_log is not None:
            params["inference_log"] = {True: "on", False: "off"}.get(inference_log, inference_log)
        if sleep_after is not _UNSET:
            params["sleep_after"] = "default" if sleep_after is None else sleep_after
        if alias:
            params["alias"] = alias
        with open(archive, "rb") as fh:
            body = _Reading(fh, total, progress or _quiet)
            return self._json(
                "POST",
                self.model_path(name, "versions"),
                data=body,
                params=params,
                headers={"Content-Type": "application/gzip"},
                timeout=max(self.timeout, 600),
            )

    def wait_for(self, name, version, *, since=0, progress=None, timeout=600, alias=None):
        """Poll events until ``version`` is ``done`` at ``alias`` (default production; return
        the ``Model``) or ``failed``."""
        progress = progress or _quiet
        deadline = time.monotonic() + timeout
        # a small model goes live within a fraction of a second of its upload's answer: poll
        # often at first, then every ``poll_interval``
        pause = min(FIRST_POLL, self.poll_interval)
        while True:
            for ev in self.events(name, since):
                since = ev["id"]
                if ev.get("version") != version or ev.get("alias", DEFAULT_ALIAS) != (
                    alias or DEFAULT_ALIAS
                ):
                    continue
                step = ev["step"]
                done = (
                    (DEPLOY_STEPS.index(step) + 1) / len(DEPLOY_STEPS)
                    if step in DEPLOY_STEPS
                    else None
                )
                progress(step, ev["message"], done)
                if step == "failed":
                    raise DeployError(ev["message"], {"version": version, "event": ev})
                if step == "done":
                    return self.get(name)
            if time.monotonic() > deadline:
                raise NotReady(
                    f"{name} {version[:19]} is not live after {timeout:g} s; "
                    f"'mlhub models events {name}' shows where it is",
                    {"version": version},
                )
            time.sleep(pause)
            pause = min(pause * 2, self.poll_interval)

    def _follow(self, name, answer, progress, timeout, alias=None):
        """``wait_for`` the version an accepted upload or operation (``answer``, with its
        ``version`` and first ``event_id``) is making live; an operation with nothing to do
        (``event_id`` null) is done already."""
        if answer["event_id"] is None:
            return answer["model"]
        return self.wait_for(
            name,
            answer["version"],
            since=answer["event_id"] - 1,
            progress=progress,
            timeout=timeout,
            alias=alias,
        )

    def _operation(self, name, what, body, wait, progress, timeout):
        answer = self._json("POST", self.model_path(name, what), json=body)
        if not wait:
            return answer
        return self._follow(name, answer, progress, timeout)

    def rollback(self, name, version="previous", *, wait=True, progress=None, timeout=600):
        """Make ``version`` (an id, or ``"previous"``) live again."""
        return self._operation(name, "rollback", {"version": version}, wait, progress, timeout)

    def aliases(self, name):
        """``[{"name", "version", "since", "url"}, ...]``: production (the plain URL's) first."""
        return self._json("GET", self.model_path(name, "aliases"))["aliases"]

    def set_alias(self, name, alias, version, *, wait=True, progress=None, timeout=600):
        """Point ``alias`` at ``version`` (an id or a start of one, ``"previous"``, or another
        alias, whose version it takes): a readiness-gated switch, made if new. Returns the
        ``Model`` once its processes serve it (with ``wait``)."""
        answer = self._json(
            "PUT", self.model_path(name, "aliases", alias), json={"version": version}
        )
        if not wait:
            return answer
        return self._follow(name, answer, progress or _quiet, timeout, alias)

    def delete_alias(self, name, alias):
        """Remove ``alias`` (not production) and stop its processes."""
        self._request("DELETE", self.model_path(name, "aliases", alias))

    def canary(self, name):
        """The running canary: ``{"version", "percent", "since", "url", "stats": {"stable":
        {...}, "canary": {...}}}`` (requests, errors, error rate and latency of each)."""
        return self._json("GET", self.model_path(name, "canary"))

    def start_canary(self, name, version, percent, *, wait=True, progress=None, timeout=600):
        """Send ``percent`` of production's requests to ``version`` (an id or a start of one,
        or an alias); a running canary of that version only changes its share. Returns the
        ``Model`` once the canary takes requests (with ``wait``)."""
        answer = self._json(
            "PUT", self.model_path(name, "canary"), json={"version": version, "percent": percent}
        )
        if not wait:
            return answer
        return self._follow(name, answer, progress or _quiet, timeout, CANARY)

    def promote_canary(self, name, *, wait=True, progress=None, timeout=600):
        """Make the canary's version production's, then end the canary."""
        return self._operation(name, "canary/promote", {}, wait, progress, timeout)

    def abort_canary(self, name):
        """End the canary: every request to production again."""
        self._request("DELETE", self.model_path(name, "canary"))

    def shadow(self, name, *, since=None, limit=None):
        """The running shadow and its compared rows: ``{"version", "percent", "since", "url",
        "summary", "rows"}``."""
        params = {k: v for k, v in {"since": since, "limit": limit}.items() if v is not None}
        return self._json("GET", self.model_path(name, "shadow"), params=params)

    def start_shadow(self, name, version, percent, *, wait=True, progress=None, timeout=600):
        """Send ``percent`` of production's requests to ``version`` too (answers kept, never
        returned); returns the ``Model`` once the shadow takes requests (with ``wait``)."""
        answer = self._json(
            "PUT", self.model_path(name, "shadow"), json={"version": version, "percent": percent}
        )
        if not wait:
            return answer
        return self._follow(name, answer, progress or _quiet, timeout, SHADOW)

    def stop_shadow(self, name):
        self._request("DELETE", self.model_path(name, "shadow"))

    def scale(self, name, replicas, *, wait=True, progress=None, timeout=600):
        return self._operation(name, "scale", {"replicas": replicas}, wait, progress, timeout)

    def delete(self, name):
        self._request("DELETE", self.model_path(name))

    def share(self, name, users=(), groups=()):
        """Let these hub users and groups call the model (replaces the lists); the ``Model``."""
        body = {"users": list(users), "groups": list(groups)}
        return self._json("PUT", self.model_path(name, "sharing"), json=body)

    # ------------------------------------------------------------ keys

    def create_key(self, name, description=""):
        """``{"id", "key", "description", "created"}``; the key is shown only this once."""
        return self._json("POST", self.model_path(name, "keys"), json={"description": description})

    def list_keys(self, name):
        return self._json("GET", self.model_path(name, "keys"))["keys"]

    def delete_key(self, name, key_id):
        self._request("DELETE", self.model_path(name, "keys", key_id))

    # ------------------------------------------------------------ calling a model

    def predict(self, name, instances, *, key=None):
        """``POST /v1/predict`` on the live model, with your token (or an API ``key``)."""
        url = self.get(name)["predict_url"]
        headers = {"Authorization": f"token {key or self.token}"}
        resp = self.session.post(
            url, json={"instances": instances}, headers=headers, timeout=self.timeout
        )
        if resp.status_code >= 400:
            raise from_reply(url, resp.status_code, resp.content)
        return resp.json()
