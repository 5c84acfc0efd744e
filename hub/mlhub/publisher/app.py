"""The publisher: a JupyterHub-managed service that turns bundles into live model endpoints.

Started by the hub as ``python -m mlhub.publisher`` with the service environment
(``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_SERVICE_URL``) and mlhub's (``MLHUB_DATA_DIR``, ``MLHUB_CONFIG_FILE``,
``MLHUB_PUBLIC_URL``, ``MLHUB_PROXY_API_URL``, ``CONFIGPROXY_AUTH_TOKEN``). Every setting is a
trait below; the mlhub config file (a traitlets Python file) can set them, e.g.
``c.PublisherApp.max_upload_bytes = 2_000_000_000`` or ``c.LocalDeployer.drain_seconds = 10``.

On SIGTERM/SIGINT it stops serving the API, lets the deployer shut down (the local deployer
stops the model processes unless ``LocalDeployer.stop_models_on_exit`` is False) and exits. If
it is killed outright, the next start re-adopts the model processes that still run.
"""

import asyncio
import hashlib
import logging
import os
import secrets
import signal
import urllib.parse
from pathlib import Path

from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, Integer, Type, Unicode, default, validate
from traitlets.config import Application

import mlhub
from mlhub.deployers.base import Deployer
from mlhub.deployers.canary_front import CanaryFront
from mlhub.deployers.local import LocalDeployer
from mlhub.deployers.routes import ProxyRoutes
from mlhub.publisher.artifacts import ArtifactStore
from mlhub.publisher.canary import CanaryCheck
from mlhub.publisher.handlers import NotFoundHandler, make_handlers
from mlhub.publisher.idle import IdlePolicy
from mlhub.publisher.inference_log import ParquetInferenceLog, SQLInferenceLog
from mlhub.publisher.manager import ModelManager
from mlhub.publisher.openapi import load_spec
from mlhub.publisher.pages import page_templates
from mlhub.publisher.shadow import Shadower, ShadowLog
from mlhub.publisher.store import Store
from mlhub.settings import hub_settings

MB = 1_000_000


def _service_url():
    return urllib.parse.urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))


class PublisherApp(Application):
    """The mlhub publisher service."""

    name = "mlhub-publisher"
    version = mlhub.__version__
    description = "Publish models from notebooks as authenticated REST endpoints."
    classes = [
        LocalDeployer,
        ProxyRoutes,
        HubOAuth,
        CanaryFront,
        CanaryCheck,
        Shadower,
        IdlePolicy,
    ]
    aliases = {
        "config": "PublisherApp.config_file",
        "data-dir": "PublisherApp.data_dir",
        "ip": "PublisherApp.ip",
        "port": "PublisherApp.port",
        "log-level": "Application.log_level",
    }

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    config_file = Unicode(
        help="""mlhub config file (traitlets Python: ``c.PublisherApp.port = 8090``) to load.
        Default: ``$MLHUB_CONFIG_FILE``; none if unset.""",
    ).tag(config=True)

    @default("config_file")
    def _default_config_file(self):
        return os.environ.get("MLHUB_CONFIG_FILE", "")

    ip = Unicode(
        help="""Address to listen on. Default: the host of ``$JUPYTERHUB_SERVICE_URL``, else
        ``127.0.0.1``.""",
    ).tag(config=True)

    @default("ip")
    def _default_ip(self):
        return _service_url().hostname or "127.0.0.1"

    port = Integer(
        help="""Port to listen on. Default: the port of ``$JUPYTERHUB_SERVICE_URL``, else 8090.""",
    ).tag(config=True)

    @default("port")
    def _default_port(self):
        return _service_url().port or 8090

    service_prefix = Unicode(
        help="""URL prefix the hub's proxy routes to this service.
        Default: ``$JUPYTERHUB_SERVICE_PREFIX``, else ``/services/mlhub-publisher/``.""",
    ).tag(config=True)

    @default("service_prefix")
    def _default_service_prefix(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/mlhub-publisher/")

    @validate("service_prefix")
    def _slashes(self, proposal):
        return "/" + proposal.value.strip("/") + "/"

    data_dir = Unicode(
        help="""mlhub data directory: the store, artifacts, unpacked bundles, run-state and
        logs live below it (the deployer gets it from here). Default: ``$MLHUB_DATA_DIR``,
        which ``mlhub up`` sets from ``MlhubSettings.data_dir`` and the chart to the
        publisher's volume; else ``./mlhub-data``.""",
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath(os.environ.get("MLHUB_DATA_DIR", "mlhub-data"))

    @validate("data_dir")
    def _absolute(self, proposal):
        return os.path.abspath(os.path.expanduser(proposal.value))

    db_url = Unicode(
        help="""SQLAlchemy URL of the publisher store, e.g.
        ``postgresql+psycopg://mlhub@db/mlhub``. Default: ``sqlite:///<data_dir>/mlhub.sqlite``
        (WAL mode).""",
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self):
        return f"sqlite:///{Path(self.data_dir, 'mlhub.sqlite')}"

    public_url = Unicode(
        help="""URL users reach mlhub at; model URLs are ``<public_url>models/<user>/<name>/``.
        Default: ``$MLHUB_PUBLIC_URL``, which ``mlhub up`` sets from ``MlhubSettings.public_url``
        and the chart from ``publicUrl``; else ``http://127.0.0.1:8000/``.""",
    ).tag(config=True)

    @default("public_url")
    def _default_public_url(self):
        return os.environ.get("MLHUB_PUBLIC_URL", "http://127.0.0.1:8000/")

    max_upload_bytes = Integer(
        100 * MB,
        help="""Largest bundle upload (the tar.gz) accepted, in bytes; bigger ones get 413.
        Default 100 MB. The upload streams to disk here, so this bounds disk, not memory; an
        ingress in front may have a limit of its own.""",
    ).tag(config=True)

    max_bundle_bytes = Integer(
        2000 * MB,
        help="""Largest total size of a bundle's files once unpacked, in bytes (a compressed
        upload can expand a lot). Default 2 GB.""",
    ).tag(config=True)

    default_workers = Integer(
        2,
        help="""Serving workers (replicas) of a newly published model unless the publish asks
        for a number (``?workers=``). Default 2.""",
    ).tag(config=True)

    max_workers = Integer(
        8, help="Most workers (replicas) one model may ask for (publish or scale). Default 8."
    ).tag(config=True)

    max_keys_per_model = Integer(
        100,
        help="""Most API keys one model may have at once; minting one more is refused (409)
        until a key is revoked. Default 100.""",
    ).tag(config=True)

    max_aliases_per_model = Integer(
        10,
        help="""Most aliases one model may have besides ``production`` (default 10). Each alias
        runs serving processes (pods) of its own, so this bounds what one model can start.""",
    ).tag(config=True)

    deployer_class = Type(
        LocalDeployer,
        klass=Deployer,
        help="""The deployer that runs models: ``mlhub.deployers.local.LocalDeployer`` (local
        uWSGI processes, the default) or a Kubernetes deployer.""",
    ).tag(config=True)

    inference_log_url = Unicode(
        "",
        help="""Where models' inference logs are kept: a folder or an fsspec URL (``s3://...``)
        for Parquet files partitioned by model, day and version (needs ``mlhub[batch]``), or
        empty for a table in the publisher's database (``db_url``). Default: empty. How long
        rows are kept: ``InferenceLogStore.retention_days``.""",
    ).tag(config=True)

    inference_log_default = Float(
        0.0,
        help="""Fraction of requests (0 to 1) the inference log keeps for a model published for
        the first time without saying (``mlhub.publish(..., inference_log=...)``). Default 0:
        off, each model opts in; e.g. 0.1 keeps a tenth of every new model's requests. Models
        already published keep their own.""",
    ).tag(config=True)

    inference_log_max_rows_per_minute = Integer(
        100_000,
        help="""Most inference log rows one model may add in a minute; a batch beyond is
        refused (429) and counted as dropped by the model's serving processes, so one model's
        log cannot fill the disk everyone shares. Default 100000.""",
    ).tag(config=True)

    @validate("inference_log_default")
    def _fraction(self, proposal):
        if not 0 <= proposal.value <= 1:
            raise ValueError(f"inference_log_default must be from 0 to 1, got {proposal.value}")
        return proposal.value

    cookie_secret_file = Unicode(
        help="""File holding the secret that signs the OAuth cookie of browsers (created if
        missing). Default: ``<data_dir>/publisher_cookie_secret``.""",
    ).tag(config=True)

    @default("cookie_secret_file")
    def _default_cookie_secret_file(self):
        return str(Path(self.data_dir, "publisher_cookie_secret"))

    def initialize(self, argv=None):
        self.parse_command_line(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
        logging.getLogger("tornado").parent = self.log

    def cookie_secret(self):
        path = Path(self.cookie_secret_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip()

    def make_deployer(self, system_users=None):
        traits = self.deployer_class.class_traits()
        kwargs = {"data_dir": self.data_dir} if "data_dir" in traits else {}
        if "system_users" in traits:
            kwargs["system_users"] = system_users
        deployer = self.deployer_class(parent=self, log=self.log, **kwargs)
        deployer.front.run_dir = str(Path(self.data_dir, "front"))  # the canary front's files
        return deployer

    def make_inference_log(self, store):
        """The inference log's backend ``inference_log_url`` asks for."""
        if self.inference_log_url:
            return ParquetInferenceLog(self.inference_log_url, parent=self, log=self.log)
        return SQLInferenceLog(store.engine, parent=self, log=self.log)

    def log_request(self, handler):
        status = handler.get_status()
        log = (
            self.log.info if status < 400 else self.log.warning if status < 500 else self.log.error
        )
        if status < 300 and handler.request.path.endswith(("/events", "/api/health")):
            log = self.log.debug  # clients poll these
        ms = 1000 * handler.request.request_time()
        log("%d %s %s %.0fms", status, handler.request.method, handler.request.uri, ms)

    def make_web_app(self, manager, hub_auth):
        return web.Application(
            make_handlers(self.service_prefix),
            manager=manager,
            hub_auth=hub_auth,
            openapi=load_spec(self.service_prefix, self.max_workers),
            service_prefix=self.service_prefix,
            max_upload_bytes=self.max_upload_bytes,
            max_bundle_bytes=self.max_bundle_bytes,
            cookie_secret=self.cookie_secret(),
            page_templates=page_templates(),
            default_handler_class=NotFoundHandler,
            log_function=self.log_request,
            log=self.log,
        )

    async def run(self):
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        store = Store(self.db_url)
        # multi-user mode: every model runs as its owner's system account (mlhub.sysusers)
        system_users = hub_settings().system_users()
        # bundle tokens are signed with a key derived from the persistent secret
        bundle_secret = hashlib.sha256(b"mlhub bundle tokens\0" + self.cookie_secret().encode())
        manager = ModelManager(
            store=store,
            artifacts=ArtifactStore(Path(self.data_dir, "artifacts")),
            deployer=self.make_deployer(system_users),
            data_dir=self.data_dir,
            public_url=self.public_url,
            default_workers=self.default_workers,
            max_workers=self.max_workers,
            max_keys=self.max_keys_per_model,
            max_aliases=self.max_aliases_per_model,
            log=self.log,
            bundle_secret=bundle_secret.digest(),
            system_users=system_users,
            inference_log=self.make_inference_log(store),
            inference_log_default=self.inference_log_default,
            inference_log_max_rows_per_minute=self.inference_log_max_rows_per_minute,
            canary_check=CanaryCheck(parent=self, log=self.log),
            shadower=Shadower(ShadowLog(store.engine), parent=self, log=self.log),
            idle_policy=IdlePolicy(parent=self, log=self.log),
        )
        hub_auth = HubOAuth(parent=self, base_url=self.service_prefix)
        server = HTTPServer(
            self.make_web_app(manager, hub_auth), xheaders=True, max_body_size=self.max_upload_bytes
        )
        server.listen(self.port, self.ip)
        self.log.info(
            "mlhub publisher listening on http://%s:%d%s", self.ip, self.port, self.service_prefix
        )

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        adoption = asyncio.ensure_future(manager.adopt())
        expiry = asyncio.ensure_future(manager.expire_inferences())
        canaries = asyncio.ensure_future(manager.watch_canaries())
        idle = asyncio.ensure_future(manager.watch_idle())
        await stop.wait()
        self.log.info("stopping")
        server.stop()
        for task in (adoption, expiry, canaries, idle):
            task.cancel()
        await manager.shutdown()
        store.close()

    def start(self):
        asyncio.run(self.run())


def main(argv=None):
    app = PublisherApp.instance()
    app.initialize(argv)
    app.start()
