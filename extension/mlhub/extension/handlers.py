"""Routes under ``{base_url}/mlhub/api/``: a thin, authenticated forwarder to the publisher.

The browser and the R helper cannot hold the hub token of this server; they call their own
notebook server (which already authenticated them), and these handlers call the publisher for
the server's owner. Publisher answers pass through with their status and body; our own typed
errors (not configured, unreachable, bad name) become JSON in one place, ``write_error``.
"""

import asyncio
import base64
import binascii
import json
import tempfile
import urllib.parse
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from mlhub.bundle import pack, save_r_bundle, validate_name
from mlhub.errors import InvalidBundle, MlhubError, PayloadTooLarge

SETTINGS_KEY = "mlhub"  # web_app.settings[SETTINGS_KEY] is the Forwarder


class MlhubHandler(APIHandler):
    """Shared plumbing: the forwarder, the error mapping, relaying a publisher answer."""

    @property
    def forwarder(self):
        return self.settings[SETTINGS_KEY]

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MlhubError):
            self.set_status(exc.status)
            self.finish(json.dumps(exc.to_dict()))
        else:
            super().write_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb):
        if isinstance(value, MlhubError):  # an expected, explained failure: no traceback
            self.log.warning("mlhub %s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    def relay(self, reply):
        """Answer with the publisher's status, content type and body, unchanged."""
        self.set_status(reply.code, reason=reply.reason)
        if reply.code == 204:
            return self.finish()
        content_type = reply.headers.get("Content-Type", "application/json")
        return self.finish(reply.body, set_content_type=content_type)


class StatusHandler(MlhubHandler):
    """``GET status``: user, URLs and whether the publisher is reachable (never an error)."""

    @web.authenticated
    async def get(self):
        self.finish(json.dumps(await self.forwarder.status()))


class ForwardHandler(MlhubHandler):
    """Forward one REST call; ``methods`` says which this route allows (others get 405)."""

    def initialize(self, methods):
        self.methods = methods

    async def _forward(self, name=None, rest=""):
        if self.request.method not in self.methods:
            raise web.HTTPError(405)
        if name is None:
            parts = ("models",)
        else:
            parts = self.forwarder.model_parts(validate_name(name), *rest.split("/"))
        post = self.request.method == "POST"
        reply = await self.forwarder.fetch(
            self.request.method,
            [p for p in parts if p],
            query=self.request.query,
            body=self.request.body if post else None,
            headers={"Content-Type": self.request.headers.get("Content-Type", "application/json")}
            if post
            else None,
        )
        self.relay(reply)

    @web.authenticated
    async def get(self, **path):
        await self._forward(**path)

    @web.authenticated
    async def post(self, **path):
        await self._forward(**path)

    @web.authenticated
    async def delete(self, **path):
        await self._forward(**path)


@web.stream_request_body
class UploadHandler(MlhubHandler):
    """``POST models/{name}/versions``: the bundle streams through to the publisher.

    The upstream request starts in ``prepare`` (after authentication) and is fed chunk by
    chunk through a small queue, so a large model never sits in this server's memory.
    """

    _upstream = None

    async def prepare(self):
        await super().prepare()
        if self._finished or self.request.method != "POST":
            return
        name = validate_name(self.path_kwargs["name"])
        settings = self.forwarder.settings
        limit = await self.forwarder.upload_limit()
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            # read and drop the body, so the client gets this answer rather than a reset
            self.request.connection.set_max_body_size(int(length))
            raise PayloadTooLarge(
                f"the bundle ({int(length)} bytes) is larger than the publisher accepts "
                f"({limit / 1e6:.0f} MB, PublisherApp.max_upload_bytes)",
                {"limit": limit, "size": int(length)},
            )
        self.request.connection.set_max_body_size(limit)
        self.request.connection.set_body_timeout(settings.upload_timeout)
        headers = {"Content-Type": self.request.headers.get("Content-Type", "application/gzip")}
        if length is not None:
            headers["Content-Length"] = length
        self._chunks = asyncio.Queue(maxsize=8)
        self._upstream = asyncio.ensure_future(
            self.forwarder.fetch(
                "POST",
                self.forwarder.model_parts(name, "versions"),
                query=self.request.query,
                headers=headers,
                timeout=settings.upload_timeout,
                body_producer=self._produce,
            )
        )

    async def _produce(self, write):
        while (chunk := await self._chunks.get()) is not None:
            await write(chunk)

    async def _put(self, chunk):
        """Queue a chunk, unless the upstream request has ended (then drop the rest)."""
        put = asyncio.ensure_future(self._chunks.put(chunk))
        await asyncio.wait({put, self._upstream}, return_when=asyncio.FIRST_COMPLETED)
        put.cancel()

    async def data_received(self, chunk):
        if self._upstream is not None:  # None when prepare refused the request: drop the body
            await self._put(chunk)

    @web.authenticated
    async def post(self, name):
        await self._put(None)
        self.relay(await self._upstream)

    def on_connection_close(self):
        if self._upstream is not None:
            self._upstream.cancel()


class RBundleHandler(MlhubHandler):
    """``POST models/{name}/r-bundle``: the R helper's publish, bundled here.

    ``mlhub::publish`` sends what only R knows, as JSON: ``model_rds`` (the ``saveRDS`` file,
    base64), ``signature``, ``example``, ``r_version``, ``r_packages``, ``model_class``,
    ``description``, ``predict_args``. This handler writes the bundle with
    ``mlhub.bundle.save_r_bundle`` (so the bundle format lives in Python only) and uploads it
    to the publisher; the answer is the publisher's (202 with ``event_id`` to follow). The RDS is
    never read here: only the owner's serving process loads it.
    """

    FIELDS = ("signature", "example", "r_packages", "model_class", "description", "parity")

    async def prepare(self):
        await super().prepare()
        # the JSON carries the model as base64 (4/3 of its size): allow that much of the
        # publisher's upload limit, which the bundle made from it meets again
        limit = await self.forwarder.upload_limit()
        self.request.connection.set_max_body_size(limit * 4 // 3 + 64 * 1024)

    @web.authenticated
    async def post(self, name):
        validate_name(name)
        try:
            spec = json.loads(self.request.body or b"")
            # base64 encoders wrap lines (R's does at 76 characters): drop the whitespace
            model_rds = base64.b64decode("".join(spec["model_rds"].split()), validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidBundle(
                "the R helper's request must be JSON with the model as base64 'model_rds' "
                f"({type(exc).__name__}: {exc}); update the mlhub R package",
                {"field": "model_rds"},
            ) from None
        if not isinstance(spec, dict) or not isinstance(spec.get("predict_args", {}), dict):
            raise InvalidBundle("predict_args must be a named list", {"field": "predict_args"})
        with tempfile.TemporaryDirectory(prefix="mlhub-r-bundle-") as tmp:
            save_r_bundle(
                model_rds,
                Path(tmp, "bundle"),
                name=name,
                r_version=spec.get("r_version"),
                predict_args=spec.get("predict_args") or {},
                **{k: spec[k] for k in self.FIELDS if spec.get(k) is not None},
            )
            body = pack(Path(tmp, "bundle"))
        workers = self.get_query_argument("workers", None)
        query = {"workers": int(workers)} if workers and workers.isdigit() else {}
        for option in ("inference_log", "alias"):  # the publisher checks them
            value = self.get_query_argument(option, None)
            if value is not None:
                query[option] = value
        reply = await self.forwarder.fetch(
            "POST",
            self.forwarder.model_parts(name, "versions"),
            query=urllib.parse.urlencode(query),
            headers={"Content-Type": "application/gzip"},
            timeout=self.forwarder.settings.upload_timeout,
            body=body,
        )
        self.relay(reply)


NAME = r"(?P<name>[^/]+)"
ROUTES = [
    # (path under mlhub/api/, handler, options): the whole surface, in one place
    (r"status", StatusHandler, {}),
    (r"models", ForwardHandler, {"methods": ("GET",)}),
    (rf"models/{NAME}", ForwardHandler, {"methods": ("GET", "DELETE")}),
    (rf"models/{NAME}/versions", UploadHandler, {}),
    (rf"models/{NAME}/r-bundle", RBundleHandler, {}),
    (rf"models/{NAME}/(?P<rest>events|logs)", ForwardHandler, {"methods": ("GET",)}),
    (rf"models/{NAME}/(?P<rest>rollback|scale)", ForwardHandler, {"methods": ("POST",)}),
    (rf"models/{NAME}/(?P<rest>keys)", ForwardHandler, {"methods": ("GET", "POST")}),
    (rf"models/{NAME}/(?P<rest>keys/[^/]+)", ForwardHandler, {"methods": ("DELETE",)}),
]


def setup_handlers(web_app, forwarder):
    """Put the forwarder in the app settings and add the routes under the server's base URL."""
    web_app.settings[SETTINGS_KEY] = forwarder
    base = url_path_join(web_app.settings["base_url"], "mlhub", "api")
    web_app.add_handlers(
        ".*$", [(url_path_join(base, path) + "$", cls, opts) for path, cls, opts in ROUTES]
    )
