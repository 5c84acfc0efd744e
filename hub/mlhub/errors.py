"""Typed errors shared by every mlhub component.

Each error carries the HTTP status it maps to, so the publisher, the serving runtime and the
notebook extension translate them in one place each (``error_response``) instead of guessing.
The message says what was wrong *and what to do about it*; ``detail`` carries the specifics
(a field name, the expected and received values) for programs.

``from_reply`` is the way back: ``mlhub.publisher.client`` (under ``mlhub models`` and the
notebook extension) turns a JSON error reply into the class with that code, so
``except InvalidBundle`` works the same whether the caller or the publisher found the problem.
"""

import json


class MlhubError(Exception):
    """Base class: ``status`` is the HTTP status code this error maps to."""

    status = 500
    error = "internal_error"  # the machine-readable code

    def __init__(self, message, detail=None):
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self):
        """The JSON body every component returns: a readable ``error``, a machine ``code``."""
        return {"error": self.message, "code": self.error, "detail": self.detail}


class BadRequest(MlhubError):
    status = 400
    error = "bad_request"


class InvalidName(BadRequest):
    error = "invalid_name"


class InvalidBundle(BadRequest):
    """The model bundle is malformed, corrupt, or its model cannot be loaded."""

    error = "invalid_bundle"


class InvalidInput(BadRequest):
    """A prediction payload does not match the model's input signature."""

    error = "invalid_input"


class Unauthorized(MlhubError):
    status = 401
    error = "unauthorized"


class Forbidden(MlhubError):
    status = 403
    error = "forbidden"


class NotFound(MlhubError):
    status = 404
    error = "not_found"


class Conflict(MlhubError):
    status = 409
    error = "conflict"


class PayloadTooLarge(MlhubError):
    status = 413
    error = "payload_too_large"


class UnsupportedMediaType(MlhubError):
    status = 415
    error = "unsupported_media_type"


class TooManyRequests(MlhubError):
    status = 429
    error = "too_many_requests"


class NotReady(MlhubError):
    status = 503
    error = "not_ready"


class DeployError(MlhubError):
    """A deployer could not start, switch or stop a model's serving processes."""

    status = 502
    error = "deploy_failed"


class EngineUnavailable(MlhubError):
    """No container engine answers (``mlhub images``): not started, or the wrong address."""

    status = 503
    error = "engine_unavailable"


class ImageError(MlhubError):
    """A standard image could not be built, tested or pushed; the message says which and why."""

    status = 500
    error = "image_failed"


class InvalidImageSpec(ImageError):
    """An ``images/<name>/image.yaml`` (or an image name) the pipeline cannot use."""

    status = 400
    error = "invalid_image_spec"


class PublisherUnreachable(MlhubError):
    """The publisher did not answer (down, wrong URL, or a proxy error page instead of JSON)."""

    status = 502
    error = "publisher_unreachable"


class PublisherError(MlhubError):
    """A publisher error whose code no ``mlhub.errors`` class carries; keeps status and code."""

    def __init__(self, message, detail=None, *, status=500, code="internal_error"):
        super().__init__(message, detail)
        self.status = status
        self.error = code


def _by_code():
    """Every error class by its code, subclasses of other modules included (at call time)."""
    found, todo = {}, [MlhubError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.error, cls)
        todo.extend(cls.__subclasses__())
    return found


def unreachable(url, reason):
    """The error for a publisher that cannot be reached, with what to check."""
    return PublisherUnreachable(
        f"the mlhub publisher at {url} is unreachable ({reason}); check that the hub is running "
        "(`mlhub up`) and that MLHUB_PUBLISHER_URL points at it",
        {"url": url, "reason": str(reason)},
    )


def from_reply(url, status, body):
    """The typed error for a failed publisher reply (``status`` >= 400, ``body`` bytes)."""
    try:
        data = json.loads(body or b"")
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        text = (body or b"")[:200].decode("utf-8", "replace").strip()
        if status in (502, 503, 504):
            return unreachable(url, f"HTTP {status}: {text or 'no body'}")
        return PublisherError(
            f"the publisher answered HTTP {status} without an error message: {text!r}",
            {"url": url},
            status=status,
        )
    code = data.get("code") or "internal_error"
    cls = _by_code().get(code)
    if cls is None:
        return PublisherError(data["error"], data.get("detail"), status=status, code=code)
    err = cls(data["error"], data.get("detail"))
    err.status = status  # the publisher's word on the status wins over the class default
    return err
