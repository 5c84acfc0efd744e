"""The embedded mode's deployer: supervised local uWSGI processes behind proxy routes.

One uWSGI instance (``python -m mlhub.serving``, which execs uWSGI so the pid is the master) per
live version; a "replica" is a uWSGI worker. An R version is one ``mlhub.serving_r.launch``
(the serving-r image's launcher): a replica is a plumber process behind the instance's nginx,
the launcher's pid is the instance's. A rolling update starts the new instance on a free
port, waits for ``/readyz``, switches the proxy route, waits ``drain_seconds`` for requests in
flight, then stops the old instance with SIGTERM: no request fails in between.

In multi-user mode (``system_users`` set) every process of a model (a fresh uWSGI or R
launcher, a master the fork server forked, a check command) runs as the model owner's account
(``mlhub.sysusers``): the owner's pickle is only ever unpickled with the owner's rights. The
model's access file is readable by that account (``mlhub.datadir.grant_owner``), its log only by
the publisher (the process writes to a descriptor it inherited), and a route is only ever set to
a port that the owner's process (or root's) listens on, so another account that binds a port a
model just gave up never receives the model's callers.

Processes run in their own session, so they outlive the publisher: a publisher killed with
SIGKILL finds them again through run-state files (``<data>/run/<owner>/<name>.json``) and adopts
the ones that still answer ``/readyz`` with the right version. A supervisor loop restarts a
serving process that died (with backoff if it keeps dying) and re-adds routes a restarted proxy
lost.

How one instance is started, probed and stopped is ``launcher.Launcher``'s (with the fork
server of ``forkserver``, the limits of ``mlhub.limits``); what an instance is and how its
processes are found is ``processes``'. This module decides when: the contract, per-model state,
routes, adoption and the supervisor. It is longer than most modules because those share one
per-model state and lock (splitting them would pass that state around), and a fifth of it is
its twenty settings.

Files (all under the data directory)::

    run/<owner>/<name>.json          instances we started and have not seen die (for adoption)
    access/<owner>/<name>.json       who may call the endpoint (MLHUB_ACCESS_FILE)
    logs/models/<owner>/<name>.log   output of the model's serving processes
"""

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Any, Bool, Dict, Enum, Float, Integer, List, Unicode, default

from mlhub.bundle import load_manifest
from mlhub.datadir import grant_owner
from mlhub.deployers import serving_log
from mlhub.deployers.base import DEFAULT_SERVING, Deployer, ModelRef, Serving
from mlhub.deployers.launcher import Launcher
from mlhub.deployers.processes import ServingInstance, tail_lines, write_json_atomic
from mlhub.errors import BadRequest, DeployError
from mlhub.serving_r import launch as r_launch
from mlhub.sysusers import port_owners

_PORT_TRIES = 3  # starts on a fresh port after "Address already in use"
# where and how wide a serving process listens: the same options in every runtime's command
_LISTEN_ARGS = ("--port", "{port}", "--workers", "{workers}", "--host", "{host}")


@dataclass(frozen=True)
class _Want:
    """What should be live for a model (kept so a dead process can be started again)."""

    version: str
    bundle_dir: str
    workers: int
    serving: Serving = DEFAULT_SERVING


@dataclass
class ModelProcesses:
    """What runs for one model: the live instance and any being started or retired."""

    model: ModelRef
    want: _Want | None = None
    live: ServingInstance | None = None
    others: list = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    prepared: list = field(default_factory=list)  # started by ``prepare``, not deployed yet
    failures: int = 0
    next_restart: float = 0.0
    asleep: bool = False  # idle: its processes stopped on purpose, nothing to restart

    def instances(self):
        return ([self.live] if self.live else []) + list(self.others)


class LocalDeployer(Deployer):
    """Serve models as local uWSGI processes (the embedded mode).

    A model's publish ``resources`` limits (``memory_limit``, ``cpu_limit``) hold its serving
    instances as profile limits hold notebook servers (``mlhub.limits``, see ``limit_method``);
    its requests have no meaning here (nothing reserves a share of one machine) and are
    ignored."""

    data_dir = Unicode(
        help="""The data folder run-state, access and log files go below: the publisher's
        (``PublisherApp.data_dir``, which passes it), so not a setting of its own. Alone (in
        tests): ``$MLHUB_DATA_DIR``, else ``./mlhub-data``.""",
    )

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath(os.environ.get("MLHUB_DATA_DIR", "mlhub-data"))

    host = Unicode(
        "127.0.0.1", help="Address serving processes listen on (default 127.0.0.1)."
    ).tag(config=True)

    system_users = Any(
        None,
        help="""The system accounts models run as, one per owner
        (``mlhub.sysusers.SystemUsers``), or None to run them as the publisher's account.
        The publisher passes ``MlhubSettings.system_users()`` (multi-user mode); default None.""",
    )

    serve_commands = Dict(
        help="""Command that serves a bundle, per bundle runtime. Placeholders: ``{bundle}``,
        ``{port}``, ``{workers}``, ``{host}``. The process must keep its pid for its lifetime
        (exec the server, or supervise its children), stop gracefully on SIGTERM with all its
        children, and exit when it can no longer serve ``{workers}`` (the supervisor starts it
        again). Default: the Python runtime, ``[sys.executable, "-m", "mlhub.serving",
        "--bundle", "{bundle}", ...]`` (uWSGI, workers are its processes), and the R runtime,
        ``[sys.executable, "-m", "mlhub.serving_r.launch", "--bundle", "{bundle}", ...]``
        (``{workers}`` plumber processes behind nginx, as in the serving-r image; needs R, and
        nginx for more than one worker, see the README).""",
    ).tag(config=True)

    @default("serve_commands")
    def _default_serve_commands(self):
        # both runtimes take the same arguments
        args = ["--bundle", "{bundle}", *_LISTEN_ARGS]
        return {
            "python": [sys.executable, "-m", "mlhub.serving", *args],
            "r": [sys.executable, "-m", "mlhub.serving_r.launch", *args],
        }

    check_commands = Dict(
        help="""Extra command that exits 0 if a bundle loads, per runtime (``{bundle}``
        placeholder), run before a new version is started; its last output line is the reason
        on failure. Default: none. Both runtimes' serving processes are the check (a version
        whose model does not load, lacks R packages, or cannot predict its own example answers
        ``/readyz`` with 503 and the reason, and is refused while the version before keeps
        serving); a separate check would load the model and its libraries a second time.
        E.g. ``{"r": ["Rscript", "<mlhub.serving_r>/serve.R", "check", "--bundle",
        "{bundle}"]}``.""",
    ).tag(config=True)

    check_timeout = Float(
        300.0, help="Seconds a bundle's load check may take before it is refused (default 300)."
    ).tag(config=True)

    ready_timeout = Float(
        300.0,
        help="""Seconds a new serving process may take to answer /readyz (default 300).
        If it is not ready by then the deploy fails and the old version keeps serving.""",
    ).tag(config=True)

    stop_timeout = Float(
        20.0,
        help="""Seconds a serving process gets to exit after SIGTERM before it is killed
        (default 20).""",
    ).tag(config=True)

    supervise_interval = Float(
        1.0, help="Seconds between checks that every live serving process runs (default 1)."
    ).tag(config=True)

    restart_backoff_max = Float(
        60.0,
        help="""Longest wait between restarts of a model that keeps failing to start; the wait
        doubles from 1 s after each failure (default 60).""",
    ).tag(config=True)

    stop_models_on_exit = Bool(
        True,
        help="""Stop the model processes when the publisher exits normally (SIGTERM/SIGINT),
        default True. If False, or if the publisher is killed, they keep serving and are
        adopted at its next start.""",
    ).tag(config=True)

    log_tail_lines = Integer(
        20, help="Lines of the model's log quoted in a failed event (default 20)."
    ).tag(config=True)

    python_path = List(
        help="""Directories put on the serving processes' PYTHONPATH. Default: none (the
        serving runtime is importable from the interpreter's site-packages).""",
    ).tag(config=True)

    fork_server = Bool(
        True,
        help="""Fork Python models' serving processes from one process that imported the
        serving runtime and ``fork_server_imports`` once (default True): every model shares
        those libraries' memory and starts (or wakes) without importing them; see
        ``mlhub.serving.forkserver``. A model loaded per worker (xgboost, lightgbm, whole
        MLflow models) or held to limits starts as a fresh process. False: every start is a
        fresh process.""",
    ).tag(config=True)

    fork_server_imports = List(
        Unicode(),
        [
            "numpy",
            "scipy.sparse",
            "scipy.stats",
            "pandas",
            "flask",
            "orjson",
            "sklearn.pipeline",
            "sklearn.linear_model",
            "sklearn.ensemble",
            "sklearn.preprocessing",
            "sklearn.tree",
        ],
        help="""Modules the fork server imports for every model it forks (a missing one is
        skipped). Default: numpy, the common scipy and scikit-learn modules, pandas, Flask and
        orjson. A library no model uses costs its pages once, not once per model.""",
    ).tag(config=True)

    shadow_nice = Integer(
        19,
        help="""How much lower the CPU priority of a shadow's processes is (``nice``, default
        19, the lowest; 0: as production's): on a busy machine the kernel serves production's
        processes first, and the shadow, whose answers nobody waits for, gets what is left.""",
    ).tag(config=True)

    limit_method = Enum(
        ["auto", "cgroup", "rlimit", "none"],
        "auto",
        help="""How a model's publish limits hold its serving processes (``mlhub.limits``, as
        ``MlhubSpawner.limit_method`` for notebook servers): ``cgroup`` (one cgroup per serving
        instance: memory beyond the limit OOM-kills inside it and the start or the process
        fails with an event saying so, CPU beyond it is throttled; a start fails if cgroups are
        not writable), ``rlimit`` (memory only, ``RLIMIT_DATA`` per process: the model's
        allocation fails), ``auto`` (cgroup if writable, else rlimit) or ``none`` (ignored).
        An instance serving N replicas gets N times the limits (each replica is what Kubernetes
        runs as a pod with them). Requests (``cpu``, ``memory``) have no local meaning and are
        ignored. Default ``auto``.""",
    ).tag(config=True)

    cgroup_parent = Unicode(
        "",
        help="""cgroup v2 only: a delegated directory to create the serving instances' cgroups
        under (``<dir>/mlhub-models/<owner>.<name>.<port>``). Default "": next to the
        publisher's own cgroup.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._models = {}
        self._tasks = set()
        self._supervisor = None
        self._closing = False  # shutting down: stopped models keep their routes
        self.launcher = Launcher(self)

    # ------------------------------------------------------------ paths

    def run_file(self, model):
        """Per unit (each alias runs its own processes)."""
        return Path(self.data_dir, "run", model.owner_dir, model.file_stem + ".json")

    def access_file(self, model):
        """Per model: every alias's processes read the same list."""
        return Path(self.data_dir, "access", model.owner_dir, model.name + ".json")

    def log_file(self, model):
        """Per unit: what an alias's processes write is read apart from the default's."""
        return Path(self.data_dir, "logs", "models", model.owner_dir, model.file_stem + ".log")

    def processes(self, model):
        """What runs for ``model`` (its ``ModelProcesses``: ``live``, ``others``, ``prepared``),
        or None: the read-only view tests and tools use."""
        return self._models.get(model)

    def _state(self, model):
        if model not in self._models:
            self._models[model] = ModelProcesses(model)
        return self._models[model]

    def _save(self, state, stopped_on_exit=False):
        write_json_atomic(
            self.run_file(state.model),
            {
                "owner": state.model.owner,
                "name": state.model.name,
                "alias": state.model.alias,
                "live": state.live.to_dict() if state.live else None,
                "others": [i.to_dict() for i in state.others],
                # set when the publisher stopped the processes on purpose as it exited
                "stopped_on_exit": stopped_on_exit,
            },
        )

    # ------------------------------------------------------------ processes

    def check_replicas(self, manifest, replicas):
        """R: more than one worker is more R processes behind nginx (``mlhub.serving_r.launch``),
        refused when nginx is not installed rather than served by fewer processes."""
        if manifest["runtime"] == "r" and (reason := r_launch.workers_refused(replicas)):
            raise BadRequest(reason, {"field": "replicas", "runtime": "r", "missing": "nginx"})

    async def _account(self, model):
        """The system account ``model``'s processes run as (made if missing), or None."""
        if self.system_users is None:
            return None
        return await asyncio.to_thread(self.system_users.ensure, model.owner)

    async def _start_ready(self, state, version, bundle_dir, workers, serving):
        """Start an instance and wait until it is ready; stop it again if it never is.

        An instance that dies because its port was taken meanwhile (``free_port`` races with
        every other process on the machine) is started again on another port."""
        account = await self._account(state.model)
        for attempt in range(_PORT_TRIES):
            inst = self.launcher.spawn(state.model, version, bundle_dir, workers, account, serving)
            state.others.append(inst)
            self._save(state)
            try:
                await self.launcher.wait_ready(state.model, inst)
            except BaseException as exc:
                await self.launcher.stop(inst)
                state.others.remove(inst)
                self._save(state)
                clash = isinstance(exc, DeployError) and "Address already in use" in exc.message
                if clash and attempt + 1 < _PORT_TRIES:
                    self.log.warning("port %d of %s was taken; retrying", inst.port, version)
                    continue
                raise
            return inst

    async def _route(self, model, inst):
        """Send ``model``'s requests to ``inst``, once its port is its own (see the module)."""
        owners = port_owners(inst.port)
        allowed = {0, os.geteuid() if inst.uid is None else inst.uid}
        if not owners or not owners <= allowed:
            raise DeployError(
                f"port {inst.port} of {model.key} is not (or no longer) held by its serving "
                f"process but by uid(s) {sorted(owners - allowed) or 'none'}; not routing "
                "callers there",
                {"port": inst.port},
            )
        await self.add_routes(model, f"http://{self.host}:{inst.port}", version=inst.version)

    def _make_live(self, state, inst):
        """Record ``inst`` as live; the previous live instance (if any) is now retiring."""
        if inst in state.others:
            state.others.remove(inst)
        old, state.live = state.live, inst
        if old is not None:
            state.others.append(old)
        self._save(state)
        self._watch(state, inst)
        return old

    def _watch(self, state, inst):
        """Take the route away the moment ``inst``'s process ends (a pidfd, no polling): the
        proxy must not send callers, with their keys, to a port the model gave up, which any
        local account could bind before the supervisor has the model running again."""
        try:
            fd = os.pidfd_open(inst.pid)
        except OSError:
            return  # already gone: the supervisor's next check restarts it
        loop = asyncio.get_running_loop()

        def ended():
            loop.remove_reader(fd)
            os.close(fd)
            if state.live is inst and not self._closing:
                self._background(self._unroute(state, inst))

        loop.add_reader(fd, ended)

    async def _unroute(self, state, inst):
        """``inst`` ended while live: until it runs again, callers get the fallback's 503."""
        if state.live is not inst or self._models.get(state.model) is not state:
            return  # replaced, or its model deleted (maybe published again since)
        self.log.warning(
            "%s: its serving process (pid %d) ended; no route to it until it runs again",
            state.model.unit,
            inst.pid,
        )
        try:
            await self.delete_routes(state.model)
        except DeployError as exc:
            self.log.warning("could not take the route of %s away: %s", state.model.unit, exc)

    def _background(self, coro):
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire(self, state, inst):
        await self.launcher.stop(inst)
        if inst in state.others:
            state.others.remove(inst)
        self._save(state)

    # ------------------------------------------------------------ the contract

    async def check(self, manifest, bundle_dir, account=None):
        """Run the runtime's check command (if any) on ``bundle_dir``, as ``account``."""
        await self.launcher.check(manifest, bundle_dir, account)

    async def set_access(self, model, access):
        account = await self._account(model)
        path = self.access_file(model)
        if account is None:
            write_json_atomic(path, access)
            return
        # readable by the model's processes (its owner's account, through every folder from
        # access/ down) from the moment it has its name
        top = Path(self.data_dir, "access")
        write_json_atomic(path, access, lambda tmp: grant_owner(top, tmp, account))

    async def prepare(self, model, version, bundle_dir, *, replicas, serving=DEFAULT_SERVING):
        """Start ``version`` beside what serves, without traffic, and wait until it is ready:
        the publisher calls this before it accepts an upload, so a model that does not load
        is refused (``InvalidBundle``, from its own ``/readyz``) and the next ``deploy`` of
        that version only switches the route. One start, one load of the model."""
        await self.check(load_manifest(bundle_dir), bundle_dir, await self._account(model))
        # a first publish: the publisher writes the access list once the version is accepted;
        # until then the owner alone, written now so the process finds its file from the start
        first = not self.access_file(model).exists()
        if first:
            await self.set_access(model, {"users": [model.owner], "groups": [], "key_hashes": []})
        state = self._state(model)
        try:
            inst = await self._start_ready(state, version, str(bundle_dir), replicas, serving)
        except BaseException:
            if first:  # refused: nothing of the model is left
                self.access_file(model).unlink(missing_ok=True)
            raise
        state.prepared.append(inst)

    def _take_prepared(self, state, want):
        """The instance ``prepare`` started for this deploy, if it still runs."""
        for inst in state.prepared:
            started = (inst.version, inst.bundle_dir, inst.workers, inst.serving)
            wanted = started == (want.version, want.bundle_dir, want.workers, want.serving)
            if wanted and inst.alive() and inst in state.others:
                state.prepared.remove(inst)
                return inst
        return None

    async def deploy(
        self, model, version, bundle_dir, *, replicas, progress, serving=DEFAULT_SERVING
    ):
        state = self._state(model)
        want = _Want(version, str(bundle_dir), replicas, serving)
        async with state.lock:
            new = self._take_prepared(state, want)
            if new is None:
                progress("starting", f"starting {replicas} worker(s) of {version[:19]}")
                new = await self._start_ready(state, version, bundle_dir, replicas, serving)
            else:
                progress("starting", f"started {replicas} worker(s) of {version[:19]} on upload")
            progress("ready", f"ready on port {new.port} (pid {new.pid})")
            try:
                await self._route(model, new)
            except DeployError:
                await self._retire(state, new)
                raise
            old = self._make_live(state, new)
            state.want = want
            state.failures = 0
            state.asleep = False
            # started by a publish that never got to its deploy (or a concurrent one, which
            # will start its own): not left running unseen
            for stale in list(state.prepared):
                state.prepared.remove(stale)
                await self._retire(state, stale)
            progress("switched", f"{model.url_prefix} now goes to {version[:19]}")
            if old is None:
                progress("drained", "no previous instance to drain")
                return
            await asyncio.sleep(self.drain_seconds)
            await self._retire(state, old)
            progress("drained", f"stopped the previous instance (pid {old.pid})")

    async def status(self, model):
        state = self._models.get(model)
        live = state.live if state else None
        instances = []
        for inst in state.instances() if state else []:
            info = inst.to_dict()
            info["state"] = ("live" if inst is live else "other") if inst.alive() else "exited"
            instances.append(info)
        return {
            "state": "running" if live and live.alive() else "stopped",
            "version": state.want.version if state and state.want else None,
            "replicas": state.want.workers if state and state.want else None,
            "instances": instances,
        }

    async def scale(self, model, replicas, progress):
        state = self._models.get(model)
        if state is None or state.want is None:
            raise DeployError(f"{model.key} has no live version to scale", {"model": model.key})
        want = state.want
        await self.deploy(
            model,
            want.version,
            want.bundle_dir,
            replicas=replicas,
            progress=progress,
            serving=want.serving,
        )

    async def delete(self, model):
        """Stop the unit; the model's access file goes with its default alias (the last unit
        the publisher deletes)."""
        state = self._state(model)
        async with state.lock:
            state.want = None
            await asyncio.gather(*(self.launcher.stop(i) for i in state.instances()))
            await self.delete_routes(model)
            self._models.pop(model, None)
        files = [self.run_file(model), self.log_file(model)]
        for path in files if model.alias else [*files, self.access_file(model)]:
            path.unlink(missing_ok=True)

    async def logs(self, model, tail):
        return tail_lines(self.log_file(model), tail, keep=serving_log.shown)

    async def sleep(self, model):
        state = self._state(model)
        async with state.lock:
            if state.asleep or state.want is None:
                return
            await self.delete_routes(model)  # first: no caller is sent to a stopping process
            state.asleep = True  # before the stop: the supervisor must not restart it
            await asyncio.gather(*(self.launcher.stop(i) for i in state.instances()))
            state.live, state.others, state.prepared = None, [], []
            self._save(state)

    async def wake(self, model, progress):
        state = self._state(model)
        async with state.lock:
            if not state.asleep:
                return
            want = state.want
            if not Path(want.bundle_dir).is_dir():
                raise DeployError(f"the bundle directory {want.bundle_dir} is missing")
            what = f"{want.workers} worker(s) of {want.version[:19]}"
            progress("starting", f"waking: starting {what}")
            inst = await self._start_ready(
                state, want.version, want.bundle_dir, want.workers, want.serving
            )
            try:
                await self._route(model, inst)
            except DeployError:
                await self._retire(state, inst)
                raise
            self._make_live(state, inst)
            state.asleep, state.failures = False, 0
            self._save(state)
            progress("ready", f"awake on port {inst.port} (pid {inst.pid})")

    def asleep(self, model):
        state = self._models.get(model)
        return state is not None and state.asleep

    async def adopt(self, desired):
        wanted = {d.model for d in desired}
        strays, stopped = [], set()
        for path in Path(self.data_dir, "run").glob("*/*.json"):
            try:
                data = json.loads(path.read_text())
                model = ModelRef(data["owner"], data["name"], data.get("alias"))
                recorded = [data["live"], *data["others"]] if data["live"] else data["others"]
                instances = [ServingInstance.from_dict(i) for i in recorded]
            except (ValueError, KeyError, TypeError) as exc:
                self.log.warning("ignoring unreadable run-state file %s: %s", path, exc)
                continue
            if model in wanted:
                self._state(model).others.extend(instances)
                if data.get("stopped_on_exit"):
                    stopped.add(model)
            else:
                strays.append((model, instances))
        await asyncio.gather(
            *(self._adopt_one(d, d.model in stopped) for d in desired),
            *(self._remove_stray(model, instances) for model, instances in strays),
        )
        await self.add_fallback_route()
        if self._supervisor is None:
            self._supervisor = asyncio.ensure_future(self._supervise())
        self.launcher.fork_server.start()  # after stopping a killed predecessor's

    async def _adopt_one(self, d, stopped_on_exit):
        state = self._state(d.model)
        async with state.lock:
            state.want = _Want(d.version, str(d.bundle_dir), d.replicas, d.serving)
            if d.asleep:  # it slept when the publisher stopped: it sleeps on
                state.asleep = True
                await asyncio.gather(*(self.launcher.stop(i) for i in state.others))
                state.others = []
                self._save(state)
                await self.delete_routes(d.model)
                return
            found = None
            for inst in list(state.others):
                if (
                    found is None
                    and inst.version == d.version
                    and inst.workers == d.replicas
                    and inst.alive()
                    and (await self.launcher.probe(inst, d.model))[0]
                ):
                    found = inst
                    continue
                await self.launcher.stop(inst)
                state.others.remove(inst)
            if found is None:
                self._save(state)
                if stopped_on_exit:
                    await self._restart_locked(state, "it was stopped with the publisher", "info")
                else:
                    await self._restart_locked(state, "it was not running")
                return
            self._make_live(state, found)
            self.emit(
                d.model,
                d.version,
                "adopted",
                f"re-adopted the running process (pid {found.pid}, port {found.port})",
            )
            try:
                await self._route(d.model, found)
            except DeployError as exc:
                self.log.warning("route for %s not re-added yet: %s", d.model.unit, exc)

    async def _remove_stray(self, model, instances):
        self.log.info("stopping %d process(es) of unpublished %s", len(instances), model.unit)
        await asyncio.gather(*(self.launcher.stop(i) for i in instances))
        self.run_file(model).unlink(missing_ok=True)

    async def shutdown(self):
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None
        for task in list(self._tasks):
            task.cancel()
        self.launcher.fork_server.stop()
        if self.stop_models_on_exit:
            await asyncio.gather(
                *(self.launcher.stop(i) for s in self._models.values() for i in s.instances())
            )
            for state in self._models.values():
                self._save(state, stopped_on_exit=True)
            await self.front.shutdown()
            self.log.info("stopped the model processes (LocalDeployer.stop_models_on_exit)")

    # ------------------------------------------------------------ supervision

    async def _restart_locked(self, state, why, level="error"):
        """Start the wanted version again; the caller holds ``state.lock``.

        On failure the supervisor tries again after a doubling wait, so a model whose process
        cannot start does not spin.
        """
        model, want = state.model, state.want
        self.emit(model, want.version, "restarting", f"{why}; starting it again", level)
        try:
            if not Path(want.bundle_dir).is_dir():
                raise DeployError(f"the bundle directory {want.bundle_dir} is missing")
            inst = await self._start_ready(
                state, want.version, want.bundle_dir, want.workers, want.serving
            )
        except (DeployError, BadRequest) as exc:
            state.failures += 1
            wait = min(2 ** (state.failures - 1), self.restart_backoff_max)
            state.next_restart = time.monotonic() + wait
            self.emit(
                model, want.version, "failed", f"{exc.message} (next try in {wait:g} s)", "error"
            )
            return
        old = self._make_live(state, inst)
        if old is not None:
            await self._retire(state, old)
        state.failures = 0
        try:
            await self._route(model, inst)
        except DeployError as exc:
            self.log.warning("route for %s not re-added yet: %s", model.unit, exc)
        self.emit(
            model, want.version, "restarted", f"serving again on port {inst.port} (pid {inst.pid})"
        )

    def _needs_restart(self, state):
        if state.want is None or state.asleep:
            return False
        return state.live is None or not state.live.alive()

    async def _heal(self, state):
        async with state.lock:
            if not self._needs_restart(state):
                return
            live = state.live
            why = self.launcher.exit_reason(live) if live is not None else "it is not running"
            await self._restart_locked(state, why)

    async def _check_routes(self):
        expected = {
            state.model: f"http://{self.host}:{state.live.port}"
            for state in list(self._models.values())
            if state.live is not None and not state.lock.locked() and state.live.alive()
        }
        for model in await self.lost_routes(expected):
            await self._route(model, self._models[model].live)

    async def _supervise(self):
        last_route_check = time.monotonic()
        while True:
            await asyncio.sleep(self.supervise_interval)
            now = time.monotonic()
            for state in list(self._models.values()):
                if (
                    not state.lock.locked()
                    and now >= state.next_restart
                    and self._needs_restart(state)
                ):
                    self._background(self._heal(state))
            if now - last_route_check >= self.route_check_interval:
                last_route_check = now
                try:
                    await self._check_routes()
                except DeployError as exc:
                    self.log.warning("route check failed: %s", exc)
