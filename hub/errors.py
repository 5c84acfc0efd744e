"""Typed errors shared by every mlhub component.

Each error carries the HTTP status it maps to, so the publisher, the serving runtime and the
notebook extension translate them in one place each (``error_response``) instead of guessing.
The message says what was wrong *and what to do about it*; ``detail`` carries the specifics
(a field name, the expected and received values) for programs.
"""


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


class NotReady(MlhubError):
    status = 503
    error = "not_ready"


class DeployError(MlhubError):
    """A deployer could not start, switch or stop a model's serving processes."""

    status = 502
    error = "deploy_failed"
