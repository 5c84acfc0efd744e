"""The serving contract as a WSGI app: Flask for routing, with a lean hot path.

Per request the app does: strip the URL prefix and time the request (``Gateway``, plain WSGI),
one token check (``auth.Authenticator``), one ``orjson.loads`` (or one Arrow/Parquet read,
``arrowio``), one schema conversion, the model call (alone, or shared with concurrent requests
by ``batching.MicroBatcher``) and one ``orjson.dumps``. Everything else (metadata, OpenAPI
document, health bodies, the compiled schema) is built once in ``create_app``.

The routes live by protocol: ``routes_v1`` (the contract's own predict and metadata) and
``routes_v2`` (the Open Inference Protocol); this module has the health, metrics and OpenAPI
routes, the token check in front of them all, and the request plumbing in ``http``. Every
failure, typed or not, leaves through ``http.error_response``.
"""

import functools
from dataclasses import dataclass
from time import perf_counter

from flask import Flask, Response, request
from werkzeug.wsgi import ClosingIterator

from . import metrics as metrics_module
from . import routes_v1, routes_v2
from .batching import MicroBatcher, Unbatched
from .http import BODY_READ, error_response, json_response
from .inferencelog import from_settings as inference_log_from_settings
from .jsonio import dumps
from .openapi import build_spec
from .requestlog import RequestLog

ROUTE = "mlhub.route"  # environ key: index of the request's route in metrics.ROUTES
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
DRAIN_BYTES = 1 << 30  # settle_body: most of an oversized body read to answer its 413 cleanly
DRAIN_SECONDS = 10.0
_ROUTE_INDEX = {route: i for i, route in enumerate(metrics_module.ROUTES)}
_OTHER = _ROUTE_INDEX["other"]
_PREDICT_ROUTES = frozenset({_ROUTE_INDEX["/v1/predict"], _ROUTE_INDEX["/v2/models/{name}/infer"]})
# refusals of callers who may not call the model: not the model's traffic, and anyone could
# send them, so they never reach its inference log
_UNSEEN = frozenset({401, 403})
# Flask endpoint -> route label in the metrics (and which endpoints need no token).
_ENDPOINT_ROUTE = {
    "healthz": "/healthz",
    "readyz": "/readyz",
    "metadata": "/v1/metadata",
    "predict": "/v1/predict",
    "v2_model": "/v2/models/{name}",
    "v2_ready": "/v2/models/{name}/ready",
    "v2_infer": "/v2/models/{name}/infer",
    "v2_server": "/v2",
    "v2_live": "/v2/health/live",
    "v2_health_ready": "/v2/health/ready",
    "metrics": "/metrics",
    "openapi": "/openapi.json",
}
_ENDPOINT_INDEX = {endpoint: _ROUTE_INDEX[route] for endpoint, route in _ENDPOINT_ROUTE.items()}
PUBLIC = frozenset({"healthz", "readyz", "v2_live", "v2_health_ready"})


@dataclass(frozen=True)
class Context:
    """What every route module builds its views from: one served model and its settings."""

    settings: object  # serving.settings.Settings
    served: object  # model.ServedModel
    predictor: object  # batching.MicroBatcher or Unbatched
    metrics: object  # metrics.Metrics
    max_bytes: int
    inference_log: object = None  # inferencelog.InferenceLog, or None (off)


def create_app(
    settings, served, *, metrics, authenticator=None, request_log=None, inference_log=None
):
    """Build the WSGI app serving ``served`` (a ``ServedModel``) under ``settings``.

    ``authenticator`` is required when ``settings.auth`` is on (``None`` means no checks);
    ``request_log`` (a ``RequestLog``) and ``inference_log`` (an ``InferenceLog``) default to
    the ones ``settings`` describe.
    """
    if settings.auth and authenticator is None:
        raise ValueError("authentication is on but no authenticator was given")
    app = Flask("mlhub.serving")
    app.register_error_handler(Exception, error_response)
    check = authenticator.check if settings.auth else None
    if settings.batching:
        predictor = MicroBatcher(
            served,
            max_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
        )
    else:
        predictor = Unbatched(served)
    if inference_log is None:
        inference_log = inference_log_from_settings(settings, metrics.add_logged)
    ctx = Context(settings, served, predictor, metrics, settings.max_body_bytes, inference_log)

    healthz = dumps({"status": "ok"})
    v2_live_body = dumps({"live": True})
    v2_ready_body = dumps({"ready": True})
    openapi = dumps(
        build_spec(served, owner=settings.owner, prefix=settings.url_prefix, auth=settings.auth)
    )
    ready_body = dumps({"status": "ready", "name": served.name, "version": served.version})
    metrics.info = {
        "name": served.name,
        "version": served.version or "",
        "flavor": served.manifest.get("flavor", ""),
    }
    metrics.gauges = {
        "mlhub_model_ready": ("1 when the model is loaded and can predict.", int(served.ready)),
        "mlhub_model_load_seconds": ("Seconds spent loading the model.", served.load_seconds),
        "mlhub_workers": ("Worker processes configured.", settings.workers),
    }

    @app.before_request
    def gate():
        environ = request.environ
        endpoint = request.endpoint
        environ[ROUTE] = _ENDPOINT_INDEX.get(endpoint, _OTHER)
        if check is not None and endpoint not in PUBLIC:
            check(environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_API_KEY"))

    def readiness():
        served.require_ready()
        return json_response(ready_body)

    def healthz_view():
        return json_response(healthz)

    # OIP's health routes answer with {"live"} / {"ready"}, as KServe's servers (its client
    # reads them); the status code says the same for clients that read only that (Triton's)
    def v2_live():
        return json_response(v2_live_body)

    def v2_health_ready():
        served.require_ready()
        return json_response(v2_ready_body)

    app.add_url_rule("/healthz", "healthz", healthz_view)
    app.add_url_rule("/v2/health/live", "v2_live", v2_live)
    app.add_url_rule("/readyz", "readyz", readiness)
    app.add_url_rule("/v2/health/ready", "v2_health_ready", v2_health_ready)
    routes_v1.add_routes(app, ctx)
    routes_v2.add_routes(app, ctx)

    @app.get("/metrics", endpoint="metrics")
    def metrics_view():
        return Response(metrics.render(), 200, content_type=PROMETHEUS)

    @app.get("/openapi.json", endpoint="openapi")
    def openapi_view():
        return json_response(openapi)

    if request_log is None:
        request_log = RequestLog(settings.request_log, settings.request_log_rate)
    return Gateway(
        app, settings.url_prefix, metrics, settings.max_body_bytes, request_log, inference_log
    )


def strip_prefix(environ, prefix):
    """Move ``prefix`` (with an ``@alias`` right after it, if any) from ``PATH_INFO`` to
    ``SCRIPT_NAME``; a path outside it stays as it is."""
    path = environ.get("PATH_INFO", "")
    if not path.startswith(prefix):
        return
    end = len(prefix)
    if path[end : end + 1] == "@":
        end = path.find("/", end)
        end = len(path) if end < 0 else end
    if path[end : end + 1] in ("", "/"):
        environ["PATH_INFO"] = path[end:] or "/"
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + path[:end]


class Gateway:
    """Plain WSGI in front of Flask: strip ``prefix``, count/time/log every request (and
    sample predictions into the inference log), settle bodies.

    Through the proxy a request keeps its full path (``/models/alice/iris/v1/predict``, or
    ``/models/alice/iris@staging/v1/predict`` through an alias's route); locally it has none
    (``/v1/predict``). All must reach the same route, so the prefix and any ``@alias`` after
    it are removed here (and moved to ``SCRIPT_NAME``, where WSGI keeps a mount point).
    """

    def __init__(self, app, prefix, metrics, max_body_bytes, request_log, inference_log=None):
        self.app = app
        self.prefix = prefix
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.request_log = request_log
        self.inference_log = inference_log

    def __call__(self, environ, start_response):
        started = perf_counter()
        if self.prefix:
            strip_prefix(environ, self.prefix)
        status = []

        def record_status(line, headers, exc_info=None):
            status.append(line)
            if not environ.get(BODY_READ):
                settle_body(environ, headers, self.max_body_bytes)
            return start_response(line, headers, exc_info)

        body = self.app(environ, record_status)
        route, code = environ.get(ROUTE, _OTHER), int(status[-1][:3]) if status else 500
        seconds = perf_counter() - started
        self.metrics.observe(route, code, seconds)
        self.request_log.outcome(environ, environ.get("REQUEST_METHOD"), route, code, seconds)
        if self.inference_log is not None and route in _PREDICT_ROUTES and code not in _UNSEEN:
            # after the answer is written: the caller never waits for the log's encoding
            record = functools.partial(self.inference_log.record, environ, code, seconds)
            return ClosingIterator(body, record)
        return body


def settle_body(environ, headers, max_bytes):
    """Read what is left of an unread request body before a response goes out.

    Errors are answered before the body is read (401, 413, 415, 503...). A server that answers
    and closes while a proxy in front still sends the body makes that proxy fail the request
    (a broken pipe: an HTML 503 instead of the JSON answer), and uWSGI's HTTP router resets a
    kept-alive connection whose body the worker left unread. So the body is read and dropped
    first, as nginx's lingering close does: all of one within the limit; of a larger one up to
    ``DRAIN_BYTES`` for at most ``DRAIN_SECONDS``, after which the connection is closed after
    this response. A chunked body is not read.
    """
    length = environ.get("CONTENT_LENGTH") or ""
    size = int(length) if length.isdigit() else None
    if size is not None and size <= max_bytes:
        if size:
            environ["wsgi.input"].read(size)
        return
    if size is not None and size <= DRAIN_BYTES:
        stream, left, deadline = environ["wsgi.input"], size, perf_counter() + DRAIN_SECONDS
        while left > 0 and perf_counter() < deadline:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
    if length or environ.get("HTTP_TRANSFER_ENCODING"):
        headers.append(("Connection", "close"))
