"""The publisher's HTTP handlers and its one route table (``API_ROUTES``).

Handlers authenticate, authorize and parse; ``ModelManager`` does the work. Every error, typed
(``mlhub.errors``) or not, becomes the JSON body ``{"error", "code", "detail"}`` in one place,
``BaseHandler.write_error``. Routes are written as OpenAPI path templates (``{user}``), so the
OpenAPI document can be checked against them.
"""

import hashlib
import json
import re
import time
import zlib

from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

import mlhub
from mlhub.bundle import validate_name
from mlhub.errors import (
    BadRequest,
    MlhubError,
    NotFound,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from mlhub.input_drift import PSI_THRESHOLD
from mlhub.publisher.auth import (
    MANAGE,
    READ,
    Caller,
    authorize,
    authorized_model,
    require_api_scope,
    visible_owner,
)
from mlhub.publisher.credentials import BUNDLE, LOG, TOKEN_PREFIXES
from mlhub.publisher.inference_log import MAX_READ_ROWS
from mlhub.publisher.manager import UNCHANGED
from mlhub.publisher.model_metrics import summary
from mlhub.publisher.pages import page_routes
from mlhub.publisher.views import parse_time
from mlhub.resources import RESOURCE_PARAMS
from mlhub.steps import DEFAULT_ALIAS

# headers of one connection, not of the request or answer a sleeping model's request passes on
HOP_HEADERS = {
    "Host",
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "Content-Length",
    "Te",
    "Trailer",
    "Upgrade",
    "Proxy-Authorization",
}
BODY_METHODS = ("POST", "PUT", "PATCH")
PASS_ON_TIMEOUT = 300.0  # seconds a woken model may take to answer the request that woke it
MAX_LOG_LINES = 100_000  # ?tail= of the logs: at most this many lines in one answer
MAX_INFERENCE_BATCH = 256 << 20  # bytes of one inference log batch, once decompressed
BUNDLE_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/octet-stream",
)


class BaseHandler(web.RequestHandler):
    """JSON in, JSON out, hub identity, typed errors mapped to HTTP."""

    @property
    def manager(self):
        return self.settings["manager"]

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]

    async def caller(self):
        """The authenticated caller, or 401 (no or unknown token) / 403 (missing scope).

        ``HubOAuth`` takes the token from the Authorization header, else from its OAuth cookie;
        a cookie only counts on unsafe methods with a valid xsrf token (it checks that itself).
        """
        user = await self.hub_auth.get_user(self, sync=False)
        if not user:
            raise Unauthorized(
                "no valid JupyterHub token: send 'Authorization: token <token>' "
                "(create one at <hub>/hub/token)",
            )
        caller = Caller.from_hub_model(user)
        require_api_scope(caller)
        return caller

    async def model_for(self, action, user, name):
        """``(caller, model)`` for ``user/name`` once the caller may ``action`` it
        (``auth.authorized_model``)."""
        caller = await self.caller()
        return caller, authorized_model(self.manager, caller, action, user, name)

    def model_token_model(self, user, name, purpose=BUNDLE):
        """The model ``user/name`` when the request carries its ``purpose`` token (``mlhb_...``
        or ``mlhl_...``: its processes' credentials, ``credentials``), None when it carries no
        such token (a hub token, to be checked as usual); 401 for another model's."""
        header = self.request.headers.get("Authorization", "")
        token = header.split(None, 1)[1].strip() if " " in header else ""
        if not token.startswith(TOKEN_PREFIXES[purpose]):
            return None
        if not self.manager.bundle_tokens.valid(user, name, token, purpose):
            raise Unauthorized(f"this {purpose} token is not the one of {user}/{name}")
        return self.manager.get(user, name)

    def time_argument(self, name):
        """``?name=`` as a naive UTC datetime (``views.parse_time``), or None when left out."""
        raw = self.get_query_argument(name, None)
        return None if raw is None else parse_time(raw, name)

    def json_body(self, example=None):
        """The request's JSON object; with ``example``, a body is required (an empty one is a
        400 showing ``example``), so a request that lost its body never changes anything."""
        if example is not None and not self.request.body.strip():
            raise BadRequest(f"this call needs a JSON body such as {example}", {"field": "body"})
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data

    def int_argument(self, name, default, minimum=-(2**63), maximum=2**63 - 1):
        """``?name=`` as an int within ``[minimum, maximum]`` (at most a 64-bit one, what the
        store can compare with), or ``default`` when left out; a 400 naming the range."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"?{name}= must be an integer, got {raw!r}", {"field": name}) from None
        if not minimum <= value <= maximum:
            raise BadRequest(
                f"?{name}= must be between {minimum} and {maximum}, got {value}",
                {"field": name, "minimum": minimum, "maximum": maximum},
            )
        return value

    def write_json(self, data, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code, **kwargs):
        """The one place errors become HTTP answers."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MlhubError):
            self.set_status(exc.status)
            body = exc.to_dict()
        elif isinstance(exc, web.HTTPError):
            body = {
                "error": exc.log_message or self._reason,
                "code": f"http_{status_code}",
                "detail": None,
            }
        else:
            body = {
                "error": "internal error in the publisher; its log has the details",
                "code": "internal_error",
                "detail": None,
            }
        if isinstance(exc, Unauthorized):
            self.set_header("WWW-Authenticate", 'token realm="jupyterhub"')
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb):
        # typed errors are expected answers: their message is the whole story
        if isinstance(value, MlhubError):
            log = self.log.error if value.status >= 500 else self.log.warning
            log("%s %s: %s", self.request.method, self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)

    @property
    def log(self):
        return self.settings["log"]


class HealthHandler(BaseHandler):
    def get(self):
        self.write_json(
            {
                "status": "ok",
                "version": mlhub.__version__,
                "max_upload_bytes": self.settings["max_upload_bytes"],
                # the Models page's path on the hub's origin (JupyterLab's side panel links it)
                "models_page": self.settings["service_prefix"],
            }
        )


class OpenAPIHandler(BaseHandler):
    def get(self):
        self.write_json(self.settings["openapi"])


class WhoAmIHandler(BaseHandler):
    async def get(self):
        self.write_json((await self.caller()).to_dict())


class ModelListHandler(BaseHandler):
    async def get(self):
        caller = await self.caller()
        owner = visible_owner(caller, self.get_query_argument("user", None))
        self.write_json({"models": self.manager.models(owner)})


class ModelHandler(BaseHandler):
    async def get(self, user, name):
        _, model = await self.model_for(READ, user, name)
        self.write_json(self.manager.view(model))

    async def patch(self, user, name):
        """Change how the model is served: ``{"inference_log": 0.1}`` (a rolling restart of
        the live version), ``{"sleep_after": 600}`` (when it sleeps; no restart)."""
        caller, model = await self.model_for(MANAGE, user, name)
        body = self.json_body('{"inference_log": 0.1} or {"sleep_after": 600}')
        settings = {"inference_log", "sleep_after"}
        if not body or not set(body) <= settings:
            raise BadRequest(
                f"the settings a model takes here are {', '.join(sorted(settings))}, not "
                f"{sorted(set(body) - settings) or 'none'}",
                {"field": "body"},
            )
        answer = await self.manager.configure(
            caller,
            model,
            inference_log=body.get("inference_log", UNCHANGED),
            sleep_after=body.get("sleep_after", UNCHANGED),
        )
        self.write_json(answer, 202 if answer["event_id"] is not None else 200)

    async def delete(self, user, name):
        _, model = await self.model_for(MANAGE, user, name)
        await self.manager.delete(model)
        self.set_status(204)
        self.finish()


@web.stream_request_body
class VersionsHandler(BaseHandler):
    """``POST .../versions``: the bundle streams to a temporary file, never into memory."""

    upload = None
    refused = None  # the error to answer with once the body is read

    async def prepare(self):
        # A refusal is answered only after the body is read and dropped (up to
        # max_upload_bytes, or the size it declared if that is the refusal): answering while
        # the client still sends closes the connection, and the proxy in between then answers
        # 503 (broken pipe) instead of the 401/403/400/413.
        try:
            self.publisher = await self.accept()
        except MlhubError as exc:
            self.refused = exc
            return
        self.upload = self.manager.new_upload()

    async def accept(self):
        """The caller, once the upload may go ahead; raises the refusal otherwise."""
        user, name = self.path_kwargs["user"], self.path_kwargs["name"]
        caller = await self.caller()
        authorize(caller, MANAGE, user)
        validate_name(name)
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype not in BUNDLE_TYPES:
            raise UnsupportedMediaType(
                f"send the bundle as a tar.gz with Content-Type: application/gzip (got {ctype!r})",
                {"content_type": ctype},
            )
        limit = self.settings["max_upload_bytes"]
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            self.request.connection.set_max_body_size(int(length))
            raise self.too_large(limit)
        self.request.connection.set_max_body_size(limit)
        return caller

    @staticmethod
    def too_large(limit):
        return PayloadTooLarge(
            f"the bundle is larger than the upload limit of {limit} bytes "
            f"({limit / 1e6:.0f} MB, PublisherApp.max_upload_bytes)",
            {"limit": limit},
        )

    def data_received(self, chunk):
        if self.upload is not None:
            self.upload.write(chunk)

    async def post(self, user, name):
        if self.refused is not None:
            raise self.refused
        self.upload.close()
        try:
            outcome = await self.manager.publish(
                self.publisher,
                user,
                name,
                self.upload,
                workers=self.int_argument("workers", None),
                max_bundle_bytes=self.settings["max_bundle_bytes"],
                batching=self.batching_argument(),
                resources=self.resources_argument(),
                inference_log=self.get_query_argument("inference_log", UNCHANGED),
                sleep_after=self.sleep_after_argument(),
                alias=self.get_query_argument("alias", None),
            )
        finally:
            self.upload.discard()
        self.write_json(outcome.body, 202 if outcome.started else 200)

    def sleep_after_argument(self):
        """``?sleep_after=SECONDS|never|default`` (``check_sleep_after``), or ``UNCHANGED``."""
        raw = self.get_query_argument("sleep_after", None)
        if raw is None:
            return UNCHANGED
        named = {"never": 0, "default": None}
        if raw in named:
            return named[raw]
        try:
            return int(raw)
        except ValueError:
            return raw  # refused by the check, naming the value

    def batching_argument(self):
        """``?batching=on|off`` with ``batch_max_size``/``batch_max_wait_ms`` (the serving
        runtime's defaults when left out), or ``UNCHANGED`` if none of them is given."""
        switch = self.get_query_argument("batching", None)
        size = self.int_argument("batch_max_size", None)
        wait = self.int_argument("batch_max_wait_ms", None)
        if switch is None and size is None and wait is None:
            return UNCHANGED
        if switch not in (None, "on", "off"):
            raise BadRequest(f"?batching= must be on or off, got {switch!r}", {"field": "batching"})
        if switch == "off":
            return None
        given = {"max_size": size, "max_wait_ms": wait}
        return {k: v for k, v in given.items() if v is not None}

    def resources_argument(self):
        """``?cpu=&memory=&cpu_limit=&memory_limit=`` (Kubernetes quantities) as given, or
        ``UNCHANGED`` if none of them is."""
        given = {
            name: self.get_query_argument(name)
            for name in RESOURCE_PARAMS
            if self.get_query_argument(name, None) is not None
        }
        return given or UNCHANGED

    def on_connection_close(self):
        if self.upload is not None:
            self.upload.discard()
        super().on_connection_close()


class HistoryHandler(BaseHandler):
    async def get(self, user, name):
        _, model = await self.model_for(READ, user, name)
        self.write_json(self.manager.history(model))


class EventsHandler(BaseHandler):
    async def get(self, user, name):
        _, model = await self.model_for(READ, user, name)
        since = self.int_argument("since", 0, minimum=0)
        self.write_json({"events": self.manager.events(model, since)})


class RollbackHandler(BaseHandler):
    async def post(self, user, name):
        caller, model = await self.model_for(MANAGE, user, name)
        version = self.json_body().get("version", "previous")
        if not isinstance(version, str):
            raise BadRequest("version must be 'sha256:...' or 'previous'", {"field": "version"})
        self.write_json(await self.manager.rollback(caller, model, version), 202)


class AliasesHandler(BaseHandler):
    async def get(self, user, name):
        _, model = await self.model_for(READ, user, name)
        self.write_json({"aliases": self.manager.view(model)["aliases"]})


class AliasHandler(BaseHandler):
    async def get(self, user, name, alias):
        _, model = await self.model_for(READ, user, name)
        found = [a for a in self.manager.view(model)["aliases"] if a["name"] == alias]
        if not found:
            raise NotFound(f"{model.key} has no alias {alias!r}", {"alias": alias})
        self.write_json(found[0])

    async def put(self, user, name, alias):
        """Point the alias at a version: ``{"version": "sha256:..." | "previous" | alias}``."""
        caller, model = await self.model_for(MANAGE, user, name)
        version = self.json_body('{"version": "sha256:..."}').get("version")
        answer = await self.manager.set_alias(caller, model, alias, version)
        self.write_json(answer, 202 if answer["event_id"] is not None else 200)

    async def delete(self, user, name, alias):
        caller, model = await self.model_for(MANAGE, user, name)
        await self.manager.delete_alias(caller, model, alias)
        self.set_status(204)
        self.finish()


class CanaryHandler(BaseHandler):
    async def get(self, user, name):
        _, model = await self.model_for(READ, user, name)
        self.write_json(self.manager.canary(model))

    async def put(self, user, name):
        """Start a canary, or change its share: ``{"version": ..., "percent": 20}``."""
        caller, model = await self.model_for(MANAGE, user, name)
        body = self.json_body('{"version": "sha256:...", "percent": 20}')
        answer = await self.manager.start_canary(
            caller, model, body.get("version"), body.get("percent")
        )
        self.write_json(answer, 202 if answer["event_id"] is not None else 200)

    async def delete(self, user, name):
        """Abort the canary: every request to production again."""
        caller, model = await self.model_for(MANAGE, user, name)
        await self.manager.end_canary(caller, model)
        self.set_status(204)
        self.finish()


class CanaryPromoteHandler(BaseHandler):
    async def post(self, user, name):
        caller, model = await self.model_for(MANAGE, user, name)
        self.write_json(await self.manager.promote_canary(caller, model), 202)


class ShadowHandler(BaseHandler):
    async def get(self, user, name):
        """The shadow and how its answers compare (``?since=``, ``?limit=`` rows)."""
        _, model = await self.model_for(MANAGE, user, name)  # the rows hold callers' data
        limit = self.int_argument("limit", MAX_READ_ROWS, minimum=1, maximum=MAX_READ_ROWS)
        answer = await self.manager.shadow(model, since=self.time_argument("since"), limit=limit)
        answer["rows"] = [_row_json(r) for r in answer["rows"]]
        self.write_json(answer)

    async def put(self, user, name):
        """Start a shadow, or change its share: ``{"version": ..., "percent": 10}``."""
        caller, model = await self.model_for(MANAGE, user, name)
        body = self.json_body('{"version": "sha256:...", "percent": 10}')
        answer = await self.manager.start_shadow(
            caller, model, body.get("version"), body.get("percent")
        )
        self.write_json(answer, 202)

    async def delete(self, user, name):
        caller, model = await self.model_for(MANAGE, user, name)
        await self.manager.stop_shadow(caller, model)
        self.set_status(204)
        self.finish()


class ScaleHandler(BaseHandler):
    async def post(self, user, name):
        caller, model = await self.model_for(MANAGE, user, name)
        replicas = self.json_body('{"replicas": 2}').get("replicas")
        answer = await self.manager.scale(caller, model, replicas)
        self.write_json(answer, 202 if answer["event_id"] is not None else 200)


class SharingHandler(BaseHandler):
    async def put(self, user, name):
        caller, model = await self.model_for(MANAGE, user, name)
        body = self.json_body('{"users": ["bob"], "groups": []}')
        if "users" not in body and "groups" not in body:
            raise BadRequest(
                'send "users" and/or "groups": the lists of who may call the model (an empty '
                "list removes everyone from it; a list left out stays as it is)",
                {"field": "users"},
            )
        await self.manager.share(caller, model, body.get("users"), body.get("groups"))
        self.write_json(self.manager.view(model))


class MetricsHandler(BaseHandler):
    """``GET .../metrics``: the model's prediction totals from its runtime's own ``/metrics``
    (``model_metrics.summary``), read as the caller, for the Models page's charts."""

    async def get(self, user, name):
        _, model = await self.model_for(READ, user, name)
        token = self.hub_auth.get_token(self)
        status, text = await self.manager.call_model(model, "GET", "/metrics", token, timeout=10)
        if status != 200:
            raise NotReady(f"{model.key}'s metrics answered HTTP {status}", {"status": status})
        self.write_json({"time": time.time(), **summary(text)})


class LogsHandler(BaseHandler):
    async def get(self, user, name):
        _, model = await self.model_for(MANAGE, user, name)
        tail = self.int_argument("tail", 200, minimum=1, maximum=MAX_LOG_LINES)
        text = await self.manager.logs(model, tail, self.get_query_argument("alias", None))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)


class BundleHandler(BaseHandler):
    """``GET .../versions/{version}/bundle``: a version's bundle as stored (``tar.gz``).

    For the owner (or an admin) with a hub token, and for the model's own pods with its bundle
    token (``mlhb_...``, kept in the model's Kubernetes Secret): a pod fetches the bundle it
    serves instead of an image being built per model.
    """

    async def get(self, user, name, version):
        model = self.model_token_model(user, name)
        if model is None:
            _, model = await self.model_for(MANAGE, user, name)
        path = self.manager.bundle_file(model, version)
        self.set_header("Content-Type", "application/gzip")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                self.write(chunk)
                await self.flush()
        self.finish()


def _row_json(row):
    return {**row, "time": row["time"].isoformat(timespec="microseconds") + "Z"}


class InferenceLogHandler(BaseHandler):
    """``.../inference-log``: ``POST`` a batch of sampled requests (the model's serving
    processes, with its log token; gzipped JSON, ``mlhub.serving.inferencelog``); ``GET`` the
    rows kept (``?since=&until=`` times or ages such as ``1h``, ``?version=``, ``?limit=``),
    for whoever manages the model: they hold its callers' data."""

    async def post(self, user, name):
        model = self.model_token_model(user, name, LOG)
        if model is None:
            raise Unauthorized("the inference log is written with the model's log token")
        body = self.request.body
        if self.request.headers.get("Content-Encoding", "").lower() == "gzip":
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = inflate.decompress(body, MAX_INFERENCE_BATCH)
            except zlib.error as exc:
                raise BadRequest(f"the batch is not valid gzip: {exc}") from None
            if inflate.unconsumed_tail:
                raise PayloadTooLarge(
                    f"an inference log batch may hold {MAX_INFERENCE_BATCH} bytes",
                    {"limit": MAX_INFERENCE_BATCH},
                )
        try:
            batch = json.loads(body)
        except ValueError as exc:
            raise BadRequest(f"the batch is not valid JSON: {exc}") from None
        alias = self.get_query_argument("alias", None)  # the unit that sent it (its URL's)
        rows = await self.manager.log_inferences(model, batch, alias)
        self.write_json({"rows": rows}, 201)

    async def get(self, user, name):
        _, model = await self.model_for(MANAGE, user, name)
        limit = self.int_argument("limit", MAX_READ_ROWS, minimum=1, maximum=MAX_READ_ROWS)
        rows = await self.manager.inferences(
            model,
            since=self.time_argument("since"),
            until=self.time_argument("until"),
            version=self.get_query_argument("version", None),
            limit=limit,
        )
        self.write_json({"rows": [_row_json(r) for r in rows], "limit": limit})


class DriftHandler(BaseHandler):
    """``GET .../drift``: the inputs logged since ``?since=`` (default the last day) against
    the version's parity sample, per feature (``mlhub.drift``)."""

    async def get(self, user, name):
        _, model = await self.model_for(MANAGE, user, name)
        threshold = self.get_query_argument("threshold", None)
        try:
            threshold = PSI_THRESHOLD if threshold is None else float(threshold)
        except ValueError:
            raise BadRequest(
                f"?threshold= must be a number, got {threshold!r}", {"field": "threshold"}
            ) from None
        self.write_json(
            await self.manager.drift(
                model,
                since=self.time_argument("since"),
                version=self.get_query_argument("version", None),
                threshold=threshold,
            )
        )


class KeysHandler(BaseHandler):
    async def get(self, user, name):
        _, model = await self.model_for(MANAGE, user, name)
        self.write_json({"keys": [k.to_dict() for k in model.api_keys]})

    async def post(self, user, name):
        caller, model = await self.model_for(MANAGE, user, name)
        description = self.json_body('{"description": "my app"}').get("description", "")
        self.write_json(await self.manager.create_key(caller, model, description), 201)


class KeyHandler(BaseHandler):
    async def delete(self, user, name, key_id):
        caller, model = await self.model_for(MANAGE, user, name)
        await self.manager.delete_key(caller, model, key_id)
        self.set_status(204)
        self.finish()


class ModelsFallbackHandler(BaseHandler):
    """``/models/...`` requests no live model route matched (the proxy's ``/models`` route).

    A sleeping unit's request is held while the unit wakes, then passed on to it and answered
    with its answer (``mlhub.publisher.idle``). Otherwise says in JSON whether the model does
    not exist (404) or is not serving yet (503), instead of the hub's HTML 404 page.
    """

    async def prepare(self):
        user, name = self.path_kwargs["user"], self.path_kwargs["name"]
        name, _, alias = name.partition("@")
        model = self.manager.find(user, name)
        if model is None:
            raise NotFound(f"no model {user}/{name} is published", {"owner": user, "name": name})
        known = [DEFAULT_ALIAS, *sorted(a.name for a in model.aliases)]
        if alias and alias not in known:
            raise NotFound(
                f"model {user}/{name} has no alias {alias!r} (its aliases: {', '.join(known)})",
                {"owner": user, "name": name, "alias": alias},
            )
        unit = None if alias in ("", DEFAULT_ALIAS) else alias
        if model.current_version and self.manager.asleep(model, unit):
            await self.wake_and_pass_on(model, unit)
            return
        if alias and alias != known[0]:
            raise NotReady(
                f"alias {alias} of {user}/{name} is not serving right now (its first version "
                "is starting, or its process is restarting); its events say why",
                {"owner": user, "name": name, "alias": alias},
            )
        raise NotReady(
            f"model {user}/{name} is not serving right now (status {model.status}); "
            "its events say why",
            {"owner": user, "name": name, "status": model.status},
        )

    async def wake_and_pass_on(self, model, alias):
        """Wake the unit once the caller may call it (a stranger wakes nothing), then send the
        request where the proxy would have sent it and answer with the model's answer."""
        await self.check_caller(model)
        await self.manager.wake_unit(model, alias)
        ref = self.manager.ref(model).with_alias(alias)
        target = await self.manager.route_target(ref)
        if target is None:
            raise NotReady(
                f"{ref.unit} woke but has no route yet: retry shortly", {"owner": model.owner}
            )
        answer = await AsyncHTTPClient().fetch(
            HTTPRequest(
                target.rstrip("/") + self.request.uri,
                method=self.request.method,
                headers={k: v for k, v in self.request.headers.get_all() if k not in HOP_HEADERS},
                body=self.request.body if self.request.method in BODY_METHODS else None,
                follow_redirects=False,
                decompress_response=False,
                request_timeout=PASS_ON_TIMEOUT,
            ),
            raise_error=False,
        )
        if answer.code == 599:  # no answer at all (the connection failed or timed out)
            raise NotReady(f"{ref.unit} woke but did not answer: {answer.error}")
        self.set_status(answer.code, answer.reason)
        self.clear_header("Content-Type")
        for key, value in answer.headers.get_all():
            if key not in HOP_HEADERS:
                self.add_header(key, value)
        self.finish(answer.body)

    async def check_caller(self, model):
        """401 without a credential, 403 (401 for an unknown key or token) unless it is one of
        the model's API keys or the token of a hub user who may call it, as its processes
        would answer."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() in ("token", "bearer") else ""
        token = token or self.request.headers.get("X-Api-Key", "").strip()
        if not token:
            raise Unauthorized(
                "send 'Authorization: token <key>' with an API key of this model or your "
                "JupyterHub token"
            )
        if hashlib.sha256(token.encode()).hexdigest() in self.manager.key_hashes(model):
            return
        user = await self.hub_auth.get_user(self, sync=False) if scheme else None
        if not user:
            raise Unauthorized("this token is neither an API key of the model nor a hub token")
        authorize(
            Caller.from_hub_model(user), READ, model.owner, model.shared_with, model.shared_groups
        )


class NotFoundHandler(BaseHandler):
    def prepare(self):
        raise NotFound(f"no such publisher endpoint: {self.request.path}")


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    def initialize(self):
        self.hub_auth = self.settings["hub_auth"]


# (template, handler): templates are OpenAPI paths below the service prefix
API_ROUTES = [
    ("/api/health", HealthHandler),
    ("/api/openapi.json", OpenAPIHandler),
    ("/api/user", WhoAmIHandler),
    ("/api/models", ModelListHandler),
    ("/api/models/{user}/{name}", ModelHandler),
    ("/api/models/{user}/{name}/versions", VersionsHandler),
    ("/api/models/{user}/{name}/versions/{version}/bundle", BundleHandler),
    ("/api/models/{user}/{name}/events", EventsHandler),
    ("/api/models/{user}/{name}/history", HistoryHandler),
    ("/api/models/{user}/{name}/rollback", RollbackHandler),
    ("/api/models/{user}/{name}/scale", ScaleHandler),
    ("/api/models/{user}/{name}/aliases", AliasesHandler),
    ("/api/models/{user}/{name}/aliases/{alias}", AliasHandler),
    ("/api/models/{user}/{name}/canary", CanaryHandler),
    ("/api/models/{user}/{name}/canary/promote", CanaryPromoteHandler),
    ("/api/models/{user}/{name}/shadow", ShadowHandler),
    ("/api/models/{user}/{name}/sharing", SharingHandler),
    ("/api/models/{user}/{name}/logs", LogsHandler),
    ("/api/models/{user}/{name}/metrics", MetricsHandler),
    ("/api/models/{user}/{name}/inference-log", InferenceLogHandler),
    ("/api/models/{user}/{name}/drift", DriftHandler),
    ("/api/models/{user}/{name}/keys", KeysHandler),
    ("/api/models/{user}/{name}/keys/{key_id}", KeyHandler),
]


def url_pattern(template):
    """``/api/models/{user}`` -> ``/api/models/(?P<user>[^/]+)$``."""
    return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"


def make_handlers(service_prefix):
    """Tornado's handler list: the API and the Models page under the service prefix, and the
    ``/models`` fallback."""
    base = service_prefix.rstrip("/")
    return [
        *((base + url_pattern(t), cls) for t, cls in API_ROUTES),
        (base + "/oauth_callback", OAuthCallbackHandler),
        *page_routes(base),
        (r"/models/(?P<user>[^/]+)/(?P<name>[^/]+)(?:/.*)?", ModelsFallbackHandler),
    ]
