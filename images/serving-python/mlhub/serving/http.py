"""Request and response plumbing of the serving app's routes (``routes_v1``, ``routes_v2``):
how a body is recognised, size-checked, read and parsed, how an answer is encoded, and
``error_response``, the one place where errors become HTTP statuses and JSON bodies
``{"error", "code", "detail"}``.
"""

import logging

from flask import Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mlhub.errors import InvalidInput, MlhubError, PayloadTooLarge, UnsupportedMediaType

from . import arrowio
from .jsonio import JSONDecodeError, JSONEncodeError, dumps, loads
from .requestlog import ERROR

log = logging.getLogger("mlhub.serving")

JSON = "application/json"
BODY_READ = "mlhub.body_read"  # environ key: the request body has been consumed
DECLARED_OTHER = "declared-other"  # body_media: a type that is neither JSON nor a binary one


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
    request.environ[ERROR] = (error.error, error.message)  # for the request log
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


def encode(payload):
    try:
        return dumps(payload)
    except JSONEncodeError as exc:
        raise MlhubError(
            f"the model's output cannot be written as JSON ({exc}); make predict() return "
            "numbers, strings or arrays of them",
            {"field": "predictions"},
        ) from exc
