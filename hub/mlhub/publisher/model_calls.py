"""Calling a published model from the publisher, as one of its callers would.

The Models page's Try it form and its traffic charts call the model with the page user's own
hub token, at where the hub's proxy routes the model (the route the deployer set: a local port
or a pod or Service in the cluster). So the model answers exactly as it answers that user's
clients, with its own authentication and errors, and the publisher needs no credential of its
own for it.
"""

from tornado.httpclient import AsyncHTTPClient

from mlhub.errors import NotReady


async def call(routes, ref, method, path, token, body=None, timeout=60):
    """``method`` ``path`` of the model ``ref`` (a ``ModelRef``) through its proxy route in
    ``routes`` (``ProxyRoutes``), as the holder of ``token``: ``(status, answer text)``;
    ``NotReady`` when the model has no route or nothing answers."""
    route = (await routes.get_all()).get(ref.url_prefix)
    if route is None:
        raise NotReady(f"{ref.key} is not serving now (no route): see its events")
    headers = {"Authorization": f"token {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    reply = await AsyncHTTPClient().fetch(
        route["target"].rstrip("/") + ref.url_prefix + path,
        method=method,
        body=body,
        headers=headers,
        request_timeout=timeout,
        raise_error=False,
    )
    if reply.code == 599:  # no answer at all
        raise NotReady(f"{ref.key} did not answer: {reply.error}")
    return reply.code, reply.body.decode(errors="replace")
