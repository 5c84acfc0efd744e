"""The serving contract as a WSGI app: Flask for routing, with a lean hot path.

Per request the app does: strip the URL prefix and time the request (``Gateway``, plain WSGI),
one token check (``auth.Authenticator``), one ``orjson.loads`` (or one Arrow/Parquet read,
``arrowio``), one schema conversion, the model call (alone, or shared with concurrent requests
by ``batching.MicroBatcher``) and one ``orjson.dumps``. Everything else (metadata, OpenAPI
document, health bodies, the compiled schema) is built once in ``create_app``.

Every failure, typed or not, leaves through ``error_response``: the one place where errors
become HTTP statuses and JSON bodies ``{"error", "code", "detail"}``.
"""

import logging
from time import perf_counter

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mlhub.errors import (
    InvalidInput,
    MlhubError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)

from . import arrowio, v2
from . import metrics as metrics_module
from .batching import PREDICT, PREDICT_PROBA, MicroBatcher, Unbatched
from .jsonio import JSONDecodeError, JSONEncodeError, dumps, loads
from .openapi import build_spec

log = logging.getLogger("mlhub.serving")

JSON = "application/json"
BODY_READ = "mlhub.body_read"  # environ key: the request body has been consumed
ROUTE = "mlhub.route"  # environ key: index of the request's route in metrics.ROUTES
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
PREDICT_MEDIA = (JSON, *arrowio.MEDIA)
DRAIN_BYTES = 1 << 30  # settle_body: most of an oversized body read to answer its 413 cleanly
DRAIN_SECONDS = 10.0
DECLARED_OTHER = "declared-other"  # body_media: a type that is neither JSON nor a binary one
PREDICT_ONLY = (PREDICT,)
WITH_PROBA = (PREDICT, PREDICT_PROBA)
_TRUE = ("1", "true", "yes", "on")
_ROUTE_INDEX = {route: i for i, route in enumerate(metrics_module.ROUTES)}
_OTHER = _ROUTE_INDEX["other"]
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


class Gateway:
    """Plain WSGI in front of Flask: strip ``prefix``, count/time every request, settle bodies.

    Through the proxy a request keeps its full path (``/models/alice/iris/v1/predict``);
    locally it has none (``/v1/predict``). Both must reach the same route, so the prefix is
    removed here (and moved to ``SCRIPT_NAME``, where WSGI keeps a mount point).
    """

    def __init__(self, app, prefix, metrics, max_body_bytes):
        self.app = app
        self.prefix = prefix
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ, start_response):
        started = perf_counter()
        prefix = self.prefix
        if prefix:
            path = environ.get("PATH_INFO", "")
            if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("", "/"):
                environ["PATH_INFO"] = path[len(prefix) :] or "/"
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        status = []

        def record_status(line, headers, exc_info=None):
            status.append(line)
            if not environ.get(BODY_READ):
                settle_body(environ, headers, self.max_body_bytes)
            return start_response(line, headers, exc_info)

        body = self.app(environ, record_status)
        self.metrics.observe(
            environ.get(ROUTE, _OTHER),
            int(status[-1][:3]) if status else 500,
            perf_counter() - started,
        )
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


def json_response(payload, status=200):
    return Response(
        payload if isinstance(payload, bytes) else dumps(payload), status, mimetype=JSON
    )


def error_response(exc):
    """The one mapping from an exception to an HTTP error response."""
    if isinstance(exc, MlhubError):
        error = exc
    elif isinstance(exc, HTTPException):
        error = MlhubError(_http_message(exc), {"method": request.method, "path": request.path})
        error.status = exc.code or 500
        error.error = (exc.name or "error").lower().replace(" ", "_")
    else:
        log.exception("unexpected error on %s %s", request.method, request.path)
        error = MlhubError(
            f"the server failed on this request ({type(exc).__name__}: {exc}); "
            "the model server's log has the details",
            {"exception": type(exc).__name__},
        )
    response = json_response(error.to_dict(), error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mlhub"'
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _http_message(exc):
    if isinstance(exc, MethodNotAllowed):
        allowed = " or ".join(m for m in exc.valid_methods or [] if m not in ("HEAD", "OPTIONS"))
        return f"{request.method} is not allowed on {request.path}: use {allowed}"
    if exc.code == 404:
        return (
            f"there is no route {request.path}: the model's routes are /v1/predict, "
            "/v1/metadata, /v2/models/<name>/infer, /metrics and /openapi.json"
        )
    return exc.description or exc.name


def body_media(environ, allowed=(JSON,)):
    """How to read the request body: ``JSON``, one of the binary types in ``allowed``, or
    ``DECLARED_OTHER`` (a body declared as some other type).

    A missing ``Content-Type`` and any ``+json`` type are JSON. Other declared types are common
    on JSON bodies: ``curl -d`` and ``requests.post(data=...)`` declare
    ``application/x-www-form-urlencoded``, tritonclient declares none and a tornado proxy in
    between then adds that one. So such a body is read as JSON when it parses as JSON and
    refused with 415 naming its type when it does not (``parse_body``). Arrow and Parquet are
    refused here, before the body is read, when pyarrow is not installed.
    """
    content_type = environ.get("CONTENT_TYPE", "")
    if not content_type or content_type.startswith(JSON):
        return JSON
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON or media.endswith("+json"):
        return JSON
    if media in allowed:
        arrowio.require_for_body(media)
        return media
    return DECLARED_OTHER


def read_body(environ, max_bytes):
    """The raw request body, after checking its size from ``Content-Length`` (before reading)."""
    length = environ.get("CONTENT_LENGTH")
    if not length:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise InvalidInput(
                "chunked request bodies are not supported: send the body with a "
                "Content-Length header (HTTP clients do this for a JSON body they hold)",
                {"field": "body"},
            )
        length = "0"
    try:
        size = int(length)
    except ValueError:
        raise InvalidInput(f"Content-Length {length!r} is not a number") from None
    if size > max_bytes:
        raise PayloadTooLarge(
            f"the body has {size} bytes, more than this server's limit of {max_bytes} "
            "bytes: split the instances into smaller requests",
            {"limit": max_bytes, "size": size},
        )
    data = environ["wsgi.input"].read(size) if size else b""
    environ[BODY_READ] = True
    if not data:
        raise InvalidInput(
            'the body is empty: send JSON such as {"instances": [[...]]}', {"field": "body"}
        )
    return data


def parse_body(environ, data, media, binary_types=()):
    """A JSON request body as Python values (``media`` from ``body_media``).

    A body declared as JSON that does not parse is a 400 saying why; a body declared as another
    type that does not parse is a 415 naming that type and the ones this route takes.
    """
    try:
        return loads(data)
    except JSONDecodeError as exc:
        if media is DECLARED_OTHER:
            declared = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
            others = "".join(f" or '{m}'" for m in binary_types)
            raise UnsupportedMediaType(
                f"the body is declared as {declared!r} and is not JSON: send JSON with "
                f"'Content-Type: {JSON}'{others}",
                {"content_type": declared},
            ) from None
        raise InvalidInput(
            f"the body is not valid JSON ({exc}): send a JSON object such as "
            '{"instances": [[...]]}',
            {"field": "body"},
        ) from None


def _encode(payload):
    try:
        return dumps(payload)
    except JSONEncodeError as exc:
        raise MlhubError(
            f"the model's output cannot be written as JSON ({exc}); make predict() return "
            "numbers, strings or arrays of them",
            {"field": "predictions"},
        ) from exc


def create_app(settings, served, *, metrics, authenticator=None):
    """Build the WSGI app serving ``served`` (a ``ServedModel``) under ``settings``.

    ``authenticator`` is required when ``settings.auth`` is on (``None`` means no checks).
    """
    if settings.auth and authenticator is None:
        raise ValueError("authentication is on but no authenticator was given")
    app = Flask("mlhub.serving")
    max_bytes = settings.max_body_bytes

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

    healthz = dumps({"status": "ok"})
    v2_live_body = dumps({"live": True})
    v2_ready_body = dumps({"ready": True})
    metadata = _encode(served.metadata(settings.owner))
    openapi = dumps(
        build_spec(served, owner=settings.owner, prefix=settings.url_prefix, auth=settings.auth)
    )
    ready_body = dumps({"status": "ready", "name": served.name, "version": served.version})
    v2_metadata = dumps(v2.model_metadata(served)) if served.ready else None
    server_metadata = dumps(v2.server_metadata())
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

    def same_model(name, version=None):
        """404 unless the URL names this model (and, if it names one, its live version)."""
        if name != served.name:
            raise NotFound(
                f"this server serves the model {served.name!r}, not {name!r}",
                {"model": served.name},
            )
        if version is not None and version != served.version:
            raise NotFound(
                f"this server serves version {served.version!r} of {served.name!r}, "
                f"not {version!r}: leave the version out to call the live one",
                {"model": served.name, "version": served.version},
            )

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

    @app.get("/v1/metadata", endpoint="metadata")
    def metadata_view():
        return json_response(metadata)

    @app.post("/v1/predict", endpoint="predict")
    def predict():
        served.require_ready()
        environ = request.environ
        media = body_media(environ, PREDICT_MEDIA)
        arrow_answer = arrowio.wants_arrow(environ.get("HTTP_ACCEPT"))
        proba = bool(environ.get("QUERY_STRING")) and (
            request.args.get("proba", "").lower() in _TRUE
        )
        with predictor.request() as run:
            data = read_body(environ, max_bytes)
            if media in (JSON, DECLARED_OTHER):
                payload = parse_body(environ, data, media, arrowio.MEDIA)
                model_input, rows = served.schema.from_payload(payload)
            else:
                model_input, rows = arrowio.table_input(
                    served.schema, arrowio.read_table(data, media)
                )
            results = run(model_input, rows, WITH_PROBA if proba else PREDICT_ONLY)
        if arrow_answer:
            body = arrowio.write_answer(results, served.classes)
            metrics.add_rows(rows)
            return Response(body, 200, content_type=arrowio.ARROW_STREAM)
        answer = {"predictions": results[PREDICT]}
        if proba:
            answer["probabilities"] = results[PREDICT_PROBA]
            answer["classes"] = served.classes
        body = _encode(answer)
        metrics.add_rows(rows)
        return json_response(body)

    def v2_model(name, version=None):
        same_model(name, version)
        served.require_ready()
        return json_response(v2_metadata)

    def v2_ready(name, version=None):
        same_model(name, version)
        served.require_ready()
        return json_response({"name": served.name, "ready": True})

    def v2_infer(name, version=None):
        same_model(name, version)
        served.require_ready()
        environ = request.environ
        media = body_media(environ)
        with predictor.request() as run:
            data = read_body(environ, max_bytes)
            header_length = environ.get(v2.HEADER_LENGTH)
            if header_length is None:
                body, binary = parse_body(environ, data, media), b""
            else:
                body, binary = v2.split_binary(data, header_length)
            infer = v2.parse_infer(served.schema, body, binary)
            results = run(infer.model_input, infer.rows, infer.outputs)
        answer = {"model_name": served.name, "model_version": served.version}
        if infer.id is not None:
            answer["id"] = infer.id
        header, tail = v2.answer(answer, infer, results, _encode)
        metrics.add_rows(infer.rows)
        if not tail:
            return json_response(header)
        response = Response(header + tail, 200, content_type="application/octet-stream")
        response.headers[v2.HEADER_LENGTH_NAME] = str(len(header))
        return response

    versioned = "/v2/models/<name>/versions/<version>"
    for rule, endpoint, view, methods in (
        ("/v2/models/<name>", "v2_model", v2_model, ["GET"]),
        (versioned, "v2_model", v2_model, ["GET"]),
        ("/v2/models/<name>/ready", "v2_ready", v2_ready, ["GET"]),
        (versioned + "/ready", "v2_ready", v2_ready, ["GET"]),
        ("/v2/models/<name>/infer", "v2_infer", v2_infer, ["POST"]),
        (versioned + "/infer", "v2_infer", v2_infer, ["POST"]),
    ):
        app.add_url_rule(rule, endpoint, view, methods=methods)

    @app.get("/v2", endpoint="v2_server")
    def v2_server():
        return json_response(server_metadata)

    @app.get("/metrics", endpoint="metrics")
    def metrics_view():
        return Response(metrics.render(), 200, content_type=PROMETHEUS)

    @app.get("/openapi.json", endpoint="openapi")
    def openapi_view():
        return json_response(openapi)

    return Gateway(app, settings.url_prefix, metrics, max_bytes)
