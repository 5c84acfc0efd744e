"""Errors only the notebook side raises; the rest are ``mlhub.errors`` (which also turns the
publisher's JSON error replies back into typed errors, ``mlhub.errors.from_reply``)."""

from mlhub import errors


class NotConfigured(errors.MlhubError):
    """This kernel or server was not started by mlhub, so it cannot know where the publisher is."""

    status = 503
    error = "not_configured"
