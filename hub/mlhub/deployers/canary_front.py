"""The canary front: one nginx that splits a model's production traffic with its canary.

While a model has a canary, the proxy's routes of its plain URL (and ``@production``) point here
instead of at the production unit; nginx's ``split_clients`` on each request's random id sends
the canary's share to the canary unit's target and the rest to production's, so the split is by
request, in both modes, whatever runs behind either target (local processes, a Service, a pod).
It is nginx, not a proxy of mlhub's own, and it is only in the path of models with a canary:
the other models' routes go straight to their units.

Why a weighted front and not two Deployments behind one Service in the replica ratio: a ratio
of replicas is a percentage only while neither side scales (the HPA moves it), it cannot say 5%
of a model served by two pods, and it needs kube-proxy (clusters whose proxy routes to pods,
``route_target = "pod"``, have no Service in the path at all).

Each request's arm (``stable`` or ``canary``), status and time go to an access log the
publisher reads (``stats``): what its canary check compares. The configuration is rewritten and
nginx reloaded (gracefully: requests in flight finish on the old workers) whenever a split or
one of its targets changes; a change counts as made once nginx answers with its generation.
nginx runs in its own session, so a publisher killed with SIGKILL leaves it serving, and the
next one takes it over through its pid file.
"""

import asyncio
import collections
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from mlhub.errors import DeployError
from mlhub.serving import frontend
from mlhub.serving_r.launch import NGINX_HINT, find_nginx
from mlhub.steps import CANARY, DEFAULT_ALIAS

ARMS = ("stable", "canary")
_CALLERS = (401, 403)  # refusals of the caller, not of the version: no error of either arm
_GENERATION_PATH = "/_mlhub_front/generation"
_UNAVAILABLE = (
    '{"error": "this version of the model is not answering (its canary or production '
    'processes are restarting): retry shortly", "code": "not_ready", "detail": null}'
)


@dataclass
class Split:
    """One model's split: ``percent`` of its production traffic to the ``canary`` target."""

    model: object  # the default unit's ModelRef
    stable: str  # targets as the proxy has them: http://host:port
    canary: str
    percent: float
    ending: bool = False  # its routes go back to production; nginx serves what is in flight


def _quoted(text):
    """``text`` as an nginx string (double-quoted, ``"`` and ``\\`` escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _server(target):
    return target.removeprefix("http://").rstrip("/")


def front_conf(splits, *, listen, run_dir, generation, user=None):
    """nginx's whole configuration for ``splits`` (pure; tested as text). Each split ``i`` has
    two upstream groups, ``s<i>_stable`` and ``s<i>_canary``, one ``split_clients`` choosing
    between them by request, and the locations of its model's plain and ``@production``
    prefixes; anything else answers 404."""
    temp = "\n".join(f"    {kind}_temp_path {run_dir}/{kind};" for kind in frontend.TEMP_KINDS)
    groups, locations = [], []
    for i, split in enumerate(splits):
        for arm in ARMS:
            groups.append(
                f"    upstream s{i}_{arm} {{\n"
                f"        server {_server(getattr(split, arm))} max_fails=0;\n"
                f"        keepalive 16;\n    }}\n"
            )
        groups.append(
            f'    split_clients "${{request_id}}" $s{i}_arm {{\n'
            f"        {split.percent:g}% canary;\n        * stable;\n    }}\n"
        )
        model = split.model
        body = (
            f"            set $mlhub_model {_quoted(model.key)};\n"
            f"            set $mlhub_arm $s{i}_arm;\n"
            f"            proxy_pass http://s{i}_$s{i}_arm;\n"
        )
        # nginx matches the decoded path: the owner as it is, not as the URL escapes it
        for prefix in (f"/models/{model.key}", f"/models/{model.key}@{DEFAULT_ALIAS}"):
            locations.append(f"        location = {_quoted(prefix)} {{\n{body}        }}\n")
            locations.append(f"        location ^~ {_quoted(prefix + '/')} {{\n{body}        }}\n")
    head = f"user {user};\n" if user else ""
    return f"""\
# Written by the mlhub publisher (mlhub.deployers.canary_front): the models with a canary.
{head}worker_processes 1;
pid {run_dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    log_format mlhub '$msec\\t$mlhub_model\\t$mlhub_arm\\t$status\\t$request_time';
    server_tokens off;
{temp}
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_read_timeout 3600s;
    proxy_send_timeout 3600s;
    # one connection per request from the proxy: a reload (a split or a target changed) closes
    # nginx's idle connections, and the proxy would send a request into one closing (a 503)
    keepalive_timeout 0;
{"".join(groups)}    server {{
        listen {listen};
        set $mlhub_model "";
        set $mlhub_arm "";
        access_log {run_dir}/access.log mlhub if=$mlhub_arm;
        location = {_GENERATION_PATH} {{
            default_type text/plain;
            return 200 "{generation}";
        }}
{"".join(locations)}        location / {{
            default_type application/json;
            return 404 '{{"error": "no canary here", "code": "not_found", "detail": null}}';
        }}
        error_page 502 504 @unavailable;
        location @unavailable {{
            default_type application/json;
            return 503 '{_UNAVAILABLE}';
        }}
    }}
}}
"""


def percentile(values, q):
    """The ``q`` quantile (0..1) of sorted ``values`` (nearest rank), or None when empty."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, int(round(q * len(values))) - 1))]


class CanaryFront(LoggingConfigurable):
    """The nginx of the splits (see the module), run by the publisher under its data folder."""

    host = Unicode(
        "127.0.0.1",
        help="""Address the canary front listens on (default 127.0.0.1: the embedded mode's
        proxy is on this machine). In a cluster: 0.0.0.0, with ``url`` set to how the hub's
        proxy reaches the publisher's pod.""",
    ).tag(config=True)

    port = Integer(
        0,
        help="""Port of the canary front (default 0: a free one, chosen when the first canary
        starts; set it where a Service names the port).""",
    ).tag(config=True)

    url = Unicode(
        help="""The canary front as the hub's proxy reaches it. Default
        ``http://<host>:<port>``.""",
    ).tag(config=True)

    window_seconds = Float(
        300.0,
        help="""Seconds of requests ``stats`` counts (default 300): what a canary's check and
        status compare.""",
    ).tag(config=True)

    run_dir = Unicode(help="Where its configuration, pid and logs live (the deployer's).")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.splits = {}  # model key -> Split
        self.generation = 0
        self._process = None
        self._seen = collections.defaultdict(collections.deque)  # (key, arm) -> (t, status, s)
        self._offset = 0
        self._lock = asyncio.Lock()

    @default("url")
    def _default_url(self):
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------ what splits

    def split_of(self, model):
        """The split ``model`` (a default or canary unit) takes part in, or None."""
        return self.splits.get(model.key) if model.alias in (None, CANARY) else None

    def routed_target(self, model, target):
        """Where the proxy should send ``model``'s routes when its own target is ``target``:
        the front for a default unit with a split."""
        split = self.splits.get(model.key)
        return self.url if model.alias is None and split and not split.ending else target

    async def put(self, model, stable, canary, percent):
        """Split ``model``'s (its default unit's) traffic: ``percent`` to ``canary``."""
        async with self._lock:
            self.splits[model.key] = Split(model, stable, canary, percent)
            await self._apply()

    async def set_target(self, model, target):
        """A unit of a split moved (a new process or pod): its arm goes to ``target``."""
        split = self.split_of(model)
        arm = "stable" if model.alias is None else "canary"
        if split is None or target == self.url or getattr(split, arm) == target:
            return
        async with self._lock:
            setattr(split, arm, target)
            await self._apply()

    def stable_target(self, model):
        split = self.splits.get(model.key)
        return split.stable if split else None

    def end(self, model):
        """From now on ``model``'s routes go to production (``routed_target``), while nginx
        keeps its split for the requests still on their way; ``drop`` removes it."""
        split = self.splits.get(model.key)
        if split is not None:
            split.ending = True

    async def drop(self, model):
        """End ``model``'s split (its routes must already point elsewhere); nginx stops with
        the last one."""
        async with self._lock:
            if self.splits.pop(model.key, None) is None:
                return
            if self.splits:
                await self._apply()
            else:
                await self._stop()

    # ------------------------------------------------------------ nginx

    def _path(self, name):
        return Path(self.run_dir, name)

    def _running_pid(self):
        """The pid of a running nginx of ours (this publisher's, or one a killed publisher
        left serving), or None."""
        try:
            pid = int(self._path("nginx.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:
            if "nginx" not in Path(f"/proc/{pid}/cmdline").read_text():
                return None
        except OSError:
            return None
        return pid

    async def _apply(self):
        """Write the configuration and make nginx serve it (started, or reloaded)."""
        nginx = find_nginx()
        if nginx is None:
            raise DeployError(f"a canary needs nginx, which is not installed: {NGINX_HINT}")
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        for kind in frontend.TEMP_KINDS:
            self._path(kind).mkdir(exist_ok=True)
        if not self.port:
            # the port a killed publisher's front still listens on, so its routes stay good
            saved = self._path("port")
            self.port = int(saved.read_text()) if saved.exists() else 0
            self.port = self.port or frontend.free_port(self.host)
            saved.write_text(str(self.port))
            self.url = f"http://{self.host}:{self.port}"
        self.generation += 1
        conf = self._path("nginx.conf")
        user = "root" if os.geteuid() == 0 else None  # else root's workers would be nobody
        listen = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        conf.write_text(
            front_conf(
                list(self.splits.values()),
                listen=listen,
                run_dir=self.run_dir,
                generation=self.generation,
                user=user,
            )
        )
        pid = self._running_pid()
        if pid is None:
            self._process = subprocess.Popen(
                frontend.nginx_argv(nginx, conf), start_new_session=True
            )
        else:
            os.kill(pid, signal.SIGHUP)  # graceful: the old workers finish their requests
        await self._wait_generation()

    async def _wait_generation(self, timeout=10.0):
        """Until nginx answers with the configuration just written."""
        deadline = time.monotonic() + timeout
        http = AsyncHTTPClient()
        while True:
            try:
                resp = await http.fetch(self.url + _GENERATION_PATH, request_timeout=2)
                if resp.body.decode() == str(self.generation):
                    return
            except (HTTPClientError, OSError):
                pass
            if self._process is not None and self._process.poll() is not None:
                raise DeployError(
                    f"the canary front (nginx) exited with {self._process.returncode}; "
                    "its errors are in the publisher's log"
                )
            if time.monotonic() > deadline:
                raise DeployError(
                    f"the canary front did not take its configuration in {timeout:g} s"
                )
            await asyncio.sleep(0.05)

    async def _stop(self):
        pid = self._running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)  # finishes the requests in flight
        if self._process is not None:
            await asyncio.to_thread(self._process.wait)
            self._process = None

    async def shutdown(self):
        async with self._lock:
            self.splits.clear()
            await self._stop()

    # ------------------------------------------------------------ what it measured

    def _read_log(self):
        path = self._path("access.log")
        try:
            size = path.stat().st_size
        except OSError:
            return
        if size < self._offset:
            self._offset = 0  # a new file
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) != 5 or parts[2] not in ARMS:
                continue
            try:
                when, status, seconds = float(parts[0]), int(parts[3]), float(parts[4])
            except ValueError:
                continue
            self._seen[(parts[1], parts[2])].append((when, status, seconds))

    def stats(self, model):
        """Per arm, over the last ``window_seconds``: ``{"requests", "errors", "error_rate",
        "p50_ms", "p95_ms"}``. An error is an answer with a 4xx or 5xx status but 401 and 403:
        a version that refuses requests the other answers fails them as surely as one that
        crashes, while a caller without rights is refused by both alike."""
        self._read_log()
        since = time.time() - self.window_seconds
        out = {}
        for arm in ARMS:
            seen = self._seen[(model.key, arm)]
            while seen and seen[0][0] < since:
                seen.popleft()
            times = sorted(s for _, _, s in seen)
            errors = sum(1 for _, status, _ in seen if status >= 400 and status not in _CALLERS)
            p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
            out[arm] = {
                "requests": len(seen),
                "errors": errors,
                "error_rate": errors / len(seen) if seen else None,
                "p50_ms": None if p50 is None else round(p50 * 1000, 2),
                "p95_ms": None if p95 is None else round(p95 * 1000, 2),
            }
        return out
