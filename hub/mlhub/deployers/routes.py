"""Model routes in configurable-http-proxy, through its REST API.

The publisher owns ``/models/...`` routes in the same proxy JupyterHub uses. Their data carries
``"mlhub": true`` and no ``jupyterhub`` key, so the hub's periodic route check leaves them alone
(it only considers routes with that key). A proxy restarted by the hub comes back without them,
so callers re-add them periodically (``Deployer.route_check_interval``).
"""

import json
import os

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from mlhub.errors import DeployError


class ProxyRoutes(LoggingConfigurable):
    """Add, remove and list routes of a configurable-http-proxy."""

    api_url = Unicode(
        help="""REST API of configurable-http-proxy, e.g. ``http://127.0.0.1:8001``.
        Default: ``$MLHUB_PROXY_API_URL``, else ``http://127.0.0.1:8001``.""",
    ).tag(config=True)

    @default("api_url")
    def _default_api_url(self):
        return os.environ.get("MLHUB_PROXY_API_URL", "http://127.0.0.1:8001")

    auth_token = Unicode(
        help="""Token of the proxy's REST API. Default: ``$CONFIGPROXY_AUTH_TOKEN``.""",
    ).tag(config=True)

    @default("auth_token")
    def _default_auth_token(self):
        return os.environ.get("CONFIGPROXY_AUTH_TOKEN", "")

    request_timeout = Float(10.0, help="Seconds to wait for one proxy API call (default 10).").tag(
        config=True
    )

    async def _call(self, method, path, body=None):
        url = self.api_url.rstrip("/") + "/api/routes" + path
        req = HTTPRequest(
            url,
            method=method,
            headers={"Authorization": f"token {self.auth_token}"},
            body=None if body is None else json.dumps(body),
            request_timeout=self.request_timeout,
        )
        try:
            return await AsyncHTTPClient().fetch(req)
        except HTTPClientError as exc:
            if method == "DELETE" and exc.code == 404:
                return None  # already gone: what we wanted
            raise DeployError(
                f"the proxy refused {method} {path} ({exc.code}): check CONFIGPROXY_AUTH_TOKEN",
                {"proxy": self.api_url, "status": exc.code},
            ) from exc
        except OSError as exc:
            raise DeployError(
                f"cannot reach the proxy API at {self.api_url} ({exc}); is mlhub running?",
                {"proxy": self.api_url},
            ) from exc

    async def add(self, path, target, **data):
        """Point ``path`` (and everything below it) at ``target``; replaces an existing route."""
        await self._call("POST", path, {"target": target, "mlhub": True, **data})

    async def delete(self, path):
        await self._call("DELETE", path)

    async def get_all(self):
        """``{path: {"target": ..., ...}}`` for every route in the proxy."""
        resp = await self._call("GET", "")
        return json.loads(resp.body)
