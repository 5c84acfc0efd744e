"""Errors of the notebook side, and the one place publisher replies become typed errors.

The publisher answers failures with ``{"error", "code", "detail"}`` (``mlhub.errors``). The
kernel client turns such a reply back into the ``mlhub.errors`` class with that code, so
``except InvalidBundle`` works the same whether the notebook or the publisher found the problem.
"""

import json

from mlhub import errors


class NotConfigured(errors.MlhubError):
    """This kernel or server was not started by mlhub, so it cannot know where the publisher is."""

    status = 503
    error = "not_configured"


class PublisherUnreachable(errors.MlhubError):
    """The publisher did not answer (down, wrong URL, or a proxy error page instead of JSON)."""

    status = 502
    error = "publisher_unreachable"


class PublisherError(errors.MlhubError):
    """A publisher error whose code no ``mlhub.errors`` class carries; keeps status and code."""

    def __init__(self, message, detail=None, *, status=500, code="internal_error"):
        super().__init__(message, detail)
        self.status = status
        self.error = code


def _by_code():
    found, todo = {}, [errors.MlhubError]
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
