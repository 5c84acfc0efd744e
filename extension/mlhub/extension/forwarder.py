"""The server extension's core: calling the publisher for this server's user.

Kept apart from the handlers (jupyterlab-git style) so it can be driven without a server. The
browser and the R helper talk to ``/mlhub/api/...`` on their own notebook server; this class
adds the server's hub token and the owner's name and calls the publisher, returning its answer
untouched so the publisher's statuses and JSON errors reach the caller as they are.
"""

import json

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from mlhub.errors import MlhubError, unreachable


class Forwarder:
    """Calls the publisher REST API with this server's token; one per server, in settings."""

    def __init__(self, settings, http=None):
        self.settings = settings
        self.http = http or AsyncHTTPClient()

    def model_parts(self, name, *rest):
        """The API path of one of this user's models."""
        return ("models", self.settings.user, name, *rest)

    async def fetch(self, method, parts, *, query="", headers=None, timeout=None, **body):
        """Send one request; return the ``HTTPResponse`` whatever its status.

        ``body`` is ``body=bytes`` or ``body_producer=async fn(write)`` (streamed, chunked
        unless ``headers`` carry a Content-Length). A publisher that cannot be reached
        raises ``PublisherUnreachable``; a missing setting raises ``NotConfigured``.
        """
        settings = self.settings.require()
        url = settings.api_url(*parts) + (f"?{query}" if query else "")
        request = HTTPRequest(
            url,
            method=method,
            headers={"Authorization": f"token {settings.api_token}", **(headers or {})},
            request_timeout=timeout or settings.request_timeout,
            connect_timeout=settings.request_timeout,
            follow_redirects=False,
            **body,
        )
        try:
            return await self.http.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:  # refused, DNS, reset, timed out (599)
            raise unreachable(settings.publisher_url, exc) from exc

    async def status(self):
        """Who and where we are, and whether the publisher answers its health check."""
        settings = self.settings
        found = {
            "user": settings.user,
            "publisher_url": settings.publisher_url,
            "public_url": settings.public_url,
            "models_url": settings.models_url,
        }
        try:
            reply = await self.fetch("GET", ("health",))
        except MlhubError as exc:
            return {**found, "publisher": {"reachable": False, **exc.to_dict()}}
        if reply.code != 200:
            error = f"the publisher's health check answered HTTP {reply.code}"
            return {**found, "publisher": {"reachable": False, "error": error}}
        return {**found, "publisher": {"reachable": True, **json.loads(reply.body)}}

    async def upload_limit(self):
        """The publisher's upload limit in bytes (``PublisherApp.max_upload_bytes``, from its
        health check): the one limit a bundle meets, so this server refuses a larger upload
        before reading it and never holds a body the publisher would refuse."""
        reply = await self.fetch("GET", ("health",))
        limit = json.loads(reply.body).get("max_upload_bytes") if reply.code == 200 else None
        if not isinstance(limit, int):
            why = f"its health check answered HTTP {reply.code} without its upload limit"
            raise unreachable(self.settings.publisher_url, why)
        return limit
