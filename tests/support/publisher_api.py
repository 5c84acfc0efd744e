"""The publisher's REST API over a real tornado server, with a fake hub and a fake deployer
(fakes for unit tests of the publisher's logic; the real hub, proxy and serving processes are in
tests/component): ``FakeHubAuth`` maps tokens to hub user models (what ``HubOAuth.get_user``
returns), ``FakeDeployer`` records what it was asked and refuses bundles marked corrupt, ``Api``
runs the publisher on a free port."""

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from mlhub import bundle
from mlhub.deployers.base import Deployer
from mlhub.errors import InvalidBundle
from mlhub.publisher.app import PublisherApp
from mlhub.publisher.artifacts import ArtifactStore
from mlhub.publisher.manager import ModelManager
from mlhub.publisher.store import Store

PREFIX = "/services/mlhub-publisher/"


MANIFEST = "format: 1\nname: {name}\nruntime: python\nflavor: sklearn\nmodel_file: model/m.pkl\n"


SCOPES = ["custom:mlhub:models", "access:services"]


USERS = {
    "alice-token": {"name": "alice", "kind": "user", "admin": False, "scopes": SCOPES},
    "bob-token": {"name": "bob", "kind": "user", "admin": False, "scopes": SCOPES},
    "admin-token": {"name": "root", "kind": "user", "admin": True, "scopes": ["admin:users"]},
    "narrow-token": {"name": "alice", "kind": "user", "admin": False, "scopes": ["read:users"]},
}


class FakeHubAuth:
    async def get_user(self, handler, sync=True):
        header = handler.request.headers.get("Authorization", "")
        return USERS.get(header.partition(" ")[2])


class FakeDeployer(Deployer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # serving: the Serving each model was last deployed or adopted with
        self.live, self.access, self.calls, self.serving = {}, {}, [], {}
        self.sleeping = set()  # units put to sleep (``sleep``) and not woken since

    async def check(self, manifest, bundle_dir):
        if Path(bundle_dir, "model", "m.pkl").read_bytes().startswith(b"corrupt"):
            raise InvalidBundle("the new version cannot serve: UnpicklingError: invalid load key")

    async def set_access(self, model, access):
        self.access[model] = access

    async def deploy(self, model, version, bundle_dir, *, replicas, progress, serving=None):
        self.calls.append(("deploy", model.unit, version, replicas))
        self.sleeping.discard(model)
        self.serving[model] = serving
        for step in ("starting", "ready", "switched", "drained"):
            progress(step, step)
        self.live[model] = (version, replicas)

    async def status(self, model):
        version, replicas = self.live.get(model, (None, None))
        return {"state": "running", "version": version, "replicas": replicas, "instances": []}

    async def scale(self, model, replicas, progress):
        version, serving = self.live[model][0], self.serving.get(model)
        await self.deploy(model, version, "", replicas=replicas, progress=progress, serving=serving)

    async def delete(self, model):
        self.calls.append(("delete", model.unit))
        self.live.pop(model, None)
        self.sleeping.discard(model)

    async def sleep(self, model):
        self.calls.append(("sleep", model.unit))
        self.sleeping.add(model)

    async def wake(self, model, progress):
        self.calls.append(("wake", model.unit))
        progress("starting", "starting")
        self.sleeping.discard(model)

    def asleep(self, model):
        return model in self.sleeping

    async def logs(self, model, tail):
        return "".join(f"line {i}\n" for i in range(tail))

    async def split(self, model, percent):
        self.calls.append(("split", model.unit, percent))

    async def unsplit(self, model):
        self.calls.append(("unsplit", model.unit))

    async def adopt(self, desired):
        self.calls.append(("adopt", len(desired)))
        self.sleeping |= {d.model for d in desired if d.asleep}
        self.serving.update({d.model: d.serving for d in desired})


class Api:
    """The publisher on a free port; ``call`` returns (status, parsed body)."""

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, tmp_path):
        """A publisher on ``tmp_path``'s data directory and database, after its start-up
        ``adopt``; stopped at the end. A second one on the same path is a restarted publisher."""
        api = cls(tmp_path)
        await api.manager.adopt()
        try:
            yield api
        finally:
            api.server.stop()
            api.store.close()

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.app = PublisherApp(
            data_dir=str(tmp_path / "data"),
            max_upload_bytes=20_000,
            max_workers=4,
            default_workers=1,
            service_prefix=PREFIX,
            public_url="http://hub.test/",
        )
        self.app.log = logging.getLogger("test-publisher")
        self.store = Store(self.app.db_url)
        self.deployer = FakeDeployer()
        self.manager = ModelManager(
            store=self.store,
            artifacts=ArtifactStore(tmp_path / "data" / "artifacts"),
            deployer=self.deployer,
            data_dir=self.app.data_dir,
            public_url=self.app.public_url,
            default_workers=1,
            max_workers=4,
            log=self.app.log,
            inference_log=self.app.make_inference_log(self.store),
        )
        sock, port = bind_unused_port()
        self.server = HTTPServer(self.app.make_web_app(self.manager, FakeHubAuth()))
        self.server.add_sockets([sock])
        self.base = f"http://127.0.0.1:{port}"

    async def call(self, method, path, token="alice-token", body=None, headers=None, raw=False):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        url = self.base + (path if path.startswith("/models") else PREFIX + path)
        resp = await AsyncHTTPClient().fetch(
            url,
            method=method,
            headers=headers,
            body=body,
            raise_error=False,
            allow_nonstandard_methods=True,
        )
        if raw:
            return resp
        return resp.code, (json.loads(resp.body) if resp.body else None)

    async def publish(self, name, payload=b"weights", token="alice-token", owner="alice", **kw):
        data = bundle.pack(self.bundle_dir(name, payload))
        headers = {"Content-Type": "application/gzip"}
        return await self.call(
            "POST", f"api/models/{owner}/{name}/versions{kw.get('query', '')}", token, data, headers
        )

    def bundle_dir(self, name, payload):
        path = self.tmp / f"src-{name}-{abs(hash(payload))}"
        (path / "model").mkdir(parents=True, exist_ok=True)
        (path / "mlhub.yaml").write_text(MANIFEST.format(name=name))
        (path / "model" / "m.pkl").write_bytes(payload)
        return path

    async def settle(self):
        while self.manager._tasks:
            await asyncio.gather(*self.manager._tasks)
